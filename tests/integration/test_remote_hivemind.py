"""Remote modules over the real transport: a server and a caller, each with its own DHT and p2p daemon."""

from __future__ import annotations

import asyncio

import pytest
import torch

from swarmnet.errors import ProtocolError
from swarmnet.identity import Identity
from swarmnet.remote import ClientConfig, HostedModule, ModuleServer, RemoteCaller
from swarmnet.testing import apoll_until
from swarmnet.transport.hivemind_transport import HivemindTransport
from tests.support import with_dht_pair

pytestmark = pytest.mark.multiprocess

UID = "real.stage.0"


def _block() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 16))


async def _check(alice: HivemindTransport, alice_id: Identity, bob: HivemindTransport, bob_id: Identity) -> None:
    grads: list[dict[str, torch.Tensor]] = []
    server = ModuleServer(alice, alice_id, [HostedModule(UID, _block(), gradient_hook=grads.append)])
    await server.start()
    try:
        caller = RemoteCaller(bob, ClientConfig(timeout=20.0, lookup_interval=0.0))
        await apoll_until(lambda: caller.replicas(UID), timeout=30, what="the module record over the DHT")
        x, grad = torch.randn(4, 16), torch.randn(4, 16)
        local, leaf = _block(), x.clone().requires_grad_()
        expected = local(leaf)
        expected.backward(grad)
        assert leaf.grad is not None
        out = await caller.forward(UID, [x])
        (grad_x,) = await caller.backward(UID, [x], grad)
        assert torch.allclose(out, expected.detach(), atol=1e-6)
        assert torch.allclose(grad_x, leaf.grad, atol=1e-6)
        assert torch.allclose(grads[0]["0.weight"], local[0].weight.grad, atol=1e-6)  # type: ignore[index]
        with pytest.raises(ProtocolError, match="RuntimeError"):  # a wrong width: refused, and serving goes on
            await caller.forward(UID, [torch.randn(2, 3)])
        assert (await caller.forward(UID, [x], codec="int8")).shape == (4, 16)
    finally:
        await server.stop()


def test_remote_calls_over_the_real_transport() -> None:
    asyncio.run(asyncio.wait_for(with_dht_pair(_check), 150))
