"""RangeReducer: streamed sums for the mean, refusals that leave no trace, subsets, robust rules."""

from __future__ import annotations

import pytest
import torch

from swarmnet.averaging.reducer import RangeReducer
from swarmnet.averaging.robust import AggregationConfig
from swarmnet.compression import get_codec

CHUNKS = [(0, 3000), (3000, 5000)]


def _payloads(codec_name: str, values: torch.Tensor) -> list[bytes]:
    codec = get_codec(codec_name)
    return [codec.encode(values[a:b]) for a, b in CHUNKS]


@pytest.mark.parametrize("rule", ["mean", "median"])
def test_result_is_the_weighted_aggregate_of_accepted_contributions(rule: str) -> None:
    rows = [torch.randn(5000, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    reducer = RangeReducer(get_codec("none"), CHUNKS, AggregationConfig(rule=rule), max_weight=2.0)  # type: ignore[arg-type]
    reducer.add_values(0, 1.0, [rows[0][a:b].clone() for a, b in CHUNKS])
    assert reducer.add_payloads(1, 2.0 if rule == "mean" else 1.0, _payloads("none", rows[1])) is None
    assert reducer.add_payloads(2, 1.0, _payloads("none", rows[2])) is None
    result = torch.cat([reducer.result(j, {0, 1, 2}) for j in range(len(CHUNKS))])
    if rule == "mean":
        torch.testing.assert_close(result, (rows[0] + 2 * rows[1] + rows[2]) / 4)
    else:
        assert torch.equal(result, torch.stack(rows).sort(dim=0).values[1])  # equal weights: the middle value


def test_a_nan_in_a_later_chunk_is_refused_and_leaves_no_trace_in_the_sums() -> None:
    good, bad = torch.ones(5000), torch.full((5000,), 3.0)
    bad[4000] = float("nan")
    reducer = RangeReducer(get_codec("none"), CHUNKS, AggregationConfig(), max_weight=1.0)
    assert reducer.add_payloads(0, 1.0, _payloads("none", good)) is None
    reason = reducer.add_payloads(1, 1.0, _payloads("none", bad))
    assert reason is not None
    assert "non-finite" in reason
    assert reducer.accepted == {0}
    assert torch.equal(reducer.result(0, {0}), torch.ones(3000))  # chunk 0 of the bad sender was undone


def test_wrong_chunk_count_size_or_codec_is_refused() -> None:
    reducer = RangeReducer(get_codec("int8"), CHUNKS, AggregationConfig(), max_weight=1.0)
    x = torch.randn(5000)
    assert reducer.add_payloads(0, 1.0, _payloads("int8", x)[:1]) is not None
    assert reducer.add_payloads(1, 1.0, [get_codec("int8").encode(x[:10]), _payloads("int8", x)[1]]) is not None
    assert reducer.add_payloads(2, 1.0, _payloads("fp16", x)) is not None
    assert reducer.accepted == set()


def test_result_over_a_subset_rebuilds_the_sums_exactly() -> None:
    rows = [torch.full((5000,), float(i)) for i in range(4)]
    reducer = RangeReducer(get_codec("fp16"), CHUNKS, AggregationConfig(), max_weight=1.0)
    for i, row in enumerate(rows):
        assert reducer.add_payloads(i, 1.0, _payloads("fp16", row)) is None
    assert torch.equal(reducer.result(1, {0, 2}), torch.full((2000,), 1.0))
    assert torch.equal(reducer.result(0, {0, 1, 2, 3}), torch.full((3000,), 1.5))


def test_a_result_taken_twice_is_the_same_and_a_late_chunk_rebuilds_the_sum_first() -> None:
    rows = [torch.full((5000,), float(i + 1)) for i in range(3)]
    reducer = RangeReducer(get_codec("none"), CHUNKS, AggregationConfig(), max_weight=1.0)
    reducer.add_values(0, 1.0, [rows[0][a:b].clone() for a, b in CHUNKS])
    assert reducer.add_payloads(1, 1.0, _payloads("none", rows[1])) is None
    first = reducer.result(0, {0, 1}).clone()
    assert torch.equal(first, torch.full((3000,), 1.5))
    assert torch.equal(reducer.result(0, {0, 1}), first)  # divided in place once, not twice
    # A contribution after the result was taken: the chunk is a sum again, then gains it.
    assert reducer.add_chunk(2, 1.0, 0, _payloads("none", rows[2])[0]) is None
    assert torch.equal(reducer.result(0, {0, 1, 2}), torch.full((3000,), 2.0))
    assert torch.equal(reducer.result(0, {0, 1}), first)  # a subset rebuilds from what was sent


@pytest.mark.parametrize("weight", [1.0 + 1e-9, 1e6])
def test_a_weight_above_max_weight_is_refused_with_its_reason(weight: float) -> None:
    reducer = RangeReducer(get_codec("none"), CHUNKS, AggregationConfig(), max_weight=1.0)
    assert reducer.add_payloads(0, 1.0, _payloads("none", torch.ones(5000))) is None
    reason = reducer.add_payloads(1, weight, _payloads("none", torch.full((5000,), 7.0)))
    assert reason is not None
    assert "max_weight" in reason
    assert reducer.refused == {1}
    assert torch.equal(reducer.result(0, {0}), torch.ones(3000))
