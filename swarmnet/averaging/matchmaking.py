"""Group formation through the DHT: who averages with whom in a given run and round.

Each peer that wants to average round ``r`` of run ``R`` stores a signed ``GroupJoin`` record
under ``swarmnet/v1/avg/R/r/<schema>`` (one subkey per peer), then polls that key. The peers it
sees, in the round's order (a hash of the id salted with run and round, so groups mix from round to
round: ``runs.py``), are cut evenly into runs of consecutive peers of at most ``target_group_size``;
the first free peer of each run is its leader. Peers already grouped (they re-announce with
``grouped=True``) stay in the cut, so the runs do not move as other groups close; when too few of
a peer's run are still free, the free peers are cut among themselves instead. A leader closes
its group when it is full, or after ``min_wait`` with at least ``min_group_size`` peers, and
only once its run looked the same on two polls in a row, in two steps over RPC:

1. ``propose``: each member accepts unless it already belongs to a group of that round or is
   reserved by another leader (it then stays reserved until a commit, an abort or a timeout);
2. ``commit``: the final member list (those who accepted) goes to every accepted member.

Views of the DHT may differ (a late peer with a low id shifts the runs), but a peer accepts one
leader at a time and joins one group per round, so groups never overlap; a peer left out waits
until ``timeout`` and then the caller moves to the next round. RPC callers are authenticated by
the transport, so only the leader that reserved a peer can commit it.

Stable swarms of one group take a shortcut. The members of a full group that was every peer seeking
the round (the leader's view, sent in the commit as ``whole``) meet again next round without the DHT
(``regroup_window``): the leader proposes straight to them, and they wait for that before they
announce themselves. When all are seeking, one propose/commit exchange replaces every peer's two
DHT stores (looking, then grouped) and the leader's lookups. Afterwards the leader reads
that round's records; if anyone else sought that round, it goes through the DHT from the next
round on, so a newcomer waits at most one round, as a late peer
does anyway. A leader that does not come costs its members ``regroup_window`` once; then they
forget the group.

A peer whose result this peer refused lately (``distrust``) is skipped in its run and its proposals are
refused, for ``distrust_rounds`` groups.

Where each part lives: the join records' storing and reading in ``join_records.py``; one poll of them
(cut, settle, lead or watch the leader) in ``matchmaking_poll.py``; the leader's propose, commit and abort
in ``matchmaking_leader.py``; a member's answers in ``matchmaking_member.py`` (the rules in ``answers.py``);
the shortcut in ``matchmaking_regroup.py``; what is kept across rounds in ``matchmaking_memory.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from swarmnet.averaging.config import MatchmakingConfig
from swarmnet.averaging.group import Group
from swarmnet.averaging.join_records import JoinRecords
from swarmnet.averaging.matchmaking_leader import Leader
from swarmnet.averaging.matchmaking_member import Member
from swarmnet.averaging.matchmaking_memory import GroupMemory
from swarmnet.averaging.matchmaking_poll import RunPoller
from swarmnet.averaging.matchmaking_regroup import Regroup
from swarmnet.averaging.seeking import GroupJoin, Seeking
from swarmnet.errors import TransportClosed
from swarmnet.identity import Identity
from swarmnet.transport.base import Transport
from swarmnet.version import PROTOCOL_VERSION

__all__ = ["Matchmaker"]

logger = logging.getLogger(__name__)


class Matchmaker:
    """Forms groups for one peer; ``start()`` registers its RPC handlers."""

    def __init__(self, transport: Transport, identity: Identity, config: MatchmakingConfig, run: str) -> None:
        config.validate()
        self.run, self.config = run, config
        self._transport = transport
        self._records = JoinRecords(transport, identity)
        self._memory = GroupMemory(config)
        self._member = Member(identity.peer_id, config, self._memory, run)
        self._leader = Leader(transport, identity.peer_id, config, self._memory, run)
        self._regroup = Regroup(self._leader, self._records, self._memory, config)
        self._poller = RunPoller(self._leader, self._records, self._memory, config)
        self._background: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Serve the propose and commit methods."""
        await self._member.serve(self._transport)

    def expects(self, group_id: str) -> bool:
        """Whether ``group_id`` is a group we joined lately or are reserved for."""
        seeking = self._member.seeking.values()
        return self._memory.expects(group_id) or any(s.group_id == group_id for s in seeking)

    def distrust(self, peer: str) -> None:
        """Leave ``peer`` out of the next ``config.distrust_rounds`` groups we seek: we do not lead it into
        ours, nor join one it leads (a group whose other leader brings it in is not refused)."""
        self._memory.distrust(peer)

    async def form_group(self, round_id: int, schema: str, bandwidth_mbps: float) -> Group | None:
        """Find a group for ``round_id`` of our run; ``None`` if none formed within ``config.timeout``."""
        loop = asyncio.get_running_loop()
        key, seeking = (self.run, round_id, schema), self._member.seeking
        if key in seeking:
            raise RuntimeError(f"already looking for a group for {key}")
        state = Seeking(key, loop.create_future())
        seeking[key] = state
        start, regrouped = loop.time(), False
        dht_key = f"swarmnet/v{PROTOCOL_VERSION}/avg/{self.run}/{round_id}/{schema}"
        expires_at = self._transport.clock.time() + self.config.timeout + 5.0
        try:
            group = await self._regroup.attempt(state, bandwidth_mbps)
            if group is not None:
                regrouped = group.members[0] == self._leader.me
                return group
            return await self._seek(state, dht_key, GroupJoin(bandwidth_mbps=bandwidth_mbps), expires_at, start)
        finally:
            del seeking[key]
            self._memory.round_ended()
            if state.committed.done():
                self._after(state, dht_key, bandwidth_mbps, expires_at, regrouped)

    async def _seek(
        self, state: Seeking, dht_key: str, join: GroupJoin, expires_at: float, start: float
    ) -> Group | None:
        """Announce ``join`` under ``dht_key`` and poll until a group forms or ``config.timeout`` runs out."""
        loop = asyncio.get_running_loop()
        # A leader may commit us before our store is done (it re-formed last round's group): then
        # the store is moot, and the one saying we are grouped supersedes it anyway.
        announce = asyncio.create_task(self._records.announce(dht_key, join, expires_at))
        waiting: list[asyncio.Future[Any]] = [announce, state.committed]
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        announce.cancel()
        state.join, state.announced_at = (dht_key, join, expires_at), loop.time()
        while loop.time() - start < self.config.timeout and not state.committed.done():
            if state.reserved_by is not None and loop.time() > state.reserved_until:
                logger.info("leader %s never committed; free again", state.reserved_by)
                state.reserved_by = state.group_id = None
            if state.reserved_by is None:
                group = await self._poller.poll(state, dht_key, loop.time() - start)
                if group is not None:
                    return group
            wait = self.config.settle_time if state.settling else self.config.poll_interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(state.committed), wait)
        return state.committed.result() if state.committed.done() else None

    def _after(self, state: Seeking, dht_key: str, bandwidth_mbps: float, expires_at: float, regrouped: bool) -> None:
        """Start the grouped round's follow-up in the background."""
        # Tell pollers we are taken, if we told them we were looking: leaders skip us, and late
        # peers whose run is used up then cut the free peers among themselves.
        grouped = GroupJoin(bandwidth_mbps=bandwidth_mbps, grouped=True) if state.join else None
        after = self._after_round(dht_key, state.committed.result(), grouped, expires_at + 1.0, regrouped)
        task = asyncio.create_task(after)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _after_round(
        self, dht_key: str, group: Group, grouped: GroupJoin | None, expires_at: float, regrouped: bool
    ) -> None:
        if grouped is not None:
            await self._records.announce(dht_key, grouped, expires_at)
        if regrouped:
            with contextlib.suppress(TransportClosed):  # we are shutting down: nothing left to confirm
                await self._regroup.confirm(dht_key, group)

    async def _on_commit(self, caller: str, request: bytes) -> bytes:
        """The commit handler, for callers that wrap it (it is ``Member.on_commit``)."""
        return await self._member.on_commit(caller, request)
