"""The coordinator's durable state: global adapter, strategy state, history, registry, secret.

After every round the whole state (adapter, server-optimizer moments, round counter, history and
privacy accountant) goes into one checkpoint, written atomically (temp file, fsync, rename; see
``swarmnet.diloco.checkpoint``), so a restart resumes at exactly the round after the last one
that finished and a crash mid-write costs nothing. Registrations are written as they happen to a
small JSON file the same way. The HMAC secret that derives session tokens and round nonces is
created once with mode 0600, so sessions survive a restart.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from swarmnet.coordinator.history import RoundRecord
from swarmnet.coordinator.strategies import ServerState
from swarmnet.diloco.checkpoint import CheckpointConfig, load_latest, save_checkpoint
from swarmnet.federated.vector import AdapterSchema

__all__ = ["ClientRecord", "CoordinatorState", "CoordinatorStore"]

logger = logging.getLogger(__name__)

_OPT_PREFIX = "opt."
_PRIVACY_PREFIX = "privacy."


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
        """The client registry (empty when there is none yet)."""
        path = self.directory / "clients.json"
        if not path.exists():
            return {}
        records = json.loads(path.read_text())
        return {
            r["client_id"]: ClientRecord(
                client_id=r["client_id"],
                public_key=bytes.fromhex(r["public_key"]),
                samples=int(r["samples"]),
                codecs=tuple(r["codecs"]),
                secure_aggregation=bool(r["secure_aggregation"]),
                registered_at=float(r["registered_at"]),
            )
            for r in records
        }

    def save_clients(self, clients: Mapping[str, ClientRecord]) -> None:
        """Write the registry atomically."""
        records = [
            {
                "client_id": c.client_id,
                "public_key": c.public_key.hex(),
                "samples": c.samples,
                "codecs": list(c.codecs),
                "secure_aggregation": c.secure_aggregation,
                "registered_at": c.registered_at,
            }
            for c in clients.values()
        ]
        _write_atomic(self.directory / "clients.json", json.dumps(records, indent=1).encode())

    def secret(self) -> bytes:
        """The coordinator's 32-byte HMAC secret, created (mode 0600) on first use."""
        path = self.directory / "secret.key"
        if path.exists():
            value = path.read_bytes()
            if len(value) == 32:
                return value
            logger.warning("replacing malformed %s (%d bytes): issued sessions become invalid", path, len(value))
        value = secrets.token_bytes(32)
        _write_atomic(path, value, mode=0o600)
        return value


def _prefixed(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Temp file, fsync, rename, fsync the directory: a reader sees the old or the new file, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
