"""How the peers seeking one round are cut into runs: consecutive peers in the round's order, each run one
group, its first free peer the leader. Pure functions of what a peer sees in the DHT, so every peer with the
same view cuts alike.

The order is a hash of each peer id salted with the run and round, so it changes every round: in a
swarm larger than ``target_group_size`` the groups mix (as in Moshpit SGD), where a fixed order would
average the same peers together forever and let the groups' models drift apart.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterable

__all__ = ["free_run", "round_order", "run_of"]


def round_order(ids: Iterable[str], salt: str) -> list[str]:
    """``ids`` in this round's order (``salt`` names the run and round)."""
    return sorted(ids, key=lambda peer: (hashlib.blake2b(f"{salt}/{peer}".encode(), digest_size=16).digest(), peer))


def free_run(
    me: str, looking: set[str], grouped: set[str], skipped: set[str], target: int, minimum: int, salt: str
) -> list[str]:
    """The free peers of ``me``'s run, in the round's order: the first one leads.

    Everyone who announced, grouped or not, is cut into runs: those are the same for every
    peer however late the grouped markers of other groups reach it. A peer in ``skipped`` (it
    refused us, or a leader never proposed) is only skipped within our run, not taken out of the
    cut, which would shift the runs behind it in our view alone. When fewer than ``minimum`` of
    our run are still free (we came late, or our run was grouped without us), the free peers are
    cut among themselves instead.
    """
    free = (looking - skipped) | {me}
    mine = [p for p in run_of(me, round_order(looking | grouped | {me}, salt), target) if p in free]
    if len(mine) < minimum:
        mine = run_of(me, round_order(free, salt), target)
    return mine


def run_of(peer: str, ids: list[str], target: int) -> list[str]:
    """The run of ``peer`` when ``ids`` (in order) are cut into ``ceil(n / target)`` runs, longer runs first.

    Runs of consecutive ids, not interleaved slices: when a group closes and its members drop
    out of the free peers, every other run stays as it was (the sizes keep their longer-first
    pattern), and a late peer moves only the runs after it.
    """
    count = max(1, math.ceil(len(ids) / target))
    base, extra = divmod(len(ids), count)
    bounds = [i * base + min(i, extra) for i in range(count + 1)]
    index = ids.index(peer)
    return next(ids[start:end] for start, end in itertools.pairwise(bounds) if index < end)
