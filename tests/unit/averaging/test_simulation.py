"""Hundreds of peers averaging on the in-memory transport: many groups at once, with churn."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import torch

from swarmnet.clock import run_virtual
from swarmnet.transport.faults import FaultPlan
from swarmnet.transport.memory import MemoryNetwork
from tests.unit.averaging.harness import FAST, make_peers, with_group


def test_256_peers_average_in_groups_despite_deaths() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        network.set_faults(FaultPlan(seed=1, min_delay=0.001, max_delay=0.02))
        config = with_group(FAST, target=16, minimum=8)
        config = replace(config, matchmaking=replace(config.matchmaking, timeout=20.0, min_wait=1.0))
        peers = await make_peers(network, 256, config)
        values = {p.peer_id: [torch.full((512,), float(i))] for i, p in enumerate(peers)}
        doomed = {p.peer_id for p in peers[::37]}  # 7 peers die as soon as they send their first part

        def kill_on_first_part(peer_id: str) -> None:
            from tests.unit.averaging.harness import kill_when

            peer = next(p for p in peers if p.peer_id == peer_id)
            kill_when(network, peer, lambda h: h.kind == "part")

        for peer_id in doomed:
            kill_on_first_part(peer_id)
        steps = [p.averager.step(values[p.peer_id], round_id=0) for p in peers]
        outcomes = dict(zip([p.peer_id for p in peers], await asyncio.gather(*steps), strict=True))
        live = [pid for pid in outcomes if pid not in doomed]
        failed = {pid: outcomes[pid].reason for pid in live if not outcomes[pid].succeeded}
        assert not failed, failed
        members = {outcomes[pid].group_id: outcomes[pid].members for pid in live}
        assert sum(len(m) for m in members.values()) == 256  # every peer in exactly one group
        assert all(8 <= len(m) <= 16 for m in members.values())
        for pid in live:
            outcome = outcomes[pid]
            assert outcome.succeeded, outcome
            assert not doomed & set(outcome.contributors)
            expected = sum(float(list(outcomes).index(c)) for c in outcome.contributors) / len(outcome.contributors)
            torch.testing.assert_close(values[pid][0], torch.full((512,), expected))

    run_virtual(main())
