"""Merging concurrent requests for one module into one forward or backward.

Requests wait in a queue; the first waits at most ``max_wait`` for others to join it (unless it is
alone and the last batch was too: a lone caller is served at once), then every
waiting request of the same kind (op and per-sample shapes) is taken, up to ``max_batch`` samples,
concatenated along the first dimension, computed once (in a worker thread) and split back. If a
merged batch fails, its requests are retried one by one, so one bad request cannot fail the others.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field

import torch

from swarmnet.clock import off_loop
from swarmnet.errors import ProtocolError
from swarmnet.remote.config import ServerConfig
from swarmnet.remote.hosted import HostedModule

__all__ = ["BatcherStatistics", "ModuleBatcher"]

logger = logging.getLogger(__name__)


@dataclass
class _Pending:
    op: str
    tensors: list[torch.Tensor]
    future: asyncio.Future[list[torch.Tensor]]
    arrived: float
    samples: int = field(init=False)

    def __post_init__(self) -> None:
        self.samples = self.tensors[0].shape[0]

    def kind(self) -> tuple[object, ...]:
        return (self.op, *((t.shape[1:], t.dtype) for t in self.tensors))


@dataclass(frozen=True)
class BatcherStatistics:
    """Work one hosted module did."""

    batches: int  # forward or backward computations run
    requests: int  # requests answered (successfully or not)
    samples: int  # samples computed
    busy_seconds: float  # time spent computing
    throughput: float  # EWMA of samples per busy second
    queue: int  # samples waiting now


class ModuleBatcher:
    """The request queue and compute loop of one hosted module."""

    def __init__(self, hosted: HostedModule, config: ServerConfig) -> None:
        self.hosted, self.config = hosted, config
        self._waiting: deque[_Pending] = deque()
        self._arrival = asyncio.Event()
        self._batches = self._requests = self._samples = 0
        self._busy = 0.0
        self._throughput = config.initial_throughput
        self._measured = False
        self._last_batch_requests = 1
        self._seconds_per_sample: dict[str, float] = {}  # per op: EWMA of compute seconds per sample

    @property
    def queued_samples(self) -> int:
        """Samples waiting for compute."""
        return sum(p.samples for p in self._waiting)

    async def submit(self, op: str, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Queue a request and return its result: ``[output]`` for forward, input gradients for backward."""
        if len(self._waiting) >= self.config.max_queue:
            raise ProtocolError(f"overloaded: {len(self._waiting)} requests queued for {self.hosted.uid}")
        loop = asyncio.get_running_loop()
        pending = _Pending(op, tensors, loop.create_future(), loop.time())
        self._waiting.append(pending)
        self._arrival.set()
        return await pending.future

    def fail_waiting(self, reason: str) -> None:
        """Refuse every queued request with ``ProtocolError(reason)`` (the server is stopping)."""
        while self._waiting:
            _settle(self._waiting.popleft().future, error=ProtocolError(reason))

    async def run(self) -> None:
        """Serve the queue until cancelled."""
        while True:
            while not self._waiting:
                self._arrival.clear()
                await self._arrival.wait()
            await self._gather()
            batch = self._take()
            await self._compute(batch)

    async def _gather(self) -> None:
        """Wait for more requests until the batch is full or the first request waited ``max_wait``."""
        if len(self._waiting) == 1 and self._last_batch_requests == 1:
            return  # a lone caller (no company lately) gains nothing from waiting; others queue while it computes
        loop = asyncio.get_running_loop()
        deadline = self._waiting[0].arrived + self.config.max_wait
        while self.config.max_batch > 1 and self.queued_samples < self.config.max_batch:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._arrival.clear()
            try:
                await asyncio.wait_for(self._arrival.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> list[_Pending]:
        first = self._waiting.popleft()
        batch, samples, kept = [first], first.samples, deque[_Pending]()
        while self._waiting:
            pending = self._waiting.popleft()
            if pending.kind() == first.kind() and samples + pending.samples <= self.config.max_batch:
                batch.append(pending)
                samples += pending.samples
            else:
                kept.append(pending)
        self._waiting = kept
        return batch

    async def _compute(self, batch: list[_Pending]) -> None:
        self._last_batch_requests = len(batch)
        live = [p for p in batch if not p.future.done()]  # a caller that gave up is not computed for
        if not live:
            return
        try:
            if self._expected_seconds(live) <= self.config.inline_max_seconds:
                results = self._run_batch(live)  # a thread hop would cost more than this short work
            else:
                results = await off_loop(self._run_batch, live)
        except Exception as error:
            if len(live) > 1:
                for pending in live:
                    await self._compute([pending])
                return
            logger.debug("module %s failed a %s request: %r", self.hosted.uid, live[0].op, error)
            _settle(live[0].future, error=error)
            self._requests += 1
            return
        for pending, result in zip(live, results, strict=True):
            _settle(pending.future, result=result)
        self._requests += len(live)

    def _expected_seconds(self, batch: list[_Pending]) -> float:
        """How long ``batch`` should take, from this op's measured seconds per sample (inf until measured)."""
        per_sample = self._seconds_per_sample.get(batch[0].op)
        return math.inf if per_sample is None else per_sample * sum(p.samples for p in batch)

    def _run_batch(self, batch: list[_Pending]) -> list[list[torch.Tensor]]:
        started = time.perf_counter()
        slots = [torch.cat([p.tensors[i] for p in batch]) if len(batch) > 1 else batch[0].tensors[i]
                 for i in range(len(batch[0].tensors))]  # fmt: skip
        if batch[0].op == "forward":
            outputs = [self.hosted.forward(slots)]
        else:
            outputs = self.hosted.backward(slots[:-1], slots[-1])
        sizes = [p.samples for p in batch]
        for output in outputs:
            if output.shape[:1] != slots[0].shape[:1]:
                raise ProtocolError(f"module {self.hosted.uid} changed the batch size ({output.shape[:1]})")
        split = [torch.split(o, sizes) for o in outputs]
        self._account(batch[0].op, sum(sizes), time.perf_counter() - started)
        return [[parts[j].contiguous() for parts in split] for j in range(len(batch))]

    def _account(self, op: str, samples: int, seconds: float) -> None:
        seconds = max(seconds, 1e-6)
        known = self._seconds_per_sample.get(op)
        per_sample = seconds / samples if samples else seconds
        self._seconds_per_sample[op] = per_sample if known is None else 0.8 * known + 0.2 * per_sample
        rate = samples / seconds
        weight = 1.0 - 0.5 ** (seconds / self.config.throughput_half_life)
        self._throughput = rate if not self._measured else self._throughput + weight * (rate - self._throughput)
        self._measured = True
        self._batches += 1
        self._samples += samples
        self._busy += seconds

    def statistics(self) -> BatcherStatistics:
        """A snapshot of this module's work."""
        return BatcherStatistics(
            batches=self._batches,
            requests=self._requests,
            samples=self._samples,
            busy_seconds=self._busy,
            throughput=self._throughput if math.isfinite(self._throughput) else 0.0,
            queue=self.queued_samples,
        )


def _settle(
    future: asyncio.Future[list[torch.Tensor]], *, result: list[torch.Tensor] | None = None,
    error: BaseException | None = None,
) -> None:  # fmt: skip
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert result is not None
        future.set_result(result)
