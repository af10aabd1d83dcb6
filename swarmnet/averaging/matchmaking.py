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
DHT stores (looking, then grouped) and the leader's lookups (measured on loopback with 4 peers:
the first stores alone took 60 ms, a group 0.16 s against 0.05 s). Afterwards the leader reads
that round's records; if anyone else sought that round, it goes through the DHT from the next
round on, so a newcomer waits at most one round, as a late peer
does anyway. A leader that does not come costs its members ``regroup_window`` once; then they
forget the group.

A peer whose result this peer refused lately (``distrust``) is skipped in its run and its proposals are
refused, for ``distrust_rounds`` groups.

The join records' storing and reading is in ``join_records.py``; how a member answers a proposal or a
commit in ``answers.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from typing import Any

from swarmnet.averaging.answers import NOT_LOOKING, refusal, well_formed
from swarmnet.averaging.config import MatchmakingConfig
from swarmnet.averaging.group import Group
from swarmnet.averaging.join_records import JoinRecords
from swarmnet.averaging.messages import Commit, Propose, Reply, decode_message, encode_message, method_name
from swarmnet.averaging.runs import free_run
from swarmnet.averaging.seeking import GroupJoin, Seeking
from swarmnet.errors import ProtocolError, SwarmnetError, TransportClosed
from swarmnet.identity import Identity
from swarmnet.transport.base import Transport
from swarmnet.version import PROTOCOL_VERSION

__all__ = ["Matchmaker"]

logger = logging.getLogger(__name__)


class Matchmaker:
    """Forms groups for one peer; ``start()`` registers its RPC handlers."""

    def __init__(self, transport: Transport, identity: Identity, config: MatchmakingConfig, run: str) -> None:
        config.validate()
        self.run = run
        self._propose, self._commit = method_name(run, "propose"), method_name(run, "commit")
        self._transport, self._identity, self.config = transport, identity, config
        self._records = JoinRecords(transport, identity)
        self._seeking: dict[tuple[str, int, str], Seeking] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._last_full: dict[str, Group] = {}  # per schema: the last full group we were in, while still ours
        self._recent: deque[str] = deque(maxlen=64)  # groups we joined lately, for data arriving early
        self._distrusted: dict[str, int] = {}  # peer -> groups we still seek without it

    async def start(self) -> None:
        """Serve the propose and commit methods."""
        await self._transport.add_unary_handler(self._propose, self._on_propose)
        await self._transport.add_unary_handler(self._commit, self._on_commit)

    def expects(self, group_id: str) -> bool:
        """Whether ``group_id`` is a group we joined lately or are reserved for."""
        return group_id in self._recent or any(s.group_id == group_id for s in self._seeking.values())

    def distrust(self, peer: str) -> None:
        """Leave ``peer`` out of the next ``config.distrust_rounds`` groups we seek: we do not lead it into
        ours, nor join one it leads (a group whose other leader brings it in is not refused)."""
        if self.config.distrust_rounds > 0:
            self._distrusted[peer] = self.config.distrust_rounds
            self._last_full = {s: g for s, g in self._last_full.items() if peer not in g.members}

    async def form_group(self, round_id: int, schema: str, bandwidth_mbps: float) -> Group | None:
        """Find a group for ``round_id`` of our run; ``None`` if none formed within ``config.timeout``."""
        loop = asyncio.get_running_loop()
        run = self.run
        key = (run, round_id, schema)
        if key in self._seeking:
            raise RuntimeError(f"already looking for a group for {key}")
        state = Seeking(key, loop.create_future())
        self._seeking[key] = state
        start, regrouped = loop.time(), False
        dht_key = f"swarmnet/v{PROTOCOL_VERSION}/avg/{run}/{round_id}/{schema}"
        expires_at = self._transport.clock.time() + self.config.timeout + 5.0
        try:
            group = await self._shortcut(state, bandwidth_mbps)
            if group is not None:
                regrouped = group.members[0] == self._identity.peer_id
                return group
            join = GroupJoin(bandwidth_mbps=bandwidth_mbps)
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
                    group = await self._maybe_lead(state, dht_key, loop.time() - start)
                    if group is not None:
                        return group
                wait = self.config.settle_time if state.settling else self.config.poll_interval
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(state.committed), wait)
            return state.committed.result() if state.committed.done() else None
        finally:
            del self._seeking[key]
            self._distrusted = {p: left - 1 for p, left in self._distrusted.items() if left > 1}
            if state.committed.done():
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
                await self._confirm_run(dht_key, group)

    async def _maybe_lead(self, state: Seeking, dht_key: str, elapsed: float) -> Group | None:
        candidates, grouped, visible = await self._records.candidates(dht_key)
        if not visible:
            await self._records.announce_again(state)
        target, minimum = self.config.target_group_size, self.config.min_group_size
        run, round_id, _ = state.key
        skipped = set(state.refusals) | self._distrusted.keys()
        mine = free_run(self._identity.peer_id, set(candidates), grouped, skipped, target, minimum,
                        salt=f"{run}/{round_id}")  # fmt: skip
        settled = self._settled(state, mine, elapsed)
        full = len(mine) >= self.config.target_group_size
        ready = full or (elapsed >= self.config.min_wait and len(mine) >= self.config.min_group_size)
        if mine[0] != self._identity.peer_id:
            state.settling = False
            self._watch_leader(state, mine[0] if ready else None)
            return None
        state.watched = None
        state.settling = ready and not settled
        if not ready or not settled or state.reserved_by is not None or state.committed.done():
            return None
        if len(mine) == 1:
            return self._finish(state, (self._identity.peer_id,), candidates)
        # Only a group of every peer seeking this round may meet again without the DHT: in a larger swarm
        # the round's order regroups the peers every round, and a shortcut would freeze the groups.
        return await self._lead(state, mine, candidates, whole=set(candidates) | grouped <= set(mine))

    def _settled(self, state: Seeking, mine: list[str], elapsed: float) -> bool:
        """Whether our run is the one our previous poll saw, so that we may lead it.

        Records stored at the same moment reach the DHT at different times. A leader that
        proposed on a partial view would reserve peers that the full view puts in other runs;
        their leaders would then close short groups and strand a remainder below
        ``min_group_size``. A run that never settles (peers arriving all the time) must not
        starve the round, hence the cut-off.
        """
        settled = mine == state.last_run or elapsed >= self.config.timeout / 2
        state.last_run = mine
        return settled

    def _watch_leader(self, state: Seeking, leader: str | None) -> None:
        """Skip a leader that should have proposed by now: it may have died with its record still live.

        The clock runs only while the same leader is ready in our view without a proposal of its
        own: a leader we saw ready once in a partial view must not be judged on that later.
        """
        now = asyncio.get_running_loop().time()
        if leader is None or state.watched is None or state.watched[0] != leader:
            state.watched = None if leader is None else (leader, now)
        elif now - state.watched[1] > 2 * self.config.request_timeout:
            logger.info("leader %s never proposed; looking past it", leader)
            state.refusals[leader] = "silent leader"
            state.watched = None

    async def _lead(
        self, state: Seeking, members: list[str], bandwidths: dict[str, float], *, whole: bool
    ) -> Group | None:
        state.leading = True
        try:
            group_id, others = secrets.token_hex(16), [p for p in members if p != self._identity.peer_id]
            replies = await self._propose_to(state, group_id, others, self.config.request_timeout)
            accepted = [p for p, reply in zip(others, replies, strict=True) if reply.ok]
            for peer, reply in zip(others, replies, strict=True):
                if not reply.ok:
                    logger.debug("%s refused to join: %s", peer, reply.reason)
                    state.refusals[peer] = reply.reason
            if len(accepted) + 1 < self.config.min_group_size:
                await self._abort(group_id, accepted)
                return None
            return await self._close(state, group_id, accepted, bandwidths, whole=whole)
        finally:
            state.leading = False

    async def _shortcut(self, state: Seeking, bandwidth_mbps: float) -> Group | None:
        """Last round's full group again, without the DHT: its leader proposes straight to its members,
        who wait up to ``regroup_window`` for that before they announce themselves (a store nobody reads).
        A member whose leader did not come forgets the group."""
        previous = self._last_full.get(state.key[2])
        if previous is None or self.config.regroup_window <= 0:
            return None
        if previous.members[0] == self._identity.peer_id:
            return await self._regroup(state, previous, bandwidth_mbps)
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(asyncio.shield(state.committed), self.config.regroup_window)
        logger.info("leader %s did not re-form our group; going through the DHT", previous.members[0])
        self._last_full.pop(state.key[2], None)
        return None

    async def _regroup(self, state: Seeking, previous: Group, bandwidth_mbps: float) -> Group | None:
        """Re-form ``previous``, a full group we led, by proposing straight to its members.

        Members not seeking this round yet are asked again every ``settle_time`` until
        ``regroup_window`` runs out; then the DHT decides this round. Any other refusal or failure
        (a member died, or is in another leader's group) also ends it, and the group is forgotten.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.regroup_window
        group_id, failure = secrets.token_hex(16), ""
        pending = [p for p in previous.members if p != self._identity.peer_id]
        accepted: list[str] = []
        state.leading = True
        try:
            while pending and not failure and (left := deadline - loop.time()) > 0:
                replies = await self._propose_to(state, group_id, pending, min(left, self.config.request_timeout))
                accepted += [p for p, reply in zip(pending, replies, strict=True) if reply.ok]
                failure = next((r.reason for r in replies if not r.ok and r.reason != NOT_LOOKING), "")
                pending = [p for p, reply in zip(pending, replies, strict=True) if not reply.ok]
                if pending and not failure:
                    await asyncio.sleep(max(0.0, min(self.config.settle_time, deadline - loop.time())))
            if pending:
                logger.info("could not re-form group of %d: %s", len(previous.members), failure or NOT_LOOKING)
                if failure:
                    self._last_full.pop(state.key[2], None)
                await self._abort(group_id, accepted)
                return None
            bandwidths = dict(zip(previous.members, previous.bandwidths, strict=True))
            bandwidths[self._identity.peer_id] = bandwidth_mbps
            return await self._close(state, group_id, accepted, bandwidths, whole=True)
        finally:
            state.leading = False

    async def _confirm_run(self, dht_key: str, group: Group) -> None:
        """After a re-formed round, forget the group if anyone else sought that round: a peer joined (it
        waited out the round), so the DHT must decide again, and groups mix from then on."""
        looking, grouped, _ = await self._records.candidates(dht_key)
        if not set(looking) | grouped <= set(group.members):
            logger.info("our run under %s is no longer group %s; back to the DHT", dht_key, group.group_id)
            self._last_full = {s: g for s, g in self._last_full.items() if g is not group}

    async def _propose_to(self, state: Seeking, group_id: str, peers: list[str], timeout: float) -> list[Reply]:
        run, round_id, schema = state.key
        proposal = encode_message(Propose(run=run, round_id=round_id, schema_id=schema, group_id=group_id))
        return list(await asyncio.gather(*(self._ask(p, self._propose, proposal, timeout) for p in peers)))

    async def _abort(self, group_id: str, accepted: list[str]) -> None:
        abort = encode_message(Commit(group_id=group_id, abort=True))
        await asyncio.gather(*(self._ask(p, self._commit, abort) for p in accepted))

    async def _close(
        self, state: Seeking, group_id: str, accepted: list[str], bandwidths: dict[str, float], *, whole: bool
    ) -> Group:
        final = (self._identity.peer_id, *accepted)
        commit = Commit(group_id=group_id, members=final, bandwidths=tuple(bandwidths[p] for p in final), whole=whole)
        # The group is final now. A member starts its round as soon as it has our commit and may send us data
        # before its answer reaches us (a busy machine runs our side late): that data must find the group expected.
        self._expect(group_id)
        await asyncio.gather(*(self._ask(p, self._commit, encode_message(commit)) for p in accepted))
        return self._finish(state, final, bandwidths, group_id, whole=whole)

    def _finish(
        self,
        state: Seeking,
        members: tuple[str, ...],
        bandwidths: dict[str, float],
        group_id: str | None = None,
        *,
        whole: bool = False,
    ) -> Group:
        run, round_id, schema = state.key
        group = Group(group_id or secrets.token_hex(16), run, round_id, members, tuple(bandwidths[p] for p in members))
        self._joined(schema, group, whole)
        state.committed.set_result(group)
        return group

    def _joined(self, schema: str, group: Group, whole: bool) -> None:
        """Note a group we are in: a full one of every peer that sought the round (``whole``) is the one to
        re-form next round."""
        self._expect(group.group_id)
        if whole and len(group.members) == self.config.target_group_size > 1:
            self._last_full[schema] = group
        else:
            self._last_full.pop(schema, None)

    def _expect(self, group_id: str) -> None:
        if group_id not in self._recent:
            self._recent.append(group_id)

    async def _ask(self, peer: str, method: str, message: bytes, timeout: float | None = None) -> Reply:
        try:
            timeout = self.config.request_timeout if timeout is None else timeout
            raw = await self._transport.call_unary(peer, method, message, timeout=timeout)
            return decode_message(raw, Reply)[0]
        except SwarmnetError as e:
            return Reply(ok=False, reason=f"{type(e).__name__}: {e}")

    async def _on_propose(self, caller: str, request: bytes) -> bytes:
        proposal, _ = decode_message(request, Propose)
        state = self._seeking.get((proposal.run, proposal.round_id, proposal.schema_id))
        reason = refusal(state, caller, distrusted=caller in self._distrusted)
        if state is None or reason:
            return encode_message(Reply(ok=False, reason=reason))
        state.reserved_by, state.group_id = caller, proposal.group_id
        state.watched = None  # whoever we were waiting for, a leader is talking to us
        state.reserved_until = asyncio.get_running_loop().time() + 3 * self.config.request_timeout
        return encode_message(Reply(ok=True))

    async def _on_commit(self, caller: str, request: bytes) -> bytes:
        commit, _ = decode_message(request, Commit)
        state = next((s for s in self._seeking.values() if s.group_id == commit.group_id), None)
        if state is None or state.reserved_by != caller or state.committed.done():
            return encode_message(Reply(ok=False, reason="no reservation by you for that group"))
        if commit.abort:
            state.reserved_by = state.group_id = None
            return encode_message(Reply(ok=True))
        members, bandwidths = commit.members, commit.bandwidths
        if not well_formed(commit, caller, self._identity.peer_id):
            state.reserved_by = state.group_id = None
            raise ProtocolError(
                f"malformed commit from {caller}: members {len(members)}, bandwidths {len(bandwidths)}"
            )
        run, round_id, schema = state.key
        group = Group(commit.group_id, run, round_id, members, bandwidths)
        self._joined(schema, group, commit.whole)
        state.committed.set_result(group)
        return encode_message(Reply(ok=True))
