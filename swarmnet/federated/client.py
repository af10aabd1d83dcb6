"""``FederatedClient``: fine-tune a shared adapter on private data, sending only compressed updates.

    client = FederatedClient(model, loader, ClientConfig(address="coordinator:50051"), lora=lora_config)
    client.run()  # until the coordinator's run is done

Each round: long-poll for a task; when selected, fetch the global adapter, train ``local_steps``
on the local loader, and send ``local - global`` compressed with error feedback (or masked, for
secure aggregation), signed with the client's Ed25519 key. Raw data never leaves the process.
Each update carries its FedAvg weight: ``samples=`` or the loader's dataset size when given, else
the examples this round's batches held (a loader without ``len()``, such as an ``IterableDataset``
or a generator); the coordinator caps every claim at twice the round's median claim.
Transient failures (coordinator restarting, round aborted, deadline missed) are logged and the
client polls again; a rejected registration or a malformed update is raised.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import torch
from torch import nn

from swarmnet.compression import codec_names
from swarmnet.errors import ProtocolError
from swarmnet.federated.connection import Connection, GlobalAdapter, TlsSettings
from swarmnet.federated.local_training import LocalRound, LocalTrainer, StepFn, default_step
from swarmnet.federated.randomness import Randomness
from swarmnet.federated.secure_round import run_secure_round
from swarmnet.federated.update_encoder import SecureValues, UpdateEncoder
from swarmnet.identity import Identity
from swarmnet.proto import federated_pb2 as pb
from swarmnet.version import __version__

__all__ = ["ClientConfig", "ClientStatistics", "FederatedClient", "RoundResult"]

logger = logging.getLogger(__name__)

_TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.CANCELLED,
}


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """Where the coordinator is and how this client talks to it."""

    address: str  # host:port of the coordinator
    identity_path: Path | None = None  # Ed25519 key file (created 0600); None: a fresh key per process
    token: str = ""  # operator-issued token, where the coordinator requires one
    tls: TlsSettings | None = None
    poll_s: float = 10.0  # how long one GetTask call may wait for a round
    rpc_timeout_s: float = 120.0
    retry_backoff_s: float = 0.5  # first wait after a transient failure (doubles, capped at 10 s)
    # INSECURE, for experiments and tests only: DP noise and stochastic rounding from this seed, so a
    # run repeats; anyone who knows it can subtract the noise. None: from the OS's CSPRNG.
    insecure_deterministic_seed: int | None = None


@dataclass(frozen=True)
class RoundResult:
    """One round this client took part in."""

    round: int
    global_version: int
    train_loss: float
    uplink_bytes: int
    seconds: float
    samples: int = 0  # the FedAvg weight the update claimed (before the coordinator's cap)


@dataclass(frozen=True)
class ClientStatistics:
    """What the client did so far."""

    rounds: int
    uplink_bytes: int
    last_loss: float
    errors: int
    history: tuple[RoundResult, ...] = field(default=())

    def __str__(self) -> str:
        return (
            f"{self.rounds} rounds, {self.uplink_bytes:,} B sent, last loss {self.last_loss:.4f}, "
            f"{self.errors} transient errors"
        )


class FederatedClient:
    """A federated participant wrapping a torch (or Hugging Face) model, optionally with LoRA."""

    def __init__(
        self,
        model: nn.Module,
        loader: Iterable[Any],
        config: ClientConfig,
        *,
        lora: Any | None = None,
        samples: int | None = None,
        step: StepFn = default_step,
    ) -> None:
        """``lora`` is a ``peft.LoraConfig`` (the model is wrapped with it).

        ``samples`` is this client's FedAvg weight: its training-set size. By default
        ``len(loader.dataset)``; a loader without one (an ``IterableDataset``, a generator) reports,
        for each round, the examples its batches held in that round (``batch_samples``), and
        registers with 0 (unknown).
        """
        if lora is not None:
            from swarmnet.models.classifiers import with_lora

            model = with_lora(model, lora)
        self.model = model
        self.config = config
        self.trainer = LocalTrainer(model, loader, step)
        if samples is not None and samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        # None: counted per round from the batches drawn.
        self.samples: int | None = samples if samples is not None else _dataset_size(loader)
        identity = Identity.load_or_create(config.identity_path) if config.identity_path else Identity.generate()
        self.connection = Connection(config.address, identity, tls=config.tls)
        self.encoder = UpdateEncoder(config.insecure_deterministic_seed)
        if config.insecure_deterministic_seed is not None:
            logger.warning(Randomness(config.insecure_deterministic_seed).warning())
        self._history: list[RoundResult] = []
        self._errors = 0
        self._registered = False

    @property
    def client_id(self) -> str:
        """This client's id at the coordinator."""
        return self.connection.client_id

    def register(self) -> None:
        """Register with the coordinator (done by ``run`` and ``step`` when needed)."""
        capabilities = pb.Capabilities(
            codecs=[*codec_names(), "topk"],
            secure_aggregation=True,
            device=str(next(self.model.parameters()).device),
            samples=self.samples or 0,  # 0: no fixed size, each update reports its round's count
            software_version=__version__,
        )
        self.connection.register(capabilities, self.config.token, timeout=self.config.rpc_timeout_s)
        self._registered = True

    def run(self, max_rounds: int | None = None, timeout_s: float | None = None) -> list[RoundResult]:
        """Take part in rounds until the coordinator is done, ``max_rounds`` or ``timeout_s``."""
        start, done = time.monotonic(), len(self._history)
        backoff = self.config.retry_backoff_s
        while max_rounds is None or len(self._history) - done < max_rounds:
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                break
            try:
                if self.step() == "done":
                    break
                backoff = self.config.retry_backoff_s
            except grpc.RpcError as error:
                backoff = self._recover(error, backoff)
        return self._history[done:]

    def _recover(self, error: grpc.RpcError, backoff: float) -> float:
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        self._errors += 1
        if code == grpc.StatusCode.UNAUTHENTICATED and self._registered:
            logger.info(
                "session rejected (%s); registering again", error.details() if hasattr(error, "details") else ""
            )
            self._registered = False
            return backoff
        if code not in _TRANSIENT:
            raise error
        logger.info(
            "transient coordinator error %s: %s", code.name, error.details() if hasattr(error, "details") else ""
        )
        time.sleep(backoff)  # a real backoff between retries, not a readiness wait
        return min(backoff * 2, 10.0)

    def step(self) -> str:
        """Poll once and, if selected, run the round: returns ``"trained"``, ``"waited"`` or ``"done"``."""
        if not self._registered:
            self.register()
        task = self.connection.task(self.config.poll_s)
        if task.kind == pb.TaskReply.DONE:
            return "done"
        if task.kind != pb.TaskReply.TRAIN:
            return "waited"
        result = self._train_round(task)
        if result is None:
            return "waited"
        self._history.append(result)
        return "trained"

    def _train_round(self, task: pb.TaskReply) -> RoundResult | None:
        started = time.monotonic()
        adapter = self.connection.fetch(self.config.rpc_timeout_s)
        if adapter.version != task.global_version:  # the round closed between the task and the fetch
            logger.info("round %d moved on (adapter v%d, task v%d)", task.round, adapter.version, task.global_version)
            return None
        config = task.config
        if config.secure_aggregation:
            trained: list[tuple[float, int]] = []  # (loss, samples), filled once the phases reach training

            def train() -> tuple[SecureValues, int, float]:
                delta, local = self._local_delta(adapter, config)
                samples = self._round_samples(local)
                trained.append((local.loss, samples))
                return self.encoder.encode_secure(delta, config, samples), samples, local.loss

            reply = run_secure_round(self.connection, task, train, self.config.rpc_timeout_s)
            loss, samples = trained[0]
        else:
            delta, local = self._local_delta(adapter, config)
            loss, samples = local.loss, self._round_samples(local)
            payload = self.encoder.encode(delta, config)
            reply = self.connection.submit(
                task, payload, samples=samples, encoding="codec", train_loss=loss, timeout=self.config.rpc_timeout_s
            )
        result = RoundResult(
            task.round, task.global_version, loss, int(reply.bytes_received), time.monotonic() - started, samples
        )
        logger.info(
            "round %d: loss %.4f on %d samples, sent %d B in %.1f s",
            result.round,
            loss,
            samples,
            result.uplink_bytes,
            result.seconds,
        )
        return result

    def _local_delta(self, adapter: GlobalAdapter, config: pb.RoundConfig) -> tuple[torch.Tensor, LocalRound]:
        self._load(adapter)
        local = self.trainer.train(config.local_steps, config.learning_rate)
        delta = self.trainer.vector() - adapter.vector
        return self.encoder.privatize(delta, config), local

    def _round_samples(self, local: LocalRound) -> int:
        """The FedAvg weight this round's update claims (the coordinator caps it, whatever it is)."""
        if self.samples is not None:
            return self.samples
        if local.samples is None:
            raise ValueError(
                "cannot count the examples in this loader's batches (neither a tensor, a dict with 'labels' nor "
                "an (inputs, targets) pair): pass FederatedClient(..., samples=<training-set size>)"
            )
        return max(1, local.samples)  # the protocol's floor; an empty round would have failed its loss

    def _load(self, adapter: GlobalAdapter) -> None:
        if adapter.schema != self.trainer.schema:
            raise ProtocolError(
                f"the federation trains adapter layout {adapter.schema.digest()}, this model has "
                f"{self.trainer.schema.digest()}: same base model and LoRA config needed"
            )
        self.trainer.load(adapter.vector)

    def load_global_adapter(self) -> int:
        """Put the coordinator's current global adapter into the model and return its version.

        After ``run`` the model holds this client's own last local update; call this to use the
        federation's adapter (for inference, or to save it with ``adapter_state``).
        """
        if not self._registered:
            self.register()
        adapter = self.connection.fetch(self.config.rpc_timeout_s)
        self._load(adapter)
        return adapter.version

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """The adapter tensors by name (e.g. to seed a coordinator with the initial adapter)."""
        return self.trainer.schema.unflatten(self.trainer.vector())

    def statistics(self) -> ClientStatistics:
        """Rounds done, bytes sent, last loss, transient errors."""
        last = self._history[-1].train_loss if self._history else math.nan
        uplink = sum(r.uplink_bytes for r in self._history)
        return ClientStatistics(len(self._history), uplink, last, self._errors, tuple(self._history))

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


def _dataset_size(loader: Iterable[Any]) -> int | None:
    """``len(loader.dataset)``, or ``None`` when the loader has no sized dataset (counted per round then)."""
    dataset = getattr(loader, "dataset", None)
    if dataset is None:
        return None
    try:
        size = len(dataset)
    except TypeError:  # no dataset, or an IterableDataset: its size is unknown until it is drawn
        return None
    return size if size > 0 else None
