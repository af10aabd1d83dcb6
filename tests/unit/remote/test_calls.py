"""Remote forward and backward equal local ones, through every codec, and parameter gradients reach the hook."""

from __future__ import annotations

import pytest
import torch

from swarmnet.identity import Identity
from swarmnet.remote import BackgroundLoop, HostedModule, ModuleServer, RemoteCaller, RemoteModule
from swarmnet.testing import run_virtual
from swarmnet.transport.memory import MemoryNetwork
from tests.unit.remote.helpers import UID, mlp, swarm

TOLERANCE = {"none": 1e-6, "fp16": 1e-2, "int8": 5e-2}


def _local(x: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    module, leaf = mlp(), x.clone().requires_grad_()
    out = module(leaf)
    out.backward(grad)
    assert leaf.grad is not None
    return out.detach(), leaf.grad, {n: p.grad for n, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("codec", sorted(TOLERANCE))
def test_remote_forward_and_backward_equal_local(codec: str) -> None:
    torch.manual_seed(1)
    x, grad = torch.randn(6, 8), torch.randn(6, 8)
    want_out, want_grad, want_params = _local(x, grad)
    seen: list[dict[str, torch.Tensor]] = []

    async def main() -> None:
        async with swarm([mlp()], hooks=[seen.append]) as s:
            out = await s.caller.forward(UID, [x], codec=codec)
            (grad_x,) = await s.caller.backward(UID, [x], grad, codec=codec)
            tol = TOLERANCE[codec]
            scale = max(1.0, float(want_out.abs().max()))
            assert torch.allclose(out, want_out, atol=tol * scale)
            assert torch.allclose(grad_x, want_grad, atol=tol * max(1.0, float(want_grad.abs().max())))
            stats = s.caller.statistics()
            assert stats.calls == 2
            assert stats.bytes_sent > 0
            assert stats.bytes_received > 0

    run_virtual(main())
    assert len(seen) == 1
    assert set(seen[0]) == set(want_params)
    for name, value in seen[0].items():  # codec none on the server's side of the gradient
        assert torch.allclose(value, want_params[name], atol=5e-2 if codec != "none" else 1e-6)


def test_compressed_codecs_send_fewer_bytes() -> None:
    x = torch.randn(64, 8)

    async def sent(codec: str) -> int:
        async with swarm([mlp()]) as s:
            await s.caller.forward(UID, [x], codec=codec)
            return s.caller.statistics().bytes_sent

    assert run_virtual(sent("int8")) < run_virtual(sent("fp16")) < run_virtual(sent("none"))


def test_loss_backward_flows_through_a_remote_module() -> None:
    torch.manual_seed(2)
    x = torch.randn(4, 8)
    head = torch.nn.Linear(8, 1)
    local = mlp()
    leaf = x.clone().requires_grad_()
    head(local(leaf)).square().sum().backward()
    seen: list[dict[str, torch.Tensor]] = []
    with BackgroundLoop() as background:
        network = MemoryNetwork()  # real time: torch waits in this thread while the loop runs
        identity = Identity.generate()

        async def setup() -> tuple[ModuleServer, RemoteCaller]:
            server = ModuleServer(network.add_peer(identity.peer_id), identity,
                                  [HostedModule(UID, mlp(), gradient_hook=seen.append)])  # fmt: skip
            await server.start()
            return server, RemoteCaller(network.add_peer())

        server, caller = background.run(setup(), timeout=60)
        try:
            remote = RemoteModule(UID, caller, background.loop)
            remote_leaf = x.clone().requires_grad_()
            head.zero_grad()
            head(remote(remote_leaf)).square().sum().backward()
        finally:
            background.run(server.stop(), timeout=60)
    assert remote_leaf.grad is not None
    assert leaf.grad is not None
    assert torch.allclose(remote_leaf.grad, leaf.grad, atol=1e-6)
    assert torch.allclose(seen[0]["0.weight"], local[0].weight.grad, atol=1e-6)  # type: ignore[index]


def test_a_remote_module_refuses_to_block_its_own_loop() -> None:
    async def main() -> None:
        import asyncio

        remote = RemoteModule(UID, RemoteCaller(MemoryNetwork().add_peer()), asyncio.get_running_loop())
        with pytest.raises(RuntimeError, match="own event loop"):
            remote(torch.randn(1, 8))

    run_virtual(main())


class Gate(torch.nn.Module):
    """A module of two inputs, one of which it ignores."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, x: torch.Tensor, y: torch.Tensor, unused: torch.Tensor) -> torch.Tensor:
        return self.scale * x * y


def test_modules_of_several_inputs_get_a_gradient_per_input() -> None:
    x, y, unused = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 2)
    grad = torch.randn(3, 4)
    seen: list[dict[str, torch.Tensor]] = []

    async def main() -> None:
        network = MemoryNetwork()
        identity = Identity.generate()
        hosted = HostedModule("RUN.gate", Gate(), num_inputs=3, gradient_hook=seen.append)
        server = ModuleServer(network.add_peer(identity.peer_id), identity, [hosted])
        await server.start()
        caller = RemoteCaller(network.add_peer())
        assert torch.allclose(await caller.forward("RUN.gate", [x, y, unused]), 2 * x * y)
        grads = await caller.backward("RUN.gate", [x, y, unused], grad)
        assert torch.allclose(grads[0], 2 * y * grad)
        assert torch.allclose(grads[1], 2 * x * grad)
        assert torch.equal(grads[2], torch.zeros(3, 2))
        await server.stop()

    run_virtual(main())
    assert torch.allclose(seen[0]["scale"], (x * y * grad).sum())
