"""The cut of seeking peers into runs: consecutive in the round's order, longer runs first, skipped peers only
within a run; the order changes every round, so groups mix."""

from __future__ import annotations

import itertools

from swarmnet.averaging.runs import free_run, round_order, run_of

IDS = ["a", "b", "c", "d", "e"]


def test_five_peers_with_target_four_are_cut_into_runs_of_three_and_two() -> None:
    assert [run_of(p, IDS, 4) for p in IDS] == [["a", "b", "c"]] * 3 + [["d", "e"]] * 2
    assert run_of("c", IDS[:4], 4) == IDS[:4]


def _free_run(
    me: str, looking: set[str], grouped: set[str], skipped: set[str], target: int, minimum: int
) -> list[str]:
    """``free_run`` with a salt whose round order of a..f is alphabetical, so the cases read by letter."""
    salt = next(f"r{i}" for i in itertools.count() if round_order("abcdef", f"r{i}") == list("abcdef"))
    return free_run(me, looking, grouped, skipped, target, minimum, salt)


def test_a_skipped_peer_leaves_the_others_runs_where_they_were() -> None:
    looking = set(IDS)
    assert _free_run("a", looking, set(), {"b"}, 4, 2) == ["a", "c"]
    assert _free_run("d", looking, set(), {"b"}, 4, 2) == ["d", "e"]


def test_too_few_free_in_our_run_cuts_the_free_peers_among_themselves() -> None:
    # Runs [a, b, c] and [d, e, f]; a, b, d and e were grouped, so c and f are cut among themselves.
    assert _free_run("c", {"c", "f"}, {"a", "b", "d", "e"}, set(), 3, 2) == ["c", "f"]
    assert _free_run("c", {"c", "f"}, {"a", "b", "d", "e"}, set(), 3, 1) == ["c"]


def test_every_peer_computes_the_same_order_and_it_changes_with_the_round() -> None:
    ids = [f"peer{i}" for i in range(16)]
    assert round_order(ids, "run/3") == round_order(reversed(ids), "run/3")
    assert round_order(ids, "run/3") != round_order(ids, "run/4")
    assert sorted(round_order(ids, "run/3")) == sorted(ids)


def test_over_rounds_every_pair_of_peers_shares_a_run() -> None:
    """Eight peers in groups of four: a fixed order would keep the same two groups forever."""
    ids = [f"12D3KooW{i}" for i in range(8)]
    together: set[frozenset[str]] = set()
    for round_id in range(12):
        order = round_order(ids, f"run/{round_id}")
        for peer in ids:
            together |= {frozenset((peer, other)) for other in run_of(peer, order, 4) if other != peer}
    assert len(together) == 8 * 7 // 2
