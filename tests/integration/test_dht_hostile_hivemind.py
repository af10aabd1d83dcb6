"""A stock hivemind client (no swarmnet code) attacks a real swarm's DHT keys; honest peers carry on.

Alice and Bob each run a real DHT node (with swarmnet's record validator) and p2p daemon, announce
themselves and publish telemetry. ``hostile_dht_client.py`` then joins their DHT in client mode and
stores, under every key family the swarm uses: plain values with far-future expiries, megabyte junk
entries, records signed for no slot or for slots under other kinds, self-signed members with huge
lifetimes and capacity claims, non-finite numbers and duplicate JSON keys. The swarm's nodes must
refuse all but well-formed records in the attacker's own slots, and both peers must stay listed
with every announcement stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from swarmnet.cli.status import swarm_to_json
from swarmnet.identity import Identity
from swarmnet.membership import MAX_CLAIMED_GFLOPS, MAX_CLAIMED_MBPS, MembershipConfig, PeerInfo, Swarm
from swarmnet.telemetry import TelemetryConfig, TelemetryPublisher, TelemetryReader, TelemetryReport
from swarmnet.transport.hivemind_transport import HivemindTransport
from tests.support import apoll_until, with_dht_pair

pytestmark = pytest.mark.multiprocess

SWARM = "hostile"
MEMBERSHIP = MembershipConfig(swarm=SWARM, ttl=8.0, heartbeat_interval=1.0)
TELEMETRY = TelemetryConfig(swarm=SWARM, period=1.0, ttl=8.0)
CLIENT = Path(__file__).with_name("hostile_dht_client.py")

REFUSED = [
    "plain-junk",
    "signed-plain",
    "plain-junk-elsewhere",
    "junk-entries",
    "junk-in-own-slot",
    "sybil-24h",
    "nan",
    "infinity",
    "duplicate-keys",
    "wrong-kind",
    "unknown-key",
    "oversized",
]
ACCEPTED = ["sybil-claims", "sybil-stale"]  # well-formed records in the attacker's own slots


async def _attack(initial_peer: str, names: list[str]) -> dict[str, Any]:
    """Run the hostile client to completion (the event loop keeps serving heartbeats meanwhile)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(CLIENT), initial_peer, SWARM, *names,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 90.0)
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    assert process.returncode == 0, stderr.decode(errors="replace")[-3000:]
    result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return result


async def _check(alice: HivemindTransport, alice_id: Identity, bob: HivemindTransport, bob_id: Identity) -> None:
    alice_swarm, bob_swarm = Swarm(alice, alice_id, MEMBERSHIP), Swarm(bob, bob_id, MEMBERSHIP)
    steps = iter(range(1_000_000))
    publisher = TelemetryPublisher(alice, alice_id, TELEMETRY, lambda: TelemetryReport(step=next(steps)))
    reader = TelemetryReader(bob, TELEMETRY)
    honest = {alice_id.peer_id, bob_id.peer_id}
    try:
        assert await alice_swarm.join(PeerInfo(roles=("a",)))
        assert await bob_swarm.join(PeerInfo(roles=("b",)))
        await publisher.start()

        result = await _attack((await alice.visible_addresses())[0], REFUSED + ACCEPTED)
        assert result["imported_swarmnet"] is False
        stored = result["stored"]
        assert {name: any(stored[name]) for name in REFUSED} == dict.fromkeys(REFUSED, False), stored
        assert {name: all(stored[name]) for name in ACCEPTED} == dict.fromkeys(ACCEPTED, True), stored

        # Both peers go on announcing (each store succeeds) and stay listed; so does alice's telemetry.
        announced = {s: s.statistics().announcements for s in (alice_swarm, bob_swarm)}
        reports = publisher.statistics().published

        async def carried_on() -> bool:
            listed = {m.peer_id for m in await bob_swarm.peers()}
            more = all(s.statistics().announcements >= announced[s] + 3 for s in announced)
            return honest <= listed and more and publisher.statistics().published >= reports + 3

        await apoll_until(carried_on, timeout=30.0, what="honest peers to keep announcing and stay listed")
        assert alice_swarm.statistics().failed_announcements == bob_swarm.statistics().failed_announcements == 0
        assert alice_id.peer_id in {entry.peer_id for entry in await reader.read()}

        # The only other member is the self-signed one in its own slot, its claims clamped; a member whose
        # record is older than this swarm's ttl allows is not listed, whatever expiry it signed.
        members = {m.peer_id: m for m in await bob_swarm.peers()}
        claims = result["ids"]["sybil-claims"]
        assert set(members) == honest | {claims}
        assert members[claims].info.compute_gflops == MAX_CLAIMED_GFLOPS
        assert members[claims].info.bandwidth_mbps == MAX_CLAIMED_MBPS
        listing = swarm_to_json(SWARM, list(members.values()), bob.clock.time())
        text = json.dumps(listing, allow_nan=False)  # what `swarmnet status --json` prints: strict JSON
        assert all(math.isfinite(p["started_at"]) for p in json.loads(text)["peers"])
    finally:
        await publisher.stop()
        await alice_swarm.leave()
        await bob_swarm.leave()


def test_hostile_hivemind_client_cannot_blank_shadow_or_bloat_swarm_keys() -> None:
    asyncio.run(with_dht_pair(_check))
