"""Clients whose loaders have no size take part in real rounds, plain and secure, claiming the examples
they trained on; the coordinator still caps every claim."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from swarmnet.federated import ClientConfig, FederatedClient
from tests.integration.federated.harness import AdapterNet, batches, coordinator_config, run_all, running

pytestmark = pytest.mark.timeout(300)

LOCAL_STEPS, BATCH = 3, 16


def _stream(seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless batches from a generator: no ``len()`` anywhere."""
    while True:
        yield from batches(seed, count=4, size=BATCH)


def _clients(address: str) -> list[FederatedClient]:
    torch.manual_seed(0)
    sized = DataLoader(TensorDataset(*map(torch.cat, zip(*batches(0), strict=True))), batch_size=BATCH)
    loaders = [sized, _stream(1), _stream(2)]
    return [FederatedClient(AdapterNet(), loader, ClientConfig(address=address, poll_s=1.0)) for loader in loaders]


@pytest.mark.parametrize("secure", [False, True], ids=["plain", "secure"])
def test_unsized_loaders_claim_the_examples_of_each_round(tmp_path: Path, secure: bool) -> None:
    # Generous round deadlines: three clients share a busy machine's cores.
    config = coordinator_config(
        tmp_path,
        rounds=2,
        local_steps=LOCAL_STEPS,
        secure_aggregation=secure,
        round_timeout_s=60.0,
        phase_timeout_s=30.0,
    )
    with running(config) as coordinator:
        clients = _clients(coordinator.address)
        try:
            results = run_all(clients, lambda c: c.run(timeout_s=100), timeout=110)
            status = clients[0].connection.status()
            registry = coordinator.server.registry.clients
            registered = [registry[c.client_id].samples for c in clients]
        finally:
            for client in clients:
                client.close()
    assert [h.outcome for h in status.history] == ["completed", "completed"], [h.reason for h in status.history]
    assert all(len(h.contributors) == 3 for h in status.history)
    assert registered == [64, 0, 0]  # the dataset's size; unknown for the generators (not 1)
    assert [r.samples for r in results[0]] == [64, 64]
    for streamed in results[1:]:
        assert [r.samples for r in streamed] == [LOCAL_STEPS * BATCH] * 2
