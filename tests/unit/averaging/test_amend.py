"""Amendments: re-reducing the streamed result chunks that are over the wrong contributors."""

from __future__ import annotations

import torch

from swarmnet.averaging.amend import amend, amended_payloads
from swarmnet.averaging.inbox import Message
from swarmnet.averaging.reducer import RangeReducer
from swarmnet.averaging.robust import AggregationConfig
from swarmnet.averaging.vectors import SchemaFeedback
from swarmnet.compression import ErrorFeedback, get_codec

CODEC = get_codec("none")
CHUNKS = [(0, 4), (4, 8)]


def _message(payloads: list[bytes], tags: list[tuple[int, ...]]) -> Message:
    message = Message(chunks=len(payloads), weight=1.0, contributors=())
    for j, (payload, tag) in enumerate(zip(payloads, tags, strict=True)):
        message.payloads[j], message.tags[j] = memoryview(payload), tag
    return message


def test_amend_re_reduces_only_the_chunks_over_other_contributors() -> None:
    reducer = RangeReducer(CODEC, CHUNKS, AggregationConfig(), max_weight=1.0)
    values = {m: torch.arange(8, dtype=torch.float32) + 10 * m for m in range(3)}
    for member, v in values.items():
        assert reducer.add_chunk(member, 1.0, 0, CODEC.encode(v[0:4])) is None
    streamed = [CODEC.encode(reducer.result(0, {0, 1, 2}))]
    for member in (0, 1):  # member 2 never sent chunk 1 (cut off)
        assert reducer.add_chunk(member, 1.0, 1, CODEC.encode(values[member][4:8])) is None
    streamed.append(CODEC.encode(reducer.result(1, {0, 1})))
    tags = [{0, 1, 2}, {0, 1}]
    feedback = SchemaFeedback.of(ErrorFeedback(), "schema", 8)
    feedback.store.load_state_dict(
        {f"residual/{feedback.reduced}": torch.full((8,), 5.0), f"shape/{feedback.reduced}": torch.tensor([8])}
    )
    patches = amend(CODEC, reducer, CHUNKS, streamed, tags, {0, 1}, feedback)
    assert patches[1] == b""  # chunk 1 was over the contributors already
    torch.testing.assert_close(CODEC.decode(patches[0]), (values[0][0:4] + values[1][0:4]) / 2)
    assert streamed[0] == patches[0]
    assert tags == [{0, 1}, {0, 1}]
    # The amended chunk's residual is that of its new (lossless) encoding; the other one is untouched.
    torch.testing.assert_close(feedback.store.residual(feedback.reduced), torch.tensor([0.0] * 4 + [5.0] * 4))


def test_amended_payloads_lays_the_patches_over_the_streamed_result() -> None:
    a, b, c = CODEC.encode(torch.ones(4)), CODEC.encode(torch.zeros(4)), CODEC.encode(torch.full((4,), 2.0))
    result = _message([a, b], [(0, 1, 2), (0, 1)])
    patched = amended_payloads(result, _message([c, b""], [(0, 1), (0, 1)]), {0, 1})
    assert patched is not None
    assert [bytes(p) for p in patched] == [c, b]


def test_amended_payloads_refuses_what_does_not_fit() -> None:
    a, b = CODEC.encode(torch.ones(4)), CODEC.encode(torch.zeros(4))
    result = _message([a, b], [(0, 1, 2), (0, 1, 2)])
    # An empty patch keeps a chunk that is over other contributors.
    assert amended_payloads(result, _message([a, b""], [(0, 1), (0, 1)]), {0, 1}) is None
    # A patch over yet other contributors.
    assert amended_payloads(result, _message([a, b], [(0, 1), (0, 2)]), {0, 1}) is None
    # Another number of chunks than the result.
    assert amended_payloads(result, _message([a], [(0, 1)]), {0, 1}) is None
