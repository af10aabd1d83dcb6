"""A seeking peer's side of the leader's two steps (``matchmaking.py``): whether it accepts a proposal,
and whether a commit names a group it may join. One leader at a time, one group per round.
"""

from __future__ import annotations

import math

from swarmnet.averaging.messages import Commit
from swarmnet.averaging.seeking import Seeking

__all__ = ["NOT_LOOKING", "refusal", "well_formed"]

NOT_LOOKING = "not looking for a group for that run, round and schema"


def refusal(state: Seeking | None, caller: str, *, distrusted: bool) -> str:
    """Why we refuse ``caller``'s proposal (``state``: our seeking of its round, if any), or "" if we
    accept it. ``distrusted``: a result of the caller's was refused lately."""
    if state is None:
        return NOT_LOOKING
    if state.committed.done():
        return "already in a group for this round"
    if state.leading:
        return "leading a group of my own"
    if distrusted:
        return "distrusted: a result of yours was refused lately"
    if state.reserved_by is not None and state.reserved_by != caller:
        return "reserved by another leader"
    return ""


def well_formed(commit: Commit, caller: str, me: str) -> bool:
    """Whether ``commit`` names a group we may join: led by ``caller``, with us in it, nobody twice, and
    a finite, non-negative bandwidth for each member."""
    members, bandwidths = commit.members, commit.bandwidths
    return (
        len(set(members)) == len(members)
        and me in members
        and bool(members)
        and members[0] == caller
        and len(bandwidths) == len(members)
        and all(math.isfinite(b) and b >= 0 for b in bandwidths)
    )
