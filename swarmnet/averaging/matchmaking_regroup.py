"""The stable-swarm shortcut of group formation (``matchmaking.py``): last round's full group meets again
without the DHT, its leader proposing straight to its members."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

from swarmnet.averaging.answers import NOT_LOOKING
from swarmnet.averaging.config import MatchmakingConfig
from swarmnet.averaging.group import Group
from swarmnet.averaging.join_records import JoinRecords
from swarmnet.averaging.matchmaking_leader import Leader
from swarmnet.averaging.matchmaking_memory import GroupMemory
from swarmnet.averaging.seeking import Seeking

__all__ = ["Regroup"]

logger = logging.getLogger(__name__)


class Regroup:
    """Re-forms last round's full group of a schema, as its leader or as one of its members."""

    def __init__(self, leader: Leader, records: JoinRecords, memory: GroupMemory, config: MatchmakingConfig) -> None:
        self._leader, self._records, self._memory, self._config = leader, records, memory, config

    async def attempt(self, state: Seeking, bandwidth_mbps: float) -> Group | None:
        """Last round's full group again, without the DHT: its leader proposes straight to its members,
        who wait up to ``regroup_window`` for that before they announce themselves (a store nobody reads).
        A member whose leader did not come forgets the group."""
        previous = self._memory.last_full.get(state.key[2])
        if previous is None or self._config.regroup_window <= 0:
            return None
        if previous.members[0] == self._leader.me:
            return await self._reform(state, previous, bandwidth_mbps)
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(asyncio.shield(state.committed), self._config.regroup_window)
        logger.info("leader %s did not re-form our group; going through the DHT", previous.members[0])
        self._memory.forget(state.key[2])
        return None

    async def _reform(self, state: Seeking, previous: Group, bandwidth_mbps: float) -> Group | None:
        """Re-form ``previous``, a full group we led, by proposing straight to its members.

        Members not seeking this round yet are asked again every ``settle_time`` until
        ``regroup_window`` runs out; then the DHT decides this round. Any other refusal or failure
        (a member died, or is in another leader's group) also ends it, and the group is forgotten.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.regroup_window
        group_id, failure = secrets.token_hex(16), ""
        pending = [p for p in previous.members if p != self._leader.me]
        accepted: list[str] = []
        state.leading = True
        try:
            while pending and not failure and (left := deadline - loop.time()) > 0:
                replies = await self._leader.propose(state, group_id, pending, min(left, self._config.request_timeout))
                accepted += [p for p, reply in zip(pending, replies, strict=True) if reply.ok]
                failure = next((r.reason for r in replies if not r.ok and r.reason != NOT_LOOKING), "")
                pending = [p for p, reply in zip(pending, replies, strict=True) if not reply.ok]
                if pending and not failure:
                    await asyncio.sleep(max(0.0, min(self._config.settle_time, deadline - loop.time())))
            if pending:
                logger.info("could not re-form group of %d: %s", len(previous.members), failure or NOT_LOOKING)
                if failure:
                    self._memory.forget(state.key[2])
                await self._leader.abort(group_id, accepted)
                return None
            bandwidths = dict(zip(previous.members, previous.bandwidths, strict=True))
            bandwidths[self._leader.me] = bandwidth_mbps
            return await self._leader.close(state, group_id, accepted, bandwidths, whole=True)
        finally:
            state.leading = False

    async def confirm(self, dht_key: str, group: Group) -> None:
        """After a re-formed round, forget the group if anyone else sought that round: a peer joined (it
        waited out the round), so the DHT must decide again, and groups mix from then on."""
        looking, grouped, _ = await self._records.candidates(dht_key)
        if not set(looking) | grouped <= set(group.members):
            logger.info("our run under %s is no longer group %s; back to the DHT", dht_key, group.group_id)
            self._memory.forget_group(group)
