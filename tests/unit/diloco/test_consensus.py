"""The consensus rule: majority, plurality of claims backed by two or more peers, the pair rule, and no choice."""

from __future__ import annotations

from collections.abc import Callable

from swarmnet.diloco.consensus import choose
from swarmnet.diloco.state_sync import StateAnnouncement

ME = "me"


def claim(digit: str, rounds: int, step: int | None = None) -> StateAnnouncement:
    """An announcement of digest ``digit * 64`` at ``rounds`` (step 10 per round unless given)."""
    return StateAnnouncement(
        layout="s", rounds=rounds, step=rounds * 10 if step is None else step, digest=digit * 64,
        size=1 << 20, part_size=1 << 20, parts=["0" * 64],
    )  # fmt: skip


def nothing_believable(peer: str, announcement: StateAnnouncement) -> bool:
    return False


def below(rounds: int) -> Callable[[str, StateAnnouncement], bool]:
    def plausible(peer: str, announcement: StateAnnouncement) -> bool:
        return announcement.rounds < rounds

    return plausible


def test_a_strict_majority_wins_even_beyond_the_pace_bound() -> None:
    """A trainer resumed from an old checkpoint still follows the swarm that moved on."""
    found = {"a": claim("a", 50), "b": claim("a", 50), "c": claim("a", 50), ME: claim("e", 2)}
    chosen = choose(found, me=ME, plausible=nothing_believable)
    assert chosen is not None
    assert (chosen.announcement.digest, chosen.holders, chosen.announcers, chosen.basis) == (
        "a" * 64, ("a", "b", "c"), 4, "majority",
    )  # fmt: skip


def test_one_peer_at_a_far_newer_round_loses_to_the_plurality() -> None:
    # Honest trainers mid-publication: two at round 3, one already at round 4; the attacker at 10^6.
    found = {"a": claim("a", 3), "b": claim("a", 3), "c": claim("b", 4), "z": claim("0", 10**6)}
    chosen = choose(found, me=ME)
    assert chosen is not None
    assert (chosen.announcement.digest, chosen.basis) == ("a" * 64, "plurality")


def test_the_plurality_prefers_the_newest_round_between_equally_backed_claims() -> None:
    found = {"a": claim("a", 3), "b": claim("a", 3), "c": claim("b", 4), "d": claim("b", 4), "z": claim("0", 9)}
    chosen = choose(found, me=ME, plausible=below(100))
    assert chosen is not None
    assert chosen.announcement.rounds == 4


def test_copying_a_digest_under_another_round_does_not_add_support() -> None:
    found = {"a": claim("a", 3), "b": claim("a", 3), "z": claim("a", 10**6, step=30)}
    chosen = choose(found, me=ME)
    assert chosen is not None
    assert (chosen.announcement.rounds, chosen.holders, chosen.basis) == (3, ("a", "b"), "majority")


def test_a_joiner_takes_no_single_peer_state_while_others_back_another() -> None:
    assert choose({"a": claim("a", 3), "z": claim("0", 10**6)}, me=ME) is None
    assert choose({"a": claim("a", 3), "b": claim("b", 4), "z": claim("0", 4)}, me=ME) is None


def test_a_joiner_follows_a_single_announcer() -> None:
    chosen = choose({"a": claim("a", 3)}, me=ME)
    assert chosen is not None
    assert chosen.basis == "majority"


def test_the_pair_rule_takes_the_newer_believable_state() -> None:
    newer = choose({ME: claim("e", 3), "a": claim("a", 4)}, me=ME, plausible=below(5))
    assert newer is not None
    assert (newer.holders, newer.basis) == (("a",), "pair")
    tie = choose({ME: claim("e", 3), "a": claim("a", 3)}, me=ME, plausible=below(5))
    assert tie is not None
    assert tie.holders == ("a",)  # the smaller digest: both trainers converge on it


def test_the_pair_rule_keeps_our_state_against_an_implausible_one() -> None:
    chosen = choose({ME: claim("e", 3), "z": claim("0", 10**6)}, me=ME, plausible=below(100))
    assert chosen is not None
    assert chosen.holders == (ME,)


def test_three_single_claims_give_no_consensus() -> None:
    assert choose({ME: claim("e", 3), "a": claim("a", 4), "z": claim("0", 4)}, me=ME) is None
    assert choose({}, me=ME) is None
