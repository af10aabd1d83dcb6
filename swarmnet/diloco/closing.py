"""When a trainer that reached its last step may leave: once the peers that ended where it did hold its state.

Every member of a round in which all members contributed applies the same average, so such a round
leaves them on one state. A round that failed, or left a member's contribution out, leaves each peer
on its own update: the trainers then settle on the consensus state (``consensus.choose``, the same
rules that resist forged states while training) before they stop, the ones off it fetching it from
its holders, which keep serving it meanwhile. ``settled`` says when there is nothing left to wait for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from swarmnet.averaging import Outcome

if TYPE_CHECKING:
    from swarmnet.diloco.state_sync import StateAnnouncement

__all__ = ["converging", "settled"]


def converging(last: Sequence[Outcome]) -> frozenset[str]:
    """Peers sure to end on our state without a fetch: the members of our last rounds (one per fragment) if
    every member contributed to each of them, otherwise none."""
    if not last or not all(o.succeeded and o.consistent and set(o.contributors) == set(o.members) for o in last):
        return frozenset()
    peers = set(last[0].members)
    for outcome in last[1:]:
        peers &= set(outcome.members)
    return frozenset(peers)


def settled(announcements: Mapping[str, StateAnnouncement], *, me: str, fragments: int, sure: frozenset[str]) -> bool:
    """Whether no peer that ended, or is about to end, at our round holds a state other than ours.

    ``announcements``: the holding announcements of our schema, ours under ``me``; ``sure``: peers that reach
    our state on their own (``converging``). A peer at our round must announce our digest; one less than a
    sync interval (``fragments`` rounds) behind is still finishing its last round and must be in ``sure``.
    Peers further behind, or ahead (the swarm goes on without us), are not waited for.
    """
    mine = announcements.get(me)
    if mine is None:
        return True  # nothing announced, nothing anyone could fetch from us
    for peer, announcement in announcements.items():
        if peer == me:
            continue
        if announcement.rounds == mine.rounds and announcement.digest != mine.digest:
            return False
        if 0 < mine.rounds - announcement.rounds <= fragments and peer not in sure:
            return False
    return True
