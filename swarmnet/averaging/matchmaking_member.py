"""A member's side of group formation (``matchmaking.py``): the peer's seeking states, and its answers to a
leader's propose and commit calls (the rules of which are in ``answers.py``)."""

from __future__ import annotations

import asyncio

from swarmnet.averaging.answers import refusal, well_formed
from swarmnet.averaging.config import MatchmakingConfig
from swarmnet.averaging.group import Group
from swarmnet.averaging.matchmaking_memory import GroupMemory
from swarmnet.averaging.messages import Commit, Propose, Reply, decode_message, encode_message, method_name
from swarmnet.averaging.seeking import Seeking
from swarmnet.errors import ProtocolError
from swarmnet.transport.base import Transport

__all__ = ["Member"]


class Member:
    """Serves the propose and commit methods of one run for one peer (``me``)."""

    def __init__(self, me: str, config: MatchmakingConfig, memory: GroupMemory, run: str) -> None:
        self._me, self._config, self._memory, self._run = me, config, memory, run
        self.seeking: dict[tuple[str, int, str], Seeking] = {}  # what we seek now, by (run, round, schema)

    async def serve(self, transport: Transport) -> None:
        """Register the propose and commit handlers on ``transport``."""
        await transport.add_unary_handler(method_name(self._run, "propose"), self.on_propose)
        await transport.add_unary_handler(method_name(self._run, "commit"), self.on_commit)

    async def on_propose(self, caller: str, request: bytes) -> bytes:
        """Accept ``caller``'s proposal (it then reserves us) unless ``answers.refusal`` says why not."""
        proposal, _ = decode_message(request, Propose)
        state = self.seeking.get((proposal.run, proposal.round_id, proposal.schema_id))
        reason = refusal(state, caller, distrusted=caller in self._memory.distrusted)
        if state is None or reason:
            return encode_message(Reply(ok=False, reason=reason))
        state.reserved_by, state.group_id = caller, proposal.group_id
        state.watched = None  # whoever we were waiting for, a leader is talking to us
        state.reserved_until = asyncio.get_running_loop().time() + 3 * self._config.request_timeout
        return encode_message(Reply(ok=True))

    async def on_commit(self, caller: str, request: bytes) -> bytes:
        """Join the group that the leader which reserved us commits, or be free again on its abort."""
        commit, _ = decode_message(request, Commit)
        state = next((s for s in self.seeking.values() if s.group_id == commit.group_id), None)
        if state is None or state.reserved_by != caller or state.committed.done():
            return encode_message(Reply(ok=False, reason="no reservation by you for that group"))
        if commit.abort:
            state.reserved_by = state.group_id = None
            return encode_message(Reply(ok=True))
        members, bandwidths = commit.members, commit.bandwidths
        if not well_formed(commit, caller, self._me):
            state.reserved_by = state.group_id = None
            raise ProtocolError(
                f"malformed commit from {caller}: members {len(members)}, bandwidths {len(bandwidths)}"
            )
        run, round_id, schema = state.key
        group = Group(commit.group_id, run, round_id, members, bandwidths)
        self._memory.joined(schema, group, commit.whole)
        state.committed.set_result(group)
        return encode_message(Reply(ok=True))
