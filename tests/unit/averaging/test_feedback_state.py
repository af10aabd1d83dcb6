"""An averager's error-feedback residuals: in its statistics, out to a checkpoint and back, and refused when
malformed."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import torch

from swarmnet.averaging import Averager, schema_id
from swarmnet.averaging.feedback_state import keep_schema
from swarmnet.averaging.vectors import feedback_keys
from swarmnet.clock import run_virtual
from swarmnet.identity import Identity
from swarmnet.transport.memory import MemoryNetwork
from tests.unit.averaging.harness import FAST, average, make_peers, random_inputs

SIGN = replace(FAST, codec="sign1bit")
NUMEL = 20_000


def _averaged(rounds: int) -> tuple[Averager, torch.Tensor]:
    """An averager after ``rounds`` sign1bit rounds among three peers, and a tensor like the ones it averaged."""

    async def main() -> Averager:
        peers = await make_peers(MemoryNetwork(), 3, SIGN)
        for round_id in range(rounds):
            outcomes = await average(peers, random_inputs(3, [(NUMEL,)], seed=round_id), round_id=round_id)
            assert all(o.succeeded for o in outcomes)
        return peers[0].averager

    return run_virtual(main()), torch.zeros(NUMEL)


def _fresh(config: object = SIGN) -> Averager:
    identity = Identity.generate()
    return Averager(MemoryNetwork().add_peer(identity.peer_id), identity, config)  # type: ignore[arg-type]


def test_statistics_count_the_sender_and_reducer_residuals() -> None:
    averager, template = _averaged(2)
    stats = averager.statistics().error_feedback
    assert stats is not None
    assert (stats.keys, stats.residual_elements) == (2, 2 * NUMEL)  # one vector each side, per schema
    assert stats.residual_norm > 0
    assert stats.velocity_norm == 0
    sent, reduced = feedback_keys(schema_id([template], "sign1bit", "mean"))
    assert sorted(averager.feedback_state()) == sorted(
        f"{kind}/{key}" for kind in ("residual", "shape") for key in (sent, reduced)
    )
    assert averager.statistics().error_feedback is stats  # computed once per step, not per call


def test_an_averager_without_residuals_reports_none() -> None:
    assert _fresh(replace(FAST, codec="none")).statistics().error_feedback is None
    empty = _fresh().statistics().error_feedback
    assert empty is not None
    assert empty.keys == 0


def test_residuals_come_back_bitwise_into_a_fresh_averager() -> None:
    averager, template = _averaged(2)
    state = averager.feedback_state()
    restored = _fresh()
    restored.load_feedback_state(state, [template])
    again = restored.feedback_state()
    assert state.keys() == again.keys()
    for name, tensor in state.items():
        assert tensor.dtype == again[name].dtype, name
        assert torch.equal(tensor, again[name]), name
    assert restored.statistics().error_feedback == averager.statistics().error_feedback


def test_residuals_of_another_schema_are_dropped_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    averager, _ = _averaged(1)
    restored = _fresh()
    with caplog.at_level(logging.INFO, logger="swarmnet.averaging.feedback_state"):
        restored.load_feedback_state(averager.feedback_state(), [torch.zeros(NUMEL, 1)])  # another layout
    assert "dropping the error-feedback residuals of 1 other tensor schemas" in caplog.text
    assert restored.feedback_state() == {}


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda s, k: s.update({f"residual/{k}": torch.zeros(NUMEL - 1)}), "does not fit a vector of 20000"),
        (lambda s, k: s.update({f"shape/{k}": torch.tensor([NUMEL + 1])}), "does not fit a vector of 20000"),
        (lambda s, k: s[f"residual/{k}"].__setitem__(7, float("nan")), "must be a finite floating tensor"),
        (lambda s, k: s.update({"residual/other": torch.zeros(3)}), "unexpected entry 'residual/other'"),
        (lambda s, k: s.update({f"velocity/{k}": torch.zeros(NUMEL)}), "momentum 0"),
    ],
    ids=["short residual", "wrong shape", "nan", "foreign key", "velocity"],
)
def test_malformed_residuals_are_refused_and_nothing_changes(change: object, error: str) -> None:
    averager, template = _averaged(1)
    state = averager.feedback_state()
    sent, _ = feedback_keys(schema_id([template], "sign1bit", "mean"))
    change(state, sent)  # type: ignore[operator]
    restored = _fresh()
    with pytest.raises(ValueError, match=error):
        restored.load_feedback_state(state, [template])
    assert restored.feedback_state() == {}


def test_keep_schema_refuses_what_is_no_state() -> None:
    with pytest.raises(ValueError, match="must be a dict"):
        keep_schema([], "s", 4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a tensor"):
        keep_schema({"residual/sent/s": [0.0] * 4}, "s", 4)  # type: ignore[dict-item]
