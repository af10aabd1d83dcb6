"""One poll of the round's join records (``matchmaking.py``): cut our run, and lead it once it is ready and
settled, or watch its leader."""

from __future__ import annotations

import asyncio
import logging

from swarmnet.averaging.config import MatchmakingConfig
from swarmnet.averaging.group import Group
from swarmnet.averaging.join_records import JoinRecords
from swarmnet.averaging.matchmaking_leader import Leader
from swarmnet.averaging.matchmaking_memory import GroupMemory
from swarmnet.averaging.runs import free_run
from swarmnet.averaging.seeking import Seeking

__all__ = ["RunPoller"]

logger = logging.getLogger(__name__)


class RunPoller:
    """Reads the round's join records and acts on our run: lead it, or wait for its leader."""

    def __init__(self, leader: Leader, records: JoinRecords, memory: GroupMemory, config: MatchmakingConfig) -> None:
        self._leader, self._records, self._memory, self._config = leader, records, memory, config

    async def poll(self, state: Seeking, dht_key: str, elapsed: float) -> Group | None:
        """Look at the records under ``dht_key`` once; the group we led, if we closed one."""
        candidates, grouped, visible = await self._records.candidates(dht_key)
        if not visible:
            await self._records.announce_again(state)
        target, minimum, me = self._config.target_group_size, self._config.min_group_size, self._leader.me
        run, round_id, _ = state.key
        skipped = set(state.refusals) | self._memory.distrusted.keys()
        mine = free_run(me, set(candidates), grouped, skipped, target, minimum, salt=f"{run}/{round_id}")
        settled = self._settled(state, mine, elapsed)
        full = len(mine) >= target
        ready = full or (elapsed >= self._config.min_wait and len(mine) >= minimum)
        if mine[0] != me:
            state.settling = False
            self._watch_leader(state, mine[0] if ready else None)
            return None
        state.watched = None
        state.settling = ready and not settled
        if not ready or not settled or state.reserved_by is not None or state.committed.done():
            return None
        if len(mine) == 1:
            return self._leader.finish(state, (me,), candidates)
        # Only a group of every peer seeking this round may meet again without the DHT: in a larger swarm
        # the round's order regroups the peers every round, and a shortcut would freeze the groups.
        return await self._leader.lead(state, mine, candidates, whole=set(candidates) | grouped <= set(mine))

    def _settled(self, state: Seeking, mine: list[str], elapsed: float) -> bool:
        """Whether our run is the one our previous poll saw, so that we may lead it.

        Records stored at the same moment reach the DHT at different times. A leader that
        proposed on a partial view would reserve peers that the full view puts in other runs;
        their leaders would then close short groups and strand a remainder below
        ``min_group_size``. A run that never settles (peers arriving all the time) must not
        starve the round, hence the cut-off.
        """
        settled = mine == state.last_run or elapsed >= self._config.timeout / 2
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
        elif now - state.watched[1] > 2 * self._config.request_timeout:
            logger.info("leader %s never proposed; looking past it", leader)
            state.refusals[leader] = "silent leader"
            state.watched = None
