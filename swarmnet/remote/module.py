"""``RemoteModule``: a remote module as a local ``nn.Module``, through a ``torch.autograd.Function``.

Torch calls forward and backward synchronously, while the transport lives in an event loop. So a
``RemoteModule`` runs its calls on the caller's loop from another thread (``BackgroundLoop`` starts
such a loop in a thread of its own) and waits for them. Calling one from inside that loop's own
thread would deadlock, and raises ``RuntimeError`` instead; async code uses ``RemoteCaller`` directly.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Self, TypeVar

import torch
from torch import nn

from swarmnet.remote.client import RemoteCaller
from swarmnet.remote.config import check_uid

__all__ = ["BackgroundLoop", "RemoteModule"]

T = TypeVar("T")


class BackgroundLoop:
    """An event loop running in a daemon thread, for transports used from synchronous torch code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="swarmnet-remote-loop", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` on the loop and wait for its result."""
        return _wait(asyncio.run_coroutine_threadsafe(coroutine, self.loop), timeout)

    def close(self) -> None:
        """Stop the loop and join its thread. Idempotent."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
        if not self.loop.is_closed():
            self.loop.close()


def _wait(future: Future[T], timeout: float | None) -> T:
    return future.result(timeout)


class RemoteModule(nn.Module):
    """Calls module ``uid`` on the swarm: ``forward(*inputs)`` returns its output and ``backward`` flows
    through it (gradients of the inputs; the server's parameters get theirs in its gradient hook)."""

    def __init__(
        self, uid: str, caller: RemoteCaller, loop: asyncio.AbstractEventLoop, *, codec: str | None = None
    ) -> None:
        super().__init__()
        self.uid, self.caller, self.loop, self.codec = check_uid(uid), caller, loop, codec

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The remote module's output for ``inputs`` (each with the batch as first dimension)."""
        output: torch.Tensor = _RemoteCall.apply(self, *inputs)  # type: ignore[no-untyped-call]
        return output

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run one of the caller's coroutines on its loop from this (non-loop) thread."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            coroutine.close()
            raise RuntimeError("RemoteModule was called from its own event loop's thread; use RemoteCaller there")
        timeout = (
            self.caller.config.timeout * self.caller.config.max_attempts + self.caller.config.lookup_interval + 60
        )
        return _wait(asyncio.run_coroutine_threadsafe(coroutine, self.loop), timeout)


class _RemoteCall(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, remote: RemoteModule, *inputs: torch.Tensor) -> torch.Tensor:
        detached = [x.detach() for x in inputs]
        ctx.remote = remote
        ctx.save_for_backward(*detached)
        return remote.call(remote.caller.forward(remote.uid, detached, codec=remote.codec))

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        remote: RemoteModule = ctx.remote
        inputs = list(ctx.saved_tensors)
        grads = remote.call(remote.caller.backward(remote.uid, inputs, grad_output.contiguous(), codec=remote.codec))
        return (None, *grads)
