"""A leader's side of group formation (``matchmaking.py``): propose to the members of its run, then commit
the final member list to those who accepted, or abort."""

from __future__ import annotations

import asyncio
import logging
import secrets

from swarmnet.averaging.config import MatchmakingConfig
from swarmnet.averaging.group import Group
from swarmnet.averaging.matchmaking_memory import GroupMemory
from swarmnet.averaging.messages import Commit, Propose, Reply, decode_message, encode_message, method_name
from swarmnet.averaging.seeking import Seeking
from swarmnet.errors import SwarmnetError
from swarmnet.transport.base import Transport

__all__ = ["Leader"]

logger = logging.getLogger(__name__)


class Leader:
    """Leads groups for one peer (``me``) of one run over RPC."""

    def __init__(
        self, transport: Transport, me: str, config: MatchmakingConfig, memory: GroupMemory, run: str
    ) -> None:
        self.me = me
        self._transport, self._config, self._memory = transport, config, memory
        self._propose, self._commit = method_name(run, "propose"), method_name(run, "commit")

    async def lead(
        self, state: Seeking, members: list[str], bandwidths: dict[str, float], *, whole: bool
    ) -> Group | None:
        """Propose to ``members`` (our run, us first) and commit those who accept; ``None`` if too few do."""
        state.leading = True
        try:
            group_id, others = secrets.token_hex(16), [p for p in members if p != self.me]
            replies = await self.propose(state, group_id, others, self._config.request_timeout)
            accepted = [p for p, reply in zip(others, replies, strict=True) if reply.ok]
            for peer, reply in zip(others, replies, strict=True):
                if not reply.ok:
                    logger.debug("%s refused to join: %s", peer, reply.reason)
                    state.refusals[peer] = reply.reason
            if len(accepted) + 1 < self._config.min_group_size:
                await self.abort(group_id, accepted)
                return None
            return await self.close(state, group_id, accepted, bandwidths, whole=whole)
        finally:
            state.leading = False

    async def propose(self, state: Seeking, group_id: str, peers: list[str], timeout: float) -> list[Reply]:
        """Ask each of ``peers`` to join ``group_id`` for the round ``state`` seeks; their replies in order."""
        run, round_id, schema = state.key
        proposal = encode_message(Propose(run=run, round_id=round_id, schema_id=schema, group_id=group_id))
        return list(await asyncio.gather(*(self._ask(p, self._propose, proposal, timeout) for p in peers)))

    async def abort(self, group_id: str, accepted: list[str]) -> None:
        """Release the peers that accepted ``group_id``."""
        abort = encode_message(Commit(group_id=group_id, abort=True))
        await asyncio.gather(*(self._ask(p, self._commit, abort) for p in accepted))

    async def close(
        self, state: Seeking, group_id: str, accepted: list[str], bandwidths: dict[str, float], *, whole: bool
    ) -> Group:
        """Commit us and ``accepted`` as group ``group_id``."""
        final = (self.me, *accepted)
        commit = Commit(group_id=group_id, members=final, bandwidths=tuple(bandwidths[p] for p in final), whole=whole)
        # The group is final now. A member starts its round as soon as it has our commit and may send us data
        # before its answer reaches us (a busy machine runs our side late): that data must find the group expected.
        self._memory.expect(group_id)
        await asyncio.gather(*(self._ask(p, self._commit, encode_message(commit)) for p in accepted))
        return self.finish(state, final, bandwidths, group_id, whole=whole)

    def finish(
        self,
        state: Seeking,
        members: tuple[str, ...],
        bandwidths: dict[str, float],
        group_id: str | None = None,
        *,
        whole: bool = False,
    ) -> Group:
        """Settle ``state`` with the group of ``members`` (a fresh id unless ``group_id``)."""
        run, round_id, schema = state.key
        group = Group(group_id or secrets.token_hex(16), run, round_id, members, tuple(bandwidths[p] for p in members))
        self._memory.joined(schema, group, whole)
        state.committed.set_result(group)
        return group

    async def _ask(self, peer: str, method: str, message: bytes, timeout: float | None = None) -> Reply:
        try:
            timeout = self._config.request_timeout if timeout is None else timeout
            raw = await self._transport.call_unary(peer, method, message, timeout=timeout)
            return decode_message(raw, Reply)[0]
        except SwarmnetError as e:
            return Reply(ok=False, reason=f"{type(e).__name__}: {e}")
