"""The coordinator's durable state: global adapter, strategy state, history, registry, secret.

After every round the whole state (adapter, server-optimizer moments, round counter, history and
privacy accountant) goes into one checkpoint, written atomically (temp file, fsync, rename; see
``swarmnet.diloco.checkpoint``), so a restart resumes at exactly the round after the last one
that finished and a crash mid-write costs nothing. Registrations are appended as they happen to a
journal (``clients.journal``, one fsynced line each) that is folded into the ``clients.json``
snapshot now and then, so a registration costs the same however many clients there are. The HMAC
secret that derives session tokens and round nonces is created once with mode 0600, so sessions
survive a restart.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from swarmnet.coordinator.atomic import write_atomic
from swarmnet.coordinator.history import RoundRecord
from swarmnet.coordinator.journal import Journal
from swarmnet.coordinator.strategies import ServerState
from swarmnet.diloco.checkpoint import CheckpointConfig, load_latest, save_checkpoint
from swarmnet.federated.vector import AdapterSchema

__all__ = ["ClientRecord", "CoordinatorState", "CoordinatorStore"]

logger = logging.getLogger(__name__)

_OPT_PREFIX = "opt."
_PRIVACY_PREFIX = "privacy."
_CLIENTS = "clients.json"


@dataclass(frozen=True, kw_only=True)
class ClientRecord:
    """A registered client."""

    client_id: str
    public_key: bytes
    samples: int = 0
    codecs: tuple[str, ...] = ()
    secure_aggregation: bool = False
    registered_at: float = 0.0


@dataclass(frozen=True, kw_only=True)
class CoordinatorState:
    """Everything that must survive a restart, as of the end of a round."""

    next_round: int  # the round number the coordinator opens next
    version: int  # global adapter version: +1 per completed round
    adapter: torch.Tensor  # flat float32
    schema: AdapterSchema
    server_state: ServerState = field(default_factory=ServerState)
    history: tuple[RoundRecord, ...] = ()
    accountant: Mapping[str, torch.Tensor] = field(default_factory=dict)  # PrivacyAccountant.state_dict()


class CoordinatorStore:
    """Reads and writes a coordinator's state directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._checkpoints = CheckpointConfig(directory=self.directory / "state", every_rounds=1, keep=2)
        self._clients = Journal(self.directory / "clients.journal")

    def load(self) -> CoordinatorState | None:
        """The newest intact state, or ``None`` for a fresh directory."""
        checkpoint = load_latest(self._checkpoints)
        if checkpoint is None:
            return None
        meta = checkpoint.metadata
        moments = _prefixed(checkpoint.tensors, _OPT_PREFIX)
        return CoordinatorState(
            next_round=checkpoint.round,
            version=int(meta["version"]),
            adapter=checkpoint.tensors["adapter"],
            schema=AdapterSchema.from_pairs([(name, shape) for name, shape in meta["schema"]]),
            server_state=ServerState(step=int(meta["server_step"]), tensors=moments),
            history=tuple(RoundRecord.from_json(r) for r in meta["history"]),
            accountant=_prefixed(checkpoint.tensors, _PRIVACY_PREFIX),
        )

    def save(self, state: CoordinatorState) -> None:
        """Write ``state`` atomically as the checkpoint of ``state.next_round``."""
        tensors = {
            "adapter": state.adapter,
            **{_OPT_PREFIX + k: v for k, v in state.server_state.tensors.items()},
            **{_PRIVACY_PREFIX + k: v for k, v in state.accountant.items()},
        }
        metadata = {
            "version": state.version,
            "schema": [[s.name, list(s.shape)] for s in state.schema.tensors],
            "server_step": state.server_state.step,
            "history": [r.to_json() for r in state.history],
        }
        save_checkpoint(self._checkpoints, state.next_round, tensors, metadata)

    def load_clients(self) -> dict[str, ClientRecord]:
        """The client registry: the last snapshot, then every change journalled since (empty when new)."""
        clients: dict[str, ClientRecord] = {}
        snapshot = self.directory / _CLIENTS
        if snapshot.exists():
            for entry in json.loads(snapshot.read_text()):
                _apply(clients, entry)
        for entry in self._clients.read():
            _apply(clients, entry)
        return clients

    def record_client(self, record: ClientRecord) -> None:
        """Journal one registration durably (O(1), whatever the registry's size)."""
        self._clients.append(_client_json(record))

    def forget_client(self, client_id: str) -> None:
        """Journal that ``client_id`` left the registry."""
        self._clients.append({"removed": client_id})

    @property
    def journalled(self) -> int:
        """Registry changes journalled since the last snapshot."""
        return self._clients.lines

    def save_clients(self, clients: Mapping[str, ClientRecord]) -> None:
        """Write a snapshot of the registry atomically and empty the journal it replaces."""
        records = [_client_json(c) for c in clients.values()]
        write_atomic(self.directory / _CLIENTS, json.dumps(records, indent=1).encode())
        self._clients.rewrite([])

    def secret(self) -> bytes:
        """The coordinator's 32-byte HMAC secret, created (mode 0600) on first use."""
        path = self.directory / "secret.key"
        if path.exists():
            value = path.read_bytes()
            if len(value) == 32:
                return value
            logger.warning("replacing malformed %s (%d bytes): issued sessions become invalid", path, len(value))
        value = secrets.token_bytes(32)
        write_atomic(path, value, mode=0o600)
        return value


def _prefixed(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _client_json(record: ClientRecord) -> dict[str, Any]:
    return {
        "client_id": record.client_id,
        "public_key": record.public_key.hex(),
        "samples": record.samples,
        "codecs": list(record.codecs),
        "secure_aggregation": record.secure_aggregation,
        "registered_at": record.registered_at,
    }


def _apply(clients: dict[str, ClientRecord], entry: Any) -> None:
    """Replay one snapshot or journal entry; a malformed one is skipped with a warning."""
    try:
        if "removed" in entry:
            clients.pop(str(entry["removed"]), None)
            return
        record = ClientRecord(
            client_id=str(entry["client_id"]),
            public_key=bytes.fromhex(entry["public_key"]),
            samples=int(entry["samples"]),
            codecs=tuple(str(c) for c in entry["codecs"]),
            secure_aggregation=bool(entry["secure_aggregation"]),
            registered_at=float(entry["registered_at"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        logger.warning("skipping a malformed registry entry (%s: %s)", type(error).__name__, error)
        return
    clients[record.client_id] = record
