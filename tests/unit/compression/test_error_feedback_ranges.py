"""``ErrorFeedback`` over ranges of one long vector: what a partitioned all-reduce keeps per tensor schema."""

from __future__ import annotations

import pytest
import torch

from swarmnet.compression.base import Codec
from swarmnet.compression.cast import NoneCodec
from swarmnet.compression.error_feedback import ErrorFeedback, ErrorFeedbackConfig
from swarmnet.compression.int8 import Int8Codec
from swarmnet.compression.sign1bit import Sign1BitCodec

SIGN = Sign1BitCodec("sign1bit")
KEY = "sent/schema"


class Broken(NoneCodec):
    """Adds into the residual, then fails: what a codec bug looks like from outside."""

    def encode(self, tensor: torch.Tensor) -> bytes:
        raise RuntimeError("codec bug")


def _vector(numel: int, seed: int) -> torch.Tensor:
    return torch.randn(numel, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("codec", [SIGN, Int8Codec("int8")], ids=["sign1bit", "int8"])
def test_a_range_encodes_like_the_codecs_fused_kernel_on_that_slice(codec: Codec) -> None:
    ef, values = ErrorFeedback(), _vector(4096, 0)
    residual = torch.zeros(4096)
    for step in range(3):  # the residual carries over between steps, slice by slice
        for lo, hi in ((0, 1024), (1024, 4096)):
            expected = codec.encode_with_feedback(values[lo:hi], residual[lo:hi])
            assert ef.encode_range(KEY, 4096, lo, values[lo:hi], codec) == expected, step
    assert torch.equal(ef.residual(KEY), residual)
    assert ef.keys() == [KEY]


def test_sums_of_decoded_ranges_plus_the_residual_equal_the_sums_of_inputs() -> None:
    ef, total_in, total_out = ErrorFeedback(), torch.zeros(2048), torch.zeros(2048)
    for step in range(5):
        values = _vector(2048, step)
        total_in += values
        # Another cut every round, as a partition by bandwidth gives.
        cut = 512 * (1 + step % 3)
        for lo, hi in ((0, cut), (cut, 2048)):
            total_out[lo:hi] += SIGN.decode(ef.encode_range(KEY, 2048, lo, values[lo:hi], SIGN))
    torch.testing.assert_close(total_out + ef.residual(KEY), total_in, rtol=0, atol=1e-4)


def test_restart_drops_the_slices_old_residual_first() -> None:
    ef, values = ErrorFeedback(), _vector(512, 1)
    ef.encode_range(KEY, 512, 0, values, SIGN)
    assert bool(ef.residual(KEY).abs().sum() > 0)
    fresh = ErrorFeedback()
    assert ef.encode_range(KEY, 512, 0, values, SIGN, restart=True) == fresh.encode_range(KEY, 512, 0, values, SIGN)
    assert torch.equal(ef.residual(KEY), fresh.residual(KEY))


def test_take_add_and_clear_use_the_residual_of_their_slice_only() -> None:
    ef, values = ErrorFeedback(), _vector(1024, 2)
    ef.encode_range(KEY, 1024, 0, values, SIGN)
    before = ef.residual(KEY)
    taken = ef.take_range(KEY, 1024, 256, values[256:512])
    assert torch.equal(taken, values[256:512] + before[256:512])
    out = torch.ones(256)
    ef.add_range(KEY, 1024, 0, out)
    assert torch.equal(out, 1 + before[0:256])
    ef.clear_range(KEY, 1024, 768, 1024)
    after = ef.residual(KEY)
    assert torch.equal(after[0:256], before[0:256])  # add_range reads only
    assert not after[256:512].any()
    assert not after[768:].any()
    assert torch.equal(after[512:768], before[512:768])


def test_bfloat16_storage_keeps_ranges_in_bfloat16() -> None:
    ef, values = ErrorFeedback(ErrorFeedbackConfig(dtype=torch.bfloat16)), _vector(512, 3)
    reference = torch.zeros(512)
    expected = SIGN.encode_with_feedback(values, reference)
    assert ef.encode_range(KEY, 512, 0, values, SIGN) == expected
    assert torch.equal(ef.residual(KEY), reference.to(torch.bfloat16).float())
    assert ef.state_dict()[f"residual/{KEY}"].dtype == torch.bfloat16


def test_a_failing_codec_clears_only_its_slice() -> None:
    ef, values = ErrorFeedback(), _vector(512, 4)
    ef.encode_range(KEY, 512, 0, values, SIGN)
    before = ef.residual(KEY)
    with pytest.raises(RuntimeError, match="codec bug"):
        ef.encode_range(KEY, 512, 256, values[256:], Broken("none"))
    after = ef.residual(KEY)
    assert torch.equal(after[:256], before[:256])
    assert not after[256:].any()


def test_ranges_are_state_like_any_key() -> None:
    ef = ErrorFeedback()
    ef.encode_range(KEY, 300, 0, _vector(300, 5), SIGN)
    restored = ErrorFeedback()
    restored.load_state_dict(ef.state_dict())
    assert torch.equal(restored.residual(KEY), ef.residual(KEY))
    stats = restored.statistics()
    assert (stats.keys, stats.residual_elements) == (1, 300)
    assert stats.residual_norm == pytest.approx(float(ef.residual(KEY).norm()), rel=1e-6)


def test_ranges_refuse_what_does_not_fit() -> None:
    ef = ErrorFeedback()
    ef.encode_range(KEY, 100, 0, torch.ones(10), SIGN)
    with pytest.raises(ValueError, match="not a vector of 200"):
        ef.encode_range(KEY, 200, 0, torch.ones(10), SIGN)
    with pytest.raises(ValueError, match="outside"):
        ef.take_range(KEY, 100, 95, torch.ones(10))
    with pytest.raises(ValueError, match="outside"):
        ef.clear_range(KEY, 100, -1, 5)
    ef.encode("w", torch.ones(2, 5), SIGN)
    with pytest.raises(ValueError, match="not a vector"):
        ef.add_range("w", 10, 0, torch.ones(10))  # a shaped key is no vector
    with pytest.raises(ValueError, match="without momentum"):
        ErrorFeedback(ErrorFeedbackConfig(momentum=0.5)).encode_range(KEY, 10, 0, torch.ones(10), SIGN)
