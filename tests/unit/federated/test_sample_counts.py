"""The FedAvg weight a client claims: its dataset's size when the loader has one, else the examples it
trained on in that round (never a made-up 1)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from swarmnet.federated import ClientConfig, FederatedClient
from swarmnet.federated.connection import GlobalAdapter
from swarmnet.federated.local_training import LocalTrainer, batch_samples
from swarmnet.proto import federated_pb2 as pb

FEATURES, CLASSES = 4, 3


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(FEATURES, 8), nn.ReLU(), nn.Linear(8, CLASSES))
    model[0].requires_grad_(False)  # a frozen base and a trainable head, like an adapter
    return model


def _pair(rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(rows, FEATURES), torch.randint(CLASSES, (rows,))


class _Stream(IterableDataset[tuple[torch.Tensor, torch.Tensor]]):
    """Examples one at a time, with no ``len()``: a streaming dataset."""

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(1)
        for _ in range(40):
            yield torch.randn(FEATURES, generator=generator), torch.randint(CLASSES, (), generator=generator)


class _FakeConnection:
    """Stands in for the gRPC connection: one TRAIN task, the client's own adapter as the global one."""

    def __init__(self, trainer: LocalTrainer, local_steps: int) -> None:
        self.trainer = trainer
        self.local_steps = local_steps
        self.registered: list[pb.Capabilities] = []
        self.submitted: list[int] = []

    def register(self, capabilities: pb.Capabilities, token: str, timeout: float) -> None:
        self.registered.append(capabilities)

    def task(self, wait_s: float) -> pb.TaskReply:
        config = pb.RoundConfig(local_steps=self.local_steps, learning_rate=0.01, codec="none")
        return pb.TaskReply(kind=pb.TaskReply.TRAIN, round=len(self.submitted) + 1, global_version=0, config=config)

    def fetch(self, timeout: float) -> GlobalAdapter:
        return GlobalAdapter(version=0, round=1, vector=self.trainer.vector(), schema=self.trainer.schema)

    def submit(self, task: pb.TaskReply, payload: bytes, *, samples: int, **_: Any) -> pb.SubmitReply:
        self.submitted.append(samples)
        return pb.SubmitReply(bytes_received=len(payload))

    def close(self) -> None:
        pass


def _client(loader: Any, local_steps: int = 3, **kwargs: Any) -> tuple[FederatedClient, _FakeConnection]:
    client = FederatedClient(_model(), loader, ClientConfig(address="127.0.0.1:1"), **kwargs)
    client.connection.close()
    fake = _FakeConnection(client.trainer, local_steps)
    client.connection = fake  # type: ignore[assignment]
    return client, fake


def test_batch_samples_reads_the_usual_batch_layouts() -> None:
    assert batch_samples({"input_ids": torch.zeros(5, 7), "labels": torch.zeros(5)}) == 5
    assert batch_samples({"input_ids": torch.zeros(6, 7)}) == 6
    assert batch_samples(_pair(4)) == 4
    assert batch_samples([torch.zeros(3, 2), torch.zeros(3)]) == 3
    assert batch_samples(torch.zeros(9, 2)) == 9
    assert batch_samples("text") is None
    assert batch_samples(object()) is None
    assert batch_samples(torch.tensor(1.0)) is None


def test_local_rounds_count_the_examples_of_every_batch_drawn() -> None:
    trainer = LocalTrainer(_model(), [_pair(3), _pair(5)])
    assert trainer.train(3, 0.01).samples == 3 + 5 + 3  # the third step starts a new epoch
    assert trainer.train(2, 0.01).samples == 5 + 3
    uncountable = LocalTrainer(_model(), [_pair(2)], step=lambda model, batch: model(batch[0]).sum())
    assert uncountable.train(1, 0.01).samples == 2  # counting does not depend on the step function


def test_a_sized_loader_claims_its_dataset_size() -> None:
    loader = DataLoader(TensorDataset(*_pair(50)), batch_size=8)
    client, fake = _client(loader)
    assert client.samples == 50
    assert client.step() == "trained"
    assert fake.registered[0].samples == 50
    assert fake.submitted == [50]
    assert client.statistics().history[0].samples == 50


def test_an_iterable_dataset_claims_the_examples_of_each_round() -> None:
    loader = DataLoader(_Stream(), batch_size=16)  # 40 examples: batches of 16, 16, 8, then a new pass
    client, fake = _client(loader, local_steps=4)
    assert client.samples is None
    assert client.step() == "trained"
    assert client.step() == "trained"
    assert fake.registered[0].samples == 0  # unknown until drawn: registered as such, not as 1
    assert fake.submitted == [16 + 16 + 8 + 16, 16 + 8 + 16 + 16]
    assert [r.samples for r in client.statistics().history] == fake.submitted


def test_a_generator_loader_claims_the_examples_of_each_round() -> None:
    def batches() -> Iterator[dict[str, torch.Tensor]]:
        while True:
            features, labels = _pair(6)
            yield {"inputs": features, "labels": labels}

    client, fake = _client((batch for batch in batches()), local_steps=2, step=_dict_step)
    client.step()
    assert fake.submitted == [12]


def test_an_explicit_count_wins_over_the_loader() -> None:
    client, fake = _client(DataLoader(_Stream(), batch_size=16), samples=1000)
    client.step()
    assert fake.registered[0].samples == 1000
    assert fake.submitted == [1000]


def test_uncountable_batches_without_a_count_are_refused_with_the_fix() -> None:
    features = torch.randn(4, FEATURES)
    client, fake = _client(iter([object()] * 3), local_steps=1, step=lambda model, _: model(features).sum())
    with pytest.raises(ValueError, match="samples="):
        client.step()
    assert fake.submitted == []
    with pytest.raises(ValueError, match="samples must be >= 1"):
        FederatedClient(_model(), [], ClientConfig(address="127.0.0.1:1"), samples=0)


def _dict_step(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return nn.functional.cross_entropy(model(batch["inputs"]), batch["labels"])
