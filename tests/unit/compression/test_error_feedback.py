"""``ErrorFeedback``: compensation arithmetic, DGC momentum options, state, and every rejection."""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import pytest
import torch

from swarmnet.compression.base import Codec
from swarmnet.compression.cast import BFloat16Codec, Float16Codec, NoneCodec
from swarmnet.compression.error_feedback import ErrorFeedback, ErrorFeedbackConfig, ErrorFeedbackStatistics
from swarmnet.compression.int4 import Int4Codec
from swarmnet.compression.int8 import Int8Codec
from swarmnet.compression.sign1bit import Sign1BitCodec
from swarmnet.compression.topk import TopKCodec
from swarmnet.errors import ConfigError

SIGN = Sign1BitCodec("sign1bit")


def exact_topk(ratio: float) -> TopKCodec:
    """Exact top-k with fp16 values: the hand-picked values below are all exact in fp16."""
    return TopKCodec(f"top{ratio}", ratio, selection="exact", values="fp16")


class Broken(NoneCodec):
    """Adds into the residual, then fails: what a codec bug looks like from outside."""

    def encode(self, tensor: torch.Tensor) -> bytes:
        raise RuntimeError("codec bug")


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


# --- compensation arithmetic ----------------------------------------------------------------------


def test_sign_residual_after_one_and_two_steps_by_hand() -> None:
    ef, codec, g = ErrorFeedback(), SIGN, t(1, -2, 3, -4)
    # step 1: mean|g| = 2.5, sent = 2.5 * sign(g), residual = g - sent
    sent = codec.decode(ef.encode("w", g, codec))
    assert torch.equal(sent, t(2.5, -2.5, 2.5, -2.5))
    assert torch.equal(ef.residual("w"), t(-1.5, 0.5, 0.5, -1.5))
    # step 2: acc = residual + g = [-0.5, -1.5, 3.5, -5.5], mean|acc| = 2.75
    sent = codec.decode(ef.encode("w", g, codec))
    assert torch.equal(sent, t(-2.75, -2.75, 2.75, -2.75))
    assert torch.equal(ef.residual("w"), t(2.25, 1.25, 0.75, -2.75))


def test_topk_residual_by_hand_on_a_shaped_tensor() -> None:
    ef, codec = ErrorFeedback(), exact_topk(0.25)
    g = t(1, -8, 2, 0.5, 4, -1, 0.25, 3).reshape(2, 4)
    sent = codec.decode(ef.encode("w", g, codec))
    assert sent.shape == g.shape  # the payload carries the tensor's shape
    assert torch.equal(sent.reshape(-1), t(0, -8, 0, 0, 4, 0, 0, 0))
    assert torch.equal(ef.residual("w"), t(1, 0, 2, 0.5, 0, -1, 0.25, 3))
    # step 2: acc = [2, -8, 4, 1, 4, -2, 0.5, 6]; -8 and 6 go out
    sent = codec.decode(ef.encode("w", g, codec)).reshape(-1)
    assert torch.equal(sent, t(0, -8, 0, 0, 0, 0, 0, 6))
    assert torch.equal(ef.residual("w"), t(2, 0, 4, 1, 4, -2, 0.5, 0))


def test_lossless_codec_keeps_the_residual_exactly_zero() -> None:
    ef, codec = ErrorFeedback(), NoneCodec("none")
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        g = torch.randn(3, 7, generator=gen)
        assert torch.equal(codec.decode(ef.encode("w", g, codec)).reshape(3, 7), g)
        assert torch.count_nonzero(ef.residual("w")) == 0
    assert ef.statistics().residual_norm == 0.0


def _codecs() -> list[tuple[str, Callable[[], Codec], float]]:
    """(id, factory, relative tolerance of the running-sum invariant)."""
    return [
        ("fp16", lambda: Float16Codec("fp16"), 1e-5),
        ("bf16", lambda: BFloat16Codec("bf16"), 1e-5),
        ("sign1bit", lambda: Sign1BitCodec("sign1bit", chunk_size=64), 1e-5),
        ("int8", lambda: Int8Codec("int8", block_size=64), 1e-5),
        ("int4", lambda: Int4Codec("int4", block_size=64), 1e-5),
        ("topk-sampled-fp16", lambda: TopKCodec("topk", 0.05, sample_size=50), 1e-5),
        ("topk-exact-int8", lambda: TopKCodec("topk", 0.05, selection="exact", values="int8"), 1e-5),
        ("topk-exact-sign", lambda: TopKCodec("topk", 0.05, selection="exact", values="sign"), 1e-5),
    ]


@pytest.mark.parametrize(("factory", "rtol"), [c[1:] for c in _codecs()], ids=[c[0] for c in _codecs()])
def test_decoded_payloads_plus_residual_add_up_to_the_inputs(factory: Callable[[], Codec], rtol: float) -> None:
    ef, codec = ErrorFeedback(), factory()
    gen = torch.Generator().manual_seed(1)
    inputs, decoded = torch.zeros(300, dtype=torch.float64), torch.zeros(300, dtype=torch.float64)
    for step in range(60):
        g = torch.randn(20, 15, generator=gen) * (1 + step % 5)
        inputs += g.reshape(-1).double()
        out = torch.zeros(20, 15, dtype=torch.float64)
        codec.decode_accumulate(ef.encode("w", g, codec), out)
        decoded += out.reshape(-1)
        total = decoded + ef.residual("w").double()
        assert torch.allclose(total, inputs, rtol=rtol, atol=rtol * float(inputs.abs().max())), step
    if not isinstance(codec, Float16Codec | BFloat16Codec):
        assert ef.statistics().residual_norm > 0  # a lossy codec did leave something behind


def test_keys_are_independent() -> None:
    ef, codec = ErrorFeedback(), SIGN
    ef.encode("a", t(1, -2, 3, -4), codec)
    ef.encode("b", t(5, 5), codec)
    assert ef.keys() == ["a", "b"]
    assert torch.equal(ef.residual("a"), t(-1.5, 0.5, 0.5, -1.5))
    assert torch.equal(ef.residual("b"), t(0, 0))
    ef.reset("a")
    assert ef.keys() == ["b"]
    ef.reset()
    assert ef.keys() == []
    with pytest.raises(KeyError, match="no residual"):
        ef.residual("a")


# --- DGC momentum correction and momentum factor masking ------------------------------------------


def test_momentum_correction_accumulates_the_velocity() -> None:
    ef, codec = ErrorFeedback(ErrorFeedbackConfig(momentum=0.5)), NoneCodec("none")
    g1, g2 = t(1, -2, 4), t(2, 2, -2)
    assert torch.equal(codec.decode(ef.encode("w", g1, codec)), g1)
    # u2 = 0.5 * u1 + g2: with a lossless codec the payload is the velocity itself
    assert torch.equal(codec.decode(ef.encode("w", g2, codec)), t(2.5, 1, 0))
    assert torch.equal(ef.velocity("w"), t(2.5, 1, 0))


def test_momentum_correction_with_topk_by_hand() -> None:
    ef, codec = ErrorFeedback(ErrorFeedbackConfig(momentum=0.5)), exact_topk(0.25)
    assert torch.equal(codec.decode(ef.encode("w", t(1, -4, 2, 0.5), codec)), t(0, -4, 0, 0))
    assert torch.equal(ef.residual("w"), t(1, 0, 2, 0.5))
    # no masking: u = 0.5 * [1, -4, 2, 0.5] + [1, 1, 1, 1] = [1.5, -1, 2, 1.25]; acc = [2.5, -1, 4, 1.75]
    assert torch.equal(codec.decode(ef.encode("w", t(1, 1, 1, 1), codec)), t(0, 0, 4, 0))
    assert torch.equal(ef.velocity("w"), t(1.5, -1, 2, 1.25))
    assert torch.equal(ef.residual("w"), t(2.5, -1, 0, 1.75))


def test_factor_masking_zeroes_the_velocity_exactly_where_something_was_sent() -> None:
    ef = ErrorFeedback(ErrorFeedbackConfig(momentum=0.5, factor_masking=True))
    codec = exact_topk(0.25)
    assert torch.equal(codec.decode(ef.encode("w", t(1, -4, 2, 0.5), codec)), t(0, -4, 0, 0))
    assert torch.equal(ef.velocity("w"), t(1, 0, 2, 0.5))
    # u = 0.5 * [1, 0, 2, 0.5] + 1 = [1.5, 1, 2, 1.25]; acc = [2.5, 1, 4, 1.75] -> 4 goes out
    assert torch.equal(codec.decode(ef.encode("w", t(1, 1, 1, 1), codec)), t(0, 0, 4, 0))
    assert torch.equal(ef.velocity("w"), t(1.5, 1, 0, 1.25))
    assert torch.equal(ef.residual("w"), t(2.5, 1, 0, 1.75))


@pytest.mark.parametrize(
    ("codec", "count"),
    [
        (TopKCodec("topk", 0.06, selection="exact", values="int8"), 6),
        (TopKCodec("topk", 0.1, sample_size=30, seed=1), None),  # sampled: about 10
    ],
    ids=["topk-exact-int8", "topk-sampled-fp16"],
)
def test_factor_masking_on_random_data_and_through_compensate_update(codec: Codec, count: int | None) -> None:
    config = ErrorFeedbackConfig(momentum=0.9, factor_masking=True)
    fused, split = ErrorFeedback(config), ErrorFeedback(config)
    gen = torch.Generator().manual_seed(2)
    for _ in range(30):
        g = torch.randn(100, generator=gen)
        expected_velocity = 0.9 * fused.velocity("w") + g if fused.keys() else g.clone()
        payload = fused.encode("w", g, codec)
        sent = codec.decode(payload) != 0
        n_sent = int(sent.sum())
        assert (n_sent == count) if count is not None else (0 < n_sent < 20)
        assert torch.count_nonzero(fused.velocity("w")[sent]) == 0
        assert torch.allclose(fused.velocity("w")[~sent], expected_velocity[~sent])
        compensated = split.compensate("w", g)
        split.update("w", codec.decode(codec.encode(compensated)))
        assert torch.equal(split.residual("w"), fused.residual("w"))
        assert torch.equal(split.velocity("w"), fused.velocity("w"))


def test_compensate_update_protocol_errors() -> None:
    ef = ErrorFeedback()
    with pytest.raises(ValueError, match="without a compensate"):
        ef.update("w", t(1, 2))
    compensated = ef.compensate("w", t(1, 2))
    assert torch.equal(compensated, t(1, 2))
    with pytest.raises(RuntimeError, match="not updated"):
        ef.encode("w", t(1, 2), SIGN)
    with pytest.raises(RuntimeError, match="between compensate"):
        ef.state_dict()
    with pytest.raises(ValueError, match="3 elements sent, 2 compensated"):
        ef.update("w", t(1, 2, 3))
    ef.update("w", t(1, 1))
    assert torch.equal(ef.residual("w"), t(0, 1))


# --- state ----------------------------------------------------------------------------------------


def _trained(config: ErrorFeedbackConfig) -> ErrorFeedback:
    ef, gen = ErrorFeedback(config), torch.Generator().manual_seed(3)
    for _ in range(5):
        ef.encode("layer.weight", torch.randn(6, 5, generator=gen), exact_topk(0.1))
        ef.encode("layer.bias", torch.randn(5, generator=gen), SIGN)
        ef.encode("scalar", torch.randn((), generator=gen), SIGN)
    return ef


@pytest.mark.parametrize(
    "config",
    [
        ErrorFeedbackConfig(),
        ErrorFeedbackConfig(momentum=0.9, factor_masking=True),
        ErrorFeedbackConfig(momentum=0.5, dtype=torch.bfloat16),
    ],
    ids=["plain", "momentum-masking", "bf16-storage"],
)
def test_state_round_trip_through_torch_save(config: ErrorFeedbackConfig) -> None:
    ef = _trained(config)
    buffer = io.BytesIO()
    torch.save(ef.state_dict(), buffer)
    buffer.seek(0)
    restored = ErrorFeedback(config)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.keys() == ef.keys() == ["layer.bias", "layer.weight", "scalar"]
    assert restored.statistics() == ef.statistics()
    g = torch.arange(30, dtype=torch.float32).reshape(6, 5)
    assert restored.encode("layer.weight", g, exact_topk(0.1)) == ef.encode("layer.weight", g, exact_topk(0.1))
    with pytest.raises(ValueError, match="shape"):
        restored.encode("layer.weight", g.reshape(5, 6), exact_topk(0.1))  # the shape came back too


def test_state_dict_is_a_copy() -> None:
    ef = _trained(ErrorFeedbackConfig())
    state = ef.state_dict()
    state["residual/layer.bias"].fill_(1e6)
    assert ef.statistics().residual_norm < 1e6


def _bad_states() -> list[tuple[str, object, str]]:
    good = _trained(ErrorFeedbackConfig()).state_dict()

    def edit(name: str, value: object) -> dict[str, object]:
        state: dict[str, object] = dict(good)
        if value is None:
            del state[name]
        else:
            state[name] = value
        return state

    return [
        ("not-a-dict", [1, 2], "must be a dict"),
        ("unknown-entry", {**good, "bogus": torch.zeros(1)}, "unexpected entry"),
        ("non-tensor", edit("residual/layer.bias", [0.0] * 5), "1-D tensor"),
        ("two-dimensional", edit("residual/layer.bias", torch.zeros(1, 5)), "1-D tensor"),
        ("nan", edit("residual/layer.bias", torch.tensor([0, 0, math.nan, 0, 0])), "finite floating"),
        ("inf", edit("residual/layer.bias", torch.tensor([0, 0, math.inf, 0, 0])), "finite floating"),
        ("integer", edit("residual/layer.bias", torch.zeros(5, dtype=torch.int32)), "finite floating"),
        ("wrong-numel", edit("residual/layer.bias", torch.zeros(4)), "has 4 elements"),
        ("no-shape", edit("shape/layer.bias", None), "needs a shape"),
        ("negative-shape", edit("shape/layer.bias", torch.tensor([-5])), "non-negative int64"),
        ("float-shape", edit("shape/layer.bias", torch.tensor([5.0])), "non-negative int64"),
        ("velocity-without-momentum", {**good, "velocity/scalar": torch.zeros(1)}, "momentum 0"),
    ]


@pytest.mark.parametrize(("state", "match"), [b[1:] for b in _bad_states()], ids=[b[0] for b in _bad_states()])
def test_malformed_state_is_rejected_and_changes_nothing(state: object, match: str) -> None:
    ef = _trained(ErrorFeedbackConfig())
    before = ef.state_dict()
    with pytest.raises(ValueError, match=match):
        ef.load_state_dict(state)  # type: ignore[arg-type]
    after = ef.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[name], before[name]) for name in before)


def test_velocity_without_residual_is_rejected() -> None:
    ef = ErrorFeedback(ErrorFeedbackConfig(momentum=0.5))
    with pytest.raises(ValueError, match="every shape and velocity a residual"):
        ef.load_state_dict({"velocity/w": torch.zeros(2)})


def test_loading_without_velocities_starts_them_at_zero() -> None:
    plain = _trained(ErrorFeedbackConfig())
    ef = ErrorFeedback(ErrorFeedbackConfig(momentum=0.5))
    ef.load_state_dict(plain.state_dict())
    ef.encode("layer.bias", t(1, 2, 3, 4, 5), NoneCodec("none"))
    assert torch.equal(ef.velocity("layer.bias"), t(1, 2, 3, 4, 5))


# --- rejections -----------------------------------------------------------------------------------


def test_a_key_reused_with_another_size_or_shape_is_an_error() -> None:
    ef, codec = ErrorFeedback(), SIGN
    ef.encode("w", torch.ones(2, 3), codec)
    with pytest.raises(ValueError, match=r"key 'w' holds state for shape \(2, 3\) \(6 elements\)"):
        ef.encode("w", torch.ones(7), codec)
    with pytest.raises(ValueError, match="holds state for shape"):
        ef.compensate("w", torch.ones(3, 2))
    ef.reset("w")
    ef.encode("w", torch.ones(7), codec)
    assert ef.statistics().residual_elements == 7


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(
    "config", [ErrorFeedbackConfig(), ErrorFeedbackConfig(momentum=0.9)], ids=["plain", "momentum"]
)
def test_non_finite_input_is_rejected_before_touching_state(bad: float, config: ErrorFeedbackConfig) -> None:
    ef, codec = ErrorFeedback(config), SIGN
    ef.encode("w", t(1, -2, 3, -4), codec)
    before = ef.state_dict()
    with pytest.raises(ValueError, match="1 of 4 input values are NaN or infinite"):
        ef.encode("w", t(1, bad, 3, -4), codec)
    with pytest.raises(ValueError, match="NaN or infinite"):
        ef.compensate("w", t(1, bad, 3, -4))
    with pytest.raises(ValueError, match="NaN or infinite"):
        ef.encode("fresh", t(bad), codec)
    after = ef.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[name], before[name]) for name in before)
    assert ef.keys() == ["w"]


def test_non_finite_sent_value_is_rejected_and_the_key_stays_pending() -> None:
    ef = ErrorFeedback()
    ef.compensate("w", t(1, 2))
    with pytest.raises(ValueError, match="NaN or infinite"):
        ef.update("w", t(math.nan, 0))
    ef.update("w", t(1, 2))
    assert torch.equal(ef.residual("w"), t(0, 0))


def test_non_floating_and_non_tensor_inputs_are_rejected() -> None:
    ef = ErrorFeedback()
    with pytest.raises(ValueError, match="floating CPU tensor"):
        ef.encode("w", torch.ones(3, dtype=torch.int64), SIGN)
    with pytest.raises(TypeError, match="expected a tensor"):
        ef.encode("w", [1.0, 2.0], SIGN)  # type: ignore[arg-type]
    assert ef.keys() == []


def test_a_failing_codec_drops_the_half_updated_key() -> None:
    ef = ErrorFeedback(ErrorFeedbackConfig(momentum=0.5))
    ef.encode("w", t(1, 2), SIGN)
    ef.encode("other", t(1, 2), SIGN)
    with pytest.raises(RuntimeError, match="codec bug"):
        ef.encode("w", t(1, 2), Broken("broken"))
    assert ef.keys() == ["other"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"momentum": -0.1}, "momentum"),
        ({"momentum": 1.0}, "momentum"),
        ({"momentum": math.nan}, "momentum"),
        ({"factor_masking": True}, "needs momentum > 0"),
        ({"dtype": torch.float64}, "residual dtype"),
        ({"dtype": torch.int32}, "residual dtype"),
    ],
)
def test_config_validation(kwargs: dict[str, object], match: str) -> None:
    config = ErrorFeedbackConfig(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=match):
        config.validate()
    with pytest.raises(ConfigError, match=match):
        ErrorFeedback(config)


# --- storage dtype and statistics -----------------------------------------------------------------


def test_bfloat16_storage_keeps_the_invariant_up_to_storage_rounding() -> None:
    ef, codec = ErrorFeedback(ErrorFeedbackConfig(dtype=torch.bfloat16)), SIGN
    gen = torch.Generator().manual_seed(4)
    inputs, decoded = torch.zeros(64, dtype=torch.float64), torch.zeros(64, dtype=torch.float64)
    for _ in range(40):
        g = torch.randn(64, generator=gen)
        inputs += g.double()
        decoded += codec.decode(ef.encode("w", g, codec)).double()
    error = (decoded + ef.residual("w").double() - inputs).abs().max()
    assert float(error) < 0.05 * float(inputs.abs().max())


def test_statistics_by_hand() -> None:
    ef, codec = ErrorFeedback(ErrorFeedbackConfig(momentum=0.5)), SIGN
    assert ef.statistics() == ErrorFeedbackStatistics(
        keys=0, residual_elements=0, residual_norm=0.0, velocity_norm=0.0
    )
    ef.encode("a", t(1, -2, 3, -4), codec)  # residual [-1.5, 0.5, 0.5, -1.5], velocity = g
    ef.encode("b", t(3, 3), codec)  # residual [0, 0], velocity [3, 3]
    stats = ef.statistics()
    assert (stats.keys, stats.residual_elements) == (2, 6)
    assert stats.residual_norm == pytest.approx(math.sqrt(2.25 * 2 + 0.25 * 2))
    assert stats.velocity_norm == pytest.approx(math.sqrt(1 + 4 + 9 + 16 + 9 + 9))
