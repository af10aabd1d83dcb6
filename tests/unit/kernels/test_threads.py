"""The hot paths' threading: pieces, the per-thread single-thread scope, results equal to the plain path."""

from __future__ import annotations

import itertools
import threading

import pytest
import torch

from swarmnet.compression.cast import Float16Codec
from swarmnet.compression.int4 import Int4Codec
from swarmnet.compression.int8 import Int8Codec
from swarmnet.kernels.blockwise import blockwise_dequantize_accumulate, blockwise_quantize
from swarmnet.kernels.nesterov import outer_nesterov
from swarmnet.kernels.sign import ef_sign_encode, sign_decode_accumulate
from swarmnet.kernels.threads import parallel_map, per_thread_control, single_threaded, spans
from swarmnet.kernels.topk import topk_threshold

DEADLINE_S = 60.0  # generous: the machine may be busy


@pytest.fixture
def two_threads() -> object:
    """Run the test with two torch threads in this thread, whatever the machine's default."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def test_spans_cover_the_range_aligned() -> None:
    assert spans(0) == []
    assert spans(10, align=4, size=5) == [(0, 4), (4, 8), (8, 10)]
    assert spans(10, align=8, size=3) == [(0, 8), (8, 10)]  # at least one alignment unit per piece
    pieces = spans(3_000_001)
    assert pieces[0][0] == 0
    assert pieces[-1][1] == 3_000_001
    assert all(a[1] == b[0] for a, b in itertools.pairwise(pieces))
    with pytest.raises(ValueError, match="must be positive"):
        spans(5, align=0)


def test_parallel_map_keeps_order_and_raises_the_first_error(two_threads: object) -> None:
    assert parallel_map(lambda x: x * x, list(range(50))) == [x * x for x in range(50)]
    assert parallel_map(lambda x: x, []) == []

    def fail_on_seven(x: int) -> int:
        if x == 7:
            raise KeyError(x)
        return x

    with pytest.raises(KeyError):
        parallel_map(fail_on_seven, list(range(20)))


def test_items_run_single_threaded_and_the_callers_setting_is_restored(two_threads: object) -> None:
    seen = parallel_map(lambda _: torch.get_num_threads(), list(range(8)))
    if per_thread_control():
        assert seen == [1] * 8
    assert torch.get_num_threads() == 2


def test_single_threaded_is_per_thread_and_restored(two_threads: object) -> None:
    if not per_thread_control():
        pytest.skip("this torch build has no per-thread OpenMP setting")
    inside, released = threading.Event(), threading.Event()
    observed: dict[str, int] = {}

    def other() -> None:
        observed["before"] = torch.get_num_threads()
        with single_threaded():
            observed["inside"] = torch.get_num_threads()
            inside.set()
            released.wait(DEADLINE_S)
        observed["after"] = torch.get_num_threads()

    worker = threading.Thread(target=other)
    worker.start()
    try:
        assert inside.wait(DEADLINE_S)
        assert torch.get_num_threads() == 2  # another thread's scope leaves this one alone
        fresh: list[int] = []
        starter = threading.Thread(target=lambda: fresh.append(torch.get_num_threads()))
        starter.start()
        starter.join(DEADLINE_S)
        assert fresh == [2]  # nor the default of a thread started meanwhile (torch.set_num_threads would)
    finally:
        released.set()
        worker.join(DEADLINE_S)
    assert observed == {"before": 2, "inside": 1, "after": 2}


def test_single_threaded_restores_after_an_error(two_threads: object) -> None:
    with pytest.raises(RuntimeError), single_threaded():
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2


def _gradient(n: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=generator) * torch.rand(n, generator=generator).pow(4)


N = 3 * (1 << 20) + 12_345  # several pieces and a ragged tail


def _kernel_results(inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Every CPU kernel and the codecs on copies of ``inputs``; the outputs and every buffer they update."""

    def _gradient(n: int, seed: int) -> torch.Tensor:
        return inputs[seed].clone()

    g = _gradient(N, 0)
    residual = _gradient(N, 1)
    bits, scales = ef_sign_encode(g, residual, 4096)
    acc = _gradient(N, 2)
    sign_decode_accumulate(acc, bits, scales, 4096, 0.5)
    out = [bits, scales, residual, acc]
    for nbits in (8, 4):
        block_residual = _gradient(N, 3)
        values, block_scales = blockwise_quantize(g, 1000, nbits, block_residual)
        block_acc = _gradient(N, 4)
        blockwise_dequantize_accumulate(block_acc, values, block_scales, 1000, nbits, 0.25)
        out += [values, block_scales, block_residual, block_acc]
    topk_residual = _gradient(N, 5)
    out += [*topk_threshold(g, N // 100, topk_residual), topk_residual]
    params, local, momentum = _gradient(N, 6), _gradient(N, 7), _gradient(N, 8)
    outer_nesterov(params, local, momentum, 0.7, 0.9)
    out += [params, local, momentum]
    big = g * 1e5  # saturates in fp16 in some pieces only
    payload = Float16Codec("fp16").encode(big)
    fp16_acc = _gradient(N, 9)
    Float16Codec("fp16").decode_accumulate(payload, fp16_acc, alpha=0.5)
    out += [torch.frombuffer(bytearray(payload), dtype=torch.uint8), fp16_acc]
    for codec in (Int8Codec("int8"), Int4Codec("int4")):
        out.append(torch.frombuffer(bytearray(codec.encode(g)), dtype=torch.uint8))
    return out


def test_results_are_bit_identical_to_the_single_thread_path(two_threads: object) -> None:
    # Made once: torch's own random fill is not the same for every thread count.
    inputs = [_gradient(N, seed) for seed in range(10)]
    parallel = _kernel_results(inputs)
    torch.set_num_threads(1)  # parallel_map runs every piece in order on this thread
    serial = _kernel_results(inputs)
    assert len(parallel) == len(serial)
    for a, b in zip(parallel, serial, strict=True):
        assert a.dtype == b.dtype
        assert torch.equal(a.view(torch.uint8), b.view(torch.uint8))


def test_concurrent_callers_get_their_own_results(two_threads: object) -> None:
    """Several threads (an averager's workers beside a trainer) share the pool without mixing pieces."""
    inputs = [_gradient(N, seed) for seed in range(3)]
    expected = [ef_sign_encode(inputs[s], torch.zeros(N), 4096)[0] for s in range(3)]
    results: dict[int, torch.Tensor] = {}

    def encode(seed: int) -> None:
        results[seed] = ef_sign_encode(inputs[seed], torch.zeros(N), 4096)[0]

    workers = [threading.Thread(target=encode, args=(s,)) for s in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(DEADLINE_S)
    assert all(torch.equal(results[s], expected[s]) for s in range(3))
    assert torch.get_num_threads() == 2
