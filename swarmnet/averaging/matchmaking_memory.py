"""What a matchmaker keeps from one round to the next (``matchmaking.py``): the groups it joined lately,
the last full group of each schema (to re-form next round), and the peers it distrusts for a while."""

from __future__ import annotations

from collections import deque

from swarmnet.averaging.config import MatchmakingConfig
from swarmnet.averaging.group import Group

__all__ = ["GroupMemory"]

_RECENT_GROUPS = 64  # group ids kept for data that arrives before our own round starts


class GroupMemory:
    """One peer's memory of its groups across rounds."""

    def __init__(self, config: MatchmakingConfig) -> None:
        self._config = config
        self.last_full: dict[str, Group] = {}  # per schema: the last full group we were in, while still ours
        self.distrusted: dict[str, int] = {}  # peer -> groups we still seek without it
        self._recent: deque[str] = deque(maxlen=_RECENT_GROUPS)  # groups we joined lately

    def expects(self, group_id: str) -> bool:
        """Whether ``group_id`` is a group we joined lately (or are about to commit as its leader)."""
        return group_id in self._recent

    def expect(self, group_id: str) -> None:
        """Note ``group_id`` as ours, so that data sent for it is not refused."""
        if group_id not in self._recent:
            self._recent.append(group_id)

    def joined(self, schema: str, group: Group, whole: bool) -> None:
        """Note a group we are in: a full one of every peer that sought the round (``whole``) is the one to
        re-form next round."""
        self.expect(group.group_id)
        if whole and len(group.members) == self._config.target_group_size > 1:
            self.last_full[schema] = group
        else:
            self.last_full.pop(schema, None)

    def distrust(self, peer: str) -> None:
        """Leave ``peer`` out of the next ``distrust_rounds`` groups, and forget any group it is in."""
        if self._config.distrust_rounds > 0:
            self.distrusted[peer] = self._config.distrust_rounds
            self.last_full = {s: g for s, g in self.last_full.items() if peer not in g.members}

    def round_ended(self) -> None:
        """Count one sought group off every distrusted peer's sentence."""
        self.distrusted = {p: left - 1 for p, left in self.distrusted.items() if left > 1}

    def forget(self, schema: str) -> None:
        """Forget the full group of ``schema``: the DHT decides its next round."""
        self.last_full.pop(schema, None)

    def forget_group(self, group: Group) -> None:
        """Forget ``group`` under whichever schema holds it."""
        self.last_full = {s: g for s, g in self.last_full.items() if g is not group}
