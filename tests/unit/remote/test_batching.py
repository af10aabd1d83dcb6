"""Concurrent callers of one module are merged into one forward; max_batch 1 turns that off."""

from __future__ import annotations

import asyncio

import torch

from swarmnet.remote import ServerConfig
from swarmnet.testing import run_virtual
from tests.unit.remote.helpers import UID, mlp, swarm


def _batches(config: ServerConfig, shapes: list[tuple[int, ...]]) -> tuple[int, int]:
    async def main() -> tuple[int, int]:
        async with swarm([mlp()], server=config) as s:
            inputs = [torch.randn(*shape) for shape in shapes]
            outputs = await asyncio.gather(*(s.caller.forward(UID, [x]) for x in inputs))
            reference = mlp()
            for x, out in zip(inputs, outputs, strict=True):
                assert torch.allclose(out, reference(x), atol=1e-5)  # each caller gets its own rows back
            stats = s.servers[0].statistics().modules[UID]
            return stats.batches, stats.samples

    return run_virtual(main())


def test_concurrent_callers_share_one_forward() -> None:
    assert _batches(ServerConfig(max_batch=64, max_wait=0.05), [(2, 8)] * 8) == (1, 16)


def test_max_batch_one_computes_each_request_alone() -> None:
    assert _batches(ServerConfig(max_batch=1), [(2, 8)] * 8) == (8, 16)


def test_a_batch_holds_at_most_max_batch_samples() -> None:
    batches, samples = _batches(ServerConfig(max_batch=4, max_wait=0.05), [(2, 8)] * 8)
    assert (batches, samples) == (4, 16)


def test_requests_of_different_shapes_are_not_merged() -> None:
    batches, _ = _batches(ServerConfig(max_batch=64, max_wait=0.05), [(2, 8), (2, 8), (3, 2, 8), (1, 2, 8)])
    assert batches == 2


def test_one_failing_request_does_not_fail_the_batch_it_joined() -> None:
    async def main() -> None:
        async with swarm([mlp()], server=ServerConfig(max_batch=64, max_wait=0.05)) as s:
            good = [s.caller.forward(UID, [torch.randn(2, 8)]) for _ in range(3)]
            bad = s.caller.backward(UID, [torch.randn(2, 8)], torch.randn(2, 3))  # wrong gradient width
            results = await asyncio.gather(*good, bad, return_exceptions=True)
            assert all(isinstance(r, torch.Tensor) for r in results[:3])
            assert isinstance(results[3], Exception)

    run_virtual(main())


def test_small_batches_may_run_on_the_event_loop() -> None:
    for inline in (0.0, 10.0):  # never (a worker thread) or always (short work)
        assert _batches(ServerConfig(max_batch=64, max_wait=0.05, inline_max_seconds=inline), [(2, 8)] * 4) == (1, 8)


def test_announced_throughput_is_measured_from_served_work() -> None:
    async def main() -> None:
        async with swarm([mlp()], server=ServerConfig(initial_throughput=1.0)) as s:
            for _ in range(3):
                await s.caller.forward(UID, [torch.randn(32, 8)])
            await s.servers[0].announce()
            (replica,) = await s.caller.replicas(UID, refresh=True)
            stats = s.servers[0].statistics().modules[UID]
            assert replica.throughput == stats.throughput
            assert stats.throughput != 1.0
            assert stats.samples == 96
            assert stats.busy_seconds > 0

    run_virtual(main())
