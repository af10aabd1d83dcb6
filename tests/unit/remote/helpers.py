"""Shared pieces of the remote-module tests: a swarm of module servers on the in-memory transport."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import torch
from torch import nn

from swarmnet.identity import Identity
from swarmnet.remote import ClientConfig, HostedModule, ModuleServer, RemoteCaller, RoutingConfig, ServerConfig
from swarmnet.transport.memory import MemoryNetwork

UID = "RUN.stage.0"


def mlp(seed: int = 0) -> nn.Module:
    """A small block with parameters and a nonlinearity, the same for a given seed."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8))


class NaNModule(nn.Module):
    """A broken replica: its output is all NaN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, float("nan"))


@dataclass
class Swarm:
    network: MemoryNetwork
    servers: list[ModuleServer]
    server_ids: list[str]
    caller: RemoteCaller


@asynccontextmanager
async def swarm(
    modules: Sequence[nn.Module],
    *,
    server: ServerConfig = ServerConfig(),  # noqa: B008 -- frozen
    client: ClientConfig = ClientConfig(routing=RoutingConfig(seed=0)),  # noqa: B008 -- frozen
    hooks: Sequence[object] = (),
) -> AsyncIterator[Swarm]:
    """One server per module (all hosting ``UID``) and one caller, on a fresh in-memory network."""
    network = MemoryNetwork()
    servers, ids = [], []
    for i, module in enumerate(modules):
        identity = Identity.generate()
        hook = hooks[i] if i < len(hooks) else None
        hosted = HostedModule(UID, module, gradient_hook=hook)  # type: ignore[arg-type]
        servers.append(ModuleServer(network.add_peer(identity.peer_id), identity, [hosted], server))
        ids.append(identity.peer_id)
    for s in servers:
        await s.start()
    try:
        yield Swarm(network, servers, ids, RemoteCaller(network.add_peer(), client))
    finally:
        for s in servers:
            await s.stop(announce=False)
