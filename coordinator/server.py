"""Run a coordinator: the gRPC server and the round engine on one asyncio loop.

``CoordinatorServer`` is the asyncio object (``swarmnet coordinator`` awaits it);
``BackgroundCoordinator`` runs one on its own loop in a helper thread, for tests, experiments and
notebooks that drive synchronous clients from the main thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import grpc
import torch

from swarmnet.coordinator.config import CoordinatorConfig
from swarmnet.coordinator.finite import require_finite
from swarmnet.coordinator.registry import ClientRegistry
from swarmnet.coordinator.rounds import RoundEngine
from swarmnet.coordinator.rpc import coordinator_handler
from swarmnet.coordinator.service import CoordinatorServicer
from swarmnet.coordinator.store import CoordinatorState, CoordinatorStore
from swarmnet.errors import ConfigError
from swarmnet.federated.connection import GRPC_OPTIONS
from swarmnet.federated.loopback import is_loopback_host
from swarmnet.federated.vector import AdapterSchema

__all__ = ["BackgroundCoordinator", "CoordinatorServer", "initial_state"]

logger = logging.getLogger(__name__)


def initial_state(store: CoordinatorStore, initial: Mapping[str, torch.Tensor] | None) -> CoordinatorState:
    """The stored state, or a fresh one from ``initial`` (the adapter every client starts from)."""
    stored = store.load()
    if stored is not None:
        if initial is not None and AdapterSchema.of(initial) != stored.schema:
            raise ConfigError(f"{store.directory} holds another adapter layout than the initial adapter given")
        require_finite(stored.adapter, stored.server_state, f"the stored state in {store.directory}")
        logger.info("resuming at round %d (adapter version %d)", stored.next_round, stored.version)
        return stored
    if initial is None:
        raise ConfigError(f"{store.directory} holds no state: give the initial adapter")
    schema = AdapterSchema.of(initial)
    state = CoordinatorState(next_round=1, version=0, adapter=schema.flatten(initial), schema=schema)
    require_finite(state.adapter, state.server_state, "the initial adapter")
    store.save(state)
    return state


class CoordinatorServer:
    """A coordinator serving on ``config.host:config.port`` (``port`` is the bound one after ``start``)."""

    def __init__(self, config: CoordinatorConfig, initial: Mapping[str, torch.Tensor] | None = None) -> None:
        config.validate()
        self.config = config
        self.store = CoordinatorStore(config.state_dir)
        self.registry = ClientRegistry(config, self.store)
        self._state = initial_state(self.store, initial)
        self.engine: RoundEngine | None = None
        self.port = 0
        self.servicer: CoordinatorServicer | None = None
        self._server: grpc.aio.Server | None = None
        self._rounds: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Bind, start serving and start the rounds; return the port."""
        self.engine = RoundEngine(self.config, self.store, self.registry, self._state)
        server = grpc.aio.server(options=GRPC_OPTIONS)
        self.servicer = CoordinatorServicer(self.engine, self.registry)
        server.add_generic_rpc_handlers((coordinator_handler(self.servicer),))
        address = f"{self.config.host}:{self.config.port}"
        tls = self.config.tls
        if tls is None:
            if not is_loopback_host(self.config.host):  # only reachable with allow_insecure (validate)
                logger.warning(
                    "serving plaintext on %s (allow_insecure): session and operator tokens cross the network "
                    "readable by anyone on the path; use --tls-cert/--tls-key",
                    self.config.host,
                )
            self.port = server.add_insecure_port(address)
        else:
            credentials = grpc.ssl_server_credentials([(tls.key_path.read_bytes(), tls.cert_path.read_bytes())])
            self.port = server.add_secure_port(address, credentials)
        await server.start()
        self._server = server
        self._rounds = asyncio.create_task(self.engine.run(), name="coordinator-rounds")
        logger.info("coordinator for run %r listening on %s:%d", self.config.run, self.config.host, self.port)
        return self.port

    def streaming(self) -> frozenset[str]:
        """Clients whose update is streaming in now (empty before ``start``)."""
        return frozenset() if self.servicer is None else self.servicer.streaming()

    async def wait(self) -> None:
        """Until the round limit is reached (then serve DONE a little longer) or ``stop``."""
        if self._rounds is not None:
            await self._rounds

    async def stop(self, grace: float = 1.0) -> None:
        """Stop the rounds and the server; the state on disk is that of the last finished round."""
        if self.engine is not None:
            await self.engine.stop()
        if self._rounds is not None:
            await asyncio.gather(self._rounds, return_exceptions=True)
        if self._server is not None:
            await self._server.stop(grace)


class BackgroundCoordinator:
    """A ``CoordinatorServer`` on its own event loop in a helper thread; use as a context manager."""

    def __init__(self, config: CoordinatorConfig, initial: Mapping[str, torch.Tensor] | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="coordinator-loop", daemon=True)
        self.server = CoordinatorServer(config, initial)

    @property
    def address(self) -> str:
        """``host:port`` to give the clients."""
        return f"{self.server.config.host}:{self.server.port}"

    def start(self) -> BackgroundCoordinator:
        """Start the loop thread and the server."""
        self._thread.start()
        self.call(self.server.start())
        return self

    def call(self, coroutine: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine on the coordinator's loop and return its result."""
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout)

    def stop(self) -> None:
        """Stop the server and the loop; safe to call twice."""
        if not self._thread.is_alive():
            return
        try:
            self.call(self.server.stop(0.5))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    def __enter__(self) -> BackgroundCoordinator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
