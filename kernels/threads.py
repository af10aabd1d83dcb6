"""Threading of the CPU hot paths (codecs, kernels, averaging): pieces over a small pool, each single-threaded.

Why. torch runs a large op as an OpenMP parallel region whose threads meet at a barrier. On a shared machine
(training beside the codecs, other programs) one of those threads is often not scheduled, and the others
spin, then sleep, at the barrier until it is: beside busy processes, two threads can run a codec many times
slower than one (docs/performance.md, "A busy CPU", has the figures). Kernels that walk a tensor region by region
meet that barrier once per torch op of every region.

What. ``parallel_map(work, items)`` hands the items (regions of about 4 MB) out one at a time to the
calling thread and up to ``torch.get_num_threads() - 1`` helper threads, each running its torch ops on
one thread (``single_threaded``). A thread the OS does not schedule delays only the item it holds; the
others take the rest, so there is no barrier to stall, while an idle machine still uses every core
(torch releases the GIL inside its ops, numpy inside its loops). The caller takes items too and waits
only for items a helper has started, so results never depend on a helper being scheduled at all.

``single_threaded()`` limits torch ops to the calling thread for a block of code, for ops that are not
cut into pieces (the averager's sums). In this torch build (OpenMP backend) the team size of a parallel
region is a per-thread setting: ``torch.set_num_threads`` in one thread leaves threads that have already
run torch ops alone, but it also sets the default of threads that start later, so a trainer thread
started meanwhile would keep one thread for good. This module therefore sets only the calling thread's
OpenMP setting (``omp_set_num_threads`` of the runtime torch is linked with) and restores it; where that
cannot be done (another parallel backend), ``single_threaded`` changes nothing and ``parallel_map`` runs
the items in order on the calling thread, as the code did before.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

import torch

__all__ = ["PIECE_ELEMENTS", "parallel_map", "per_thread_control", "single_threaded", "spans"]

X = TypeVar("X")
T = TypeVar("T")

# Elements per piece of ``spans``: 4 MB of fp32, the size of the kernels' regions (each stays in cache
# through its dozen ops); a descheduled thread holds back at most one such piece.
PIECE_ELEMENTS = 1 << 20


def spans(n: int, align: int = 1, size: int = PIECE_ELEMENTS) -> list[tuple[int, int]]:
    """``(start, stop)`` pieces covering ``range(n)``: each start a multiple of ``align``, each piece about
    ``size`` elements (a multiple of ``align``, at least one ``align``), the last one ending at ``n``."""
    if align < 1 or size < 1:
        raise ValueError(f"align and size must be positive, got {align} and {size}")
    step = max(1, size // align) * align
    return [(start, min(start + step, n)) for start in range(0, n, step)]


@functools.cache
def _omp_setter() -> Callable[[int], object] | None:
    """``omp_set_num_threads`` of the OpenMP runtime torch uses, if it demonstrably sets this thread's torch
    thread count; ``None`` otherwise (a native or TBB backend, or no such symbol in the process)."""
    if "OpenMP" not in torch.__config__.parallel_info().split("ATen parallel backend:")[-1]:
        return None
    try:
        setter: Callable[[int], object] = ctypes.CDLL(None).omp_set_num_threads
    except (AttributeError, OSError):
        return None
    previous = torch.get_num_threads()  # also runs torch's once-per-thread setup, which would undo a set
    probe = 2 if previous == 1 else 1
    setter(probe)
    works = torch.get_num_threads() == probe
    setter(previous)
    return setter if works else None


def per_thread_control() -> bool:
    """Whether torch's thread count can be set for one thread alone here (see the module docstring)."""
    return _omp_setter() is not None


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run the calling thread's torch ops on that thread alone inside the block; other threads keep theirs,
    and the thread's own setting comes back on exit. Without per-thread control it changes nothing."""
    setter = _omp_setter()
    previous = torch.get_num_threads()
    if setter is None or previous == 1:
        yield
        return
    setter(1)
    try:
        yield
    finally:
        setter(previous)


class _Job(Generic[X, T]):
    """The items of one ``parallel_map`` call, taken one at a time by whichever thread asks next."""

    def __init__(self, work: Callable[[X], T], items: Sequence[X]) -> None:
        self._work, self._items = work, items
        self._next = itertools.count()  # next() on a count is atomic under the GIL
        self._results: list[T | None] = [None] * len(items)
        self._error: BaseException | None = None
        self._finished = 0
        self._done = threading.Condition()

    def drain(self) -> None:
        """Run items until none is left (after an error, the rest are only counted)."""
        while (i := next(self._next)) < len(self._items):
            if self._error is None:
                try:
                    self._results[i] = self._work(self._items[i])
                except BaseException as error:  # re-raised in the caller, whichever thread hit it
                    self._error = self._error or error
            with self._done:
                self._finished += 1
                if self._finished == len(self._items):
                    self._done.notify_all()

    def results(self) -> list[T]:
        """Every item's result in order, once the items other threads took are done; or their error."""
        with self._done:
            self._done.wait_for(lambda: self._finished == len(self._items))
        if self._error is not None:
            raise self._error
        return self._results  # type: ignore[return-value]  # every slot is filled when no error was raised


def _helper_init() -> None:
    """Helpers run every torch op on their own thread, for good (their setting is theirs alone)."""
    setter = _omp_setter()
    if setter is not None:
        torch.get_num_threads()  # torch's per-thread setup first: it would reset the count on first use
        setter(1)


_pool_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None


def _helpers() -> ThreadPoolExecutor:
    """The process's helper threads (a fresh pool in a forked child, whose parent's threads do not exist)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            workers = max(1, (os.cpu_count() or 1) - 1)
            _pool = (os.getpid(), ThreadPoolExecutor(workers, "swarmnet-piece", initializer=_helper_init))
        return _pool[1]


def parallel_map(work: Callable[[X], T], items: Sequence[X]) -> list[T]:
    """``[work(item) for item in items]``, the items run concurrently on up to ``torch.get_num_threads()``
    threads (the caller's setting: 1 runs them in order here), each thread's torch ops single-threaded.

    ``work`` must be safe to run on several items at once (its items write disjoint memory, and each call
    uses its own scratch). The first exception any item raises is raised here, after the items already
    started are done; the items not started by then are skipped.
    """
    width = min(len(items), torch.get_num_threads())
    if width <= 1 or not per_thread_control():
        with single_threaded():
            return [work(item) for item in items]
    job = _Job(work, items)
    pool = _helpers()
    for _ in range(width - 1):
        pool.submit(job.drain)
    with single_threaded():
        job.drain()
    return job.results()
