"""Which announced DiLoCo state the swarm agrees on, so that a minority of peers cannot impose theirs.

Every trainer announces (signed, in its own DHT slot) the state it holds. Announcements that
claim the same thing (digest, round, step and part list) form a *claim*; its *support* is the
number of distinct peers announcing it. Over ``n`` announcers (ourselves included, when we hold
a state), the chosen claim is, in this order:

1. **majority**: a claim backed by more than ``n / 2`` peers. This one is taken even when it is
   further ahead than we believe possible (a trainer resumed from an old checkpoint catches up).
2. **plurality**: among believable claims (``plausible``) backed by at least two peers, the best
   supported; ties go to the newest round, then the smaller digest. Several claims can be live at
   once while trainers publish one round's result one after another; a plurality keeps the swarm
   moving then, and no single peer can create one for its own state.
3. **pair**: when we and exactly one other peer announce different states (two trainers whose
   exchange failed), the newer believable one, then the smaller digest, so the two converge.

Otherwise there is no consensus: a trainer keeps its own state, and a joiner waits for one.
So one peer, or a minority short of a strict majority, cannot make a joiner or a trainer of a
swarm with two agreeing honest trainers adopt its state; what it can claim is also bounded in
time (``swarmnet.diloco.pace``).

Limits: identities cost nothing, so an attacker running more keys than there are honest
trainers (Sybil identities) still outvotes them. A lone honest trainer facing one other
announcer cannot tell an attacker from a peer whose exchange failed: it follows the pair rule,
so a lone attacker can draw it to a believable round (never beyond the pace bound). A joiner that
sees a single announcer follows it, since nothing tells the two apart.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from swarmnet.diloco.state_sync import StateAnnouncement

__all__ = ["Basis", "Consensus", "choose"]

Basis = Literal["majority", "plurality", "pair"]
Claim = tuple[str, int, int, int, int, tuple[str, ...]]


@dataclass(frozen=True)
class Consensus:
    """The state the swarm agrees on: its announcement, the peers that hold it, and why it was chosen."""

    announcement: StateAnnouncement
    holders: tuple[str, ...]
    announcers: int  # distinct peers announcing any state of our schema
    basis: Basis = "majority"


def choose(
    announcements: Mapping[str, StateAnnouncement],
    *,
    me: str,
    plausible: Callable[[str, StateAnnouncement], bool] | None = None,
) -> Consensus | None:
    """The consensus among ``announcements`` (peer id -> announcement; ours under ``me``), or ``None``."""
    if not announcements:
        return None
    backers: dict[Claim, list[str]] = defaultdict(list)
    for peer, announcement in announcements.items():
        backers[_claim(announcement)].append(peer)
    total = len(announcements)

    def consensus(claim: Claim, basis: Basis) -> Consensus:
        holders = tuple(sorted(backers[claim]))
        return Consensus(announcements[holders[0]], holders, total, basis)

    leader = max(backers, key=lambda c: (len(backers[c]), c[1], _smaller(c[0])))
    if 2 * len(backers[leader]) > total:
        return consensus(leader, "majority")
    believable = [c for c in backers if plausible is None or plausible(backers[c][0], announcements[backers[c][0]])]
    supported = [c for c in believable if len(backers[c]) >= 2]
    if supported:
        return consensus(max(supported, key=lambda c: (len(backers[c]), c[1], _smaller(c[0]))), "plurality")
    if total == 2 and me in announcements and believable:
        return consensus(max(believable, key=lambda c: (c[1], _smaller(c[0]))), "pair")
    return None


def _claim(announcement: StateAnnouncement) -> Claim:
    """What an announcement asserts: peers that differ in any of it hold different things."""
    a = announcement
    return (a.digest, a.rounds, a.step, a.size, a.part_size, tuple(a.parts))


def _smaller(digest: str) -> int:
    """Sort key that prefers the smaller digest under ``max``."""
    return -int(digest, 16)
