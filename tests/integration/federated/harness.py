"""Small models, loaders and a coordinator factory for the federated gRPC tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from swarmnet.coordinator.config import CoordinatorConfig, RoundSettings, SecAggSettings
from swarmnet.coordinator.server import BackgroundCoordinator
from swarmnet.federated import ClientConfig, FederatedClient
from swarmnet.testing import poll_until

FEATURES, CLASSES, HIDDEN = 8, 3, 64


class AdapterNet(nn.Module):
    """A frozen random base plus a small trainable adapter: the shape of a LoRA model, without peft."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)  # every client has the same frozen base
        self.base = nn.Linear(FEATURES, HIDDEN)
        with torch.no_grad():
            self.base.weight.copy_(torch.randn(HIDDEN, FEATURES, generator=generator) / 3)
            self.base.bias.zero_()
        self.base.requires_grad_(False)
        self.head = nn.Linear(HIDDEN, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(torch.relu(self.base(x)))
        return out


def batches(seed: int, count: int = 4, size: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A learnable task (labels from a fixed linear rule), different samples per client seed."""
    generator = torch.Generator().manual_seed(100 + seed)
    rule = torch.randn(FEATURES, CLASSES, generator=torch.Generator().manual_seed(7))
    out = []
    for _ in range(count):
        x = torch.randn(size, FEATURES, generator=generator)
        out.append((x, (x @ rule).argmax(dim=1)))
    return out


def initial_adapter() -> dict[str, torch.Tensor]:
    """The adapter every client starts from."""
    torch.manual_seed(0)
    net = AdapterNet()
    return {name: p.detach().clone() for name, p in net.named_parameters() if p.requires_grad}


def coordinator_config(state_dir: Path, **rounds: Any) -> CoordinatorConfig:
    """Fast rounds for tests; ``rounds`` overrides ``RoundSettings`` fields."""
    settings = RoundSettings(
        clients_per_round=3, min_clients=3, min_participants=2, round_timeout_s=20.0, phase_timeout_s=10.0,
        rounds=2, local_steps=3, learning_rate=0.05, active_window_s=30.0,
    )  # fmt: skip
    secagg = SecAggSettings(encoding="fixed", bits=32, clip=1.0)  # fine fixed point: compared with plain rounds
    return CoordinatorConfig(state_dir=state_dir, rounds=replace(settings, **rounds), secagg=secagg)


def make_client(address: str, seed: int, **config: Any) -> FederatedClient:
    """A client with its own data (``seed``) and a fresh key."""
    torch.manual_seed(0)
    model = AdapterNet()
    return FederatedClient(
        model, batches(seed), ClientConfig(address=address, poll_s=1.0, **config), samples=16 * (1 + seed)
    )


@contextmanager
def running(
    config: CoordinatorConfig, initial: dict[str, torch.Tensor] | None = None
) -> Iterator[BackgroundCoordinator]:
    """A coordinator on port 0 for the duration of the block."""
    coordinator = BackgroundCoordinator(config, initial if initial is not None else initial_adapter())
    coordinator.start()
    try:
        yield coordinator
    finally:
        coordinator.stop()


def run_all(
    clients: Sequence[FederatedClient], work: Callable[[FederatedClient], Any], timeout: float = 60
) -> list[Any]:
    """Run ``work(client)`` for every client in its own thread; re-raise the first failure."""
    results: list[Any] = [None] * len(clients)
    errors: list[BaseException] = []

    def body(index: int) -> None:
        try:
            results[index] = work(clients[index])
        except BaseException as error:  # surfaced in the test thread below
            errors.append(error)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    if errors:
        raise errors[0]
    assert not any(t.is_alive() for t in threads), "a client did not finish in time"
    return results


def wait_rounds(coordinator: BackgroundCoordinator, count: int, timeout: float = 30.0) -> Any:
    """Poll until ``count`` rounds have ended (completed or failed); return the engine's state."""

    def ended() -> Any:
        engine = coordinator.server.engine
        return engine.state if engine is not None and len(engine.state.history) >= count else None

    return poll_until(ended, timeout=timeout, interval=0.05, what=f"{count} rounds to end")
