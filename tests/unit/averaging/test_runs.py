"""The cut of seeking peers into runs: consecutive ids, longer runs first, skipped peers only within a run."""

from __future__ import annotations

from swarmnet.averaging.runs import free_run, run_of

IDS = ["a", "b", "c", "d", "e"]


def test_five_peers_with_target_four_are_cut_into_runs_of_three_and_two() -> None:
    assert [run_of(p, IDS, 4) for p in IDS] == [["a", "b", "c"]] * 3 + [["d", "e"]] * 2
    assert run_of("c", IDS[:4], 4) == IDS[:4]


def test_a_skipped_peer_leaves_the_others_runs_where_they_were() -> None:
    looking = set(IDS)
    assert free_run("a", looking, set(), {"b"}, 4, 2) == ["a", "c"]
    assert free_run("d", looking, set(), {"b"}, 4, 2) == ["d", "e"]


def test_too_few_free_in_our_run_cuts_the_free_peers_among_themselves() -> None:
    # Runs [a, b, c] and [d, e, f]; a, b, d and e were grouped, so c and f are cut among themselves.
    assert free_run("c", {"c", "f"}, {"a", "b", "d", "e"}, set(), 3, 2) == ["c", "f"]
    assert free_run("c", {"c", "f"}, {"a", "b", "d", "e"}, set(), 3, 1) == ["c"]
