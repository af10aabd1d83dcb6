"""Periodic, crash-safe checkpoints of a DiLoCo trainer's state, in safetensors format.

Each checkpoint is one file ``round-{round:09d}.safetensors`` in ``CheckpointConfig.directory``.
Its header metadata holds one JSON string under the key ``"swarmnet"``::

    {"version": 1, "round": 120, "metadata": {...caller's JSON...}, "sha256": "..."}

where ``sha256`` covers the version, round and metadata (canonical JSON) and every tensor's name,
dtype, shape and bytes, sorted by name. A file that still parses but was altered fails the digest.

Why a peer killed with SIGKILL mid-save never leaves a checkpoint that gets loaded: the file is
written under a ``.tmp`` name that ``load_latest`` never looks at, fsynced, and only then renamed
into place with ``os.replace`` (atomic on POSIX); the directory is fsynced so the rename survives a
power cut. A final name therefore always points at a complete file, and bit rot or a torn write the
filesystem did not protect us from is caught by the digest: ``load_latest`` then falls back to the
next older checkpoint. A directory belongs to one trainer: ``save_checkpoint`` deletes every stale
``.tmp`` file in it, which would break a second process saving there at the same time.

``flatten_state`` / ``unflatten_state`` turn nested states such as ``torch.optim.AdamW.state_dict()``
into the flat ``{name: tensor}`` safetensors needs, plus a JSON skeleton to store as metadata.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from swarmnet.errors import ConfigError

__all__ = [
    "Checkpoint",
    "CheckpointConfig",
    "flatten_state",
    "load_latest",
    "save_checkpoint",
    "unflatten_state",
]

logger = logging.getLogger(__name__)

_FORMAT_VERSION = 1  # bump on any change to the header layout or to what the digest covers
_HEADER_KEY = "swarmnet"
_TMP_SUFFIX = ".tmp"
_FILE_NAME = re.compile(r"^round-(\d{9,})\.safetensors$")  # rounds past 10**9 just get longer names


@dataclass(frozen=True, kw_only=True)
class CheckpointConfig:
    """Where and how often a trainer checkpoints."""

    directory: Path  # created with its parents on the first save; one trainer per directory
    every_rounds: int = 10  # save after every this many outer rounds (the trainer decides when)
    keep: int = 2  # newest checkpoints kept; older ones are deleted after each successful save

    def validate(self) -> None:
        """Raise ``ConfigError`` for an impossible setting."""
        if self.every_rounds < 1:
            raise ConfigError(f"every_rounds must be >= 1, got {self.every_rounds}")
        if self.keep < 1:
            raise ConfigError(f"keep must be >= 1, got {self.keep}")


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint that was read back and passed every check."""

    round: int
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, Any]  # exactly the JSON value given to ``save_checkpoint``
    path: Path


class _InvalidCheckpoint(Exception):
    """A checkpoint file parsed but failed a check (version, round, digest); the message says which."""


def save_checkpoint(
    config: CheckpointConfig, round_: int, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]
) -> Path:
    """Atomically write the checkpoint of ``round_`` and prune old ones; return its path.

    Every input is checked before anything touches the disk: a non-tensor value raises
    ``TypeError``, metadata that is not JSON (or would not come back equal from it, e.g. tuples or
    non-string keys) raises ``TypeError`` or ``ValueError``. Tensors may live on any device, be
    non-contiguous or share memory; they are copied only where safetensors needs it. An existing
    checkpoint of the same round is replaced.
    """
    config.validate()
    if isinstance(round_, bool) or not isinstance(round_, int) or round_ < 0:
        raise ValueError(f"round must be a non-negative int, got {round_!r}")
    prepared = _prepare_tensors(tensors)
    body = _encode_body(round_, metadata)
    header = {_HEADER_KEY: json.dumps({**body, "sha256": _digest(body, prepared)}, sort_keys=True)}

    config.directory.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(config.directory)
    final = config.directory / f"round-{round_:09d}.safetensors"
    tmp = final.with_name(f"{final.name}.{os.getpid()}{_TMP_SUFFIX}")
    try:
        save_file(prepared, tmp, metadata=header)
        _fsync_path(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_path(config.directory)
    _prune(config.directory, config.keep, final)
    return final


def load_latest(config: CheckpointConfig) -> Checkpoint | None:
    """Return the newest checkpoint that passes every check, or ``None`` if there is none.

    Files that fail to parse, fail the digest or have another format version are skipped with a
    warning, so a checkpoint torn by a crash costs at most the rounds since the previous one.
    """
    for round_, path in reversed(_list_checkpoints(config.directory)):
        try:
            return _read_checkpoint(path, round_)
        except (SafetensorError, OSError, ValueError, _InvalidCheckpoint) as error:
            logger.warning("skipping unreadable checkpoint %s: %s", path, error)
    return None


def _prepare_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU tensors whose memory does not overlap, as safetensors requires."""
    prepared: dict[str, torch.Tensor] = {}
    taken: dict[int, list[tuple[int, int]]] = {}  # storage -> byte ranges already used by a tensor
    for name, value in tensors.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"tensor names must be non-empty strings, got {name!r}")
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"checkpoint value {name!r} is a {type(value).__name__}, not a torch.Tensor")
        if value.layout != torch.strided:
            raise TypeError(f"checkpoint tensor {name!r} has layout {value.layout}; only dense tensors are stored")
        tensor = value.detach().cpu().contiguous()
        # Overlapping memory (tied weights, a flat buffer next to its views) makes safetensors refuse
        # to save; disjoint views of one buffer (parameters of FlatParameters) are fine and not copied.
        start = tensor.data_ptr()
        end = start + tensor.numel() * tensor.element_size()
        ranges = taken.setdefault(tensor.untyped_storage().data_ptr(), [])
        if any(start < other_end and other_start < end for other_start, other_end in ranges):
            tensor = tensor.clone()
        else:
            ranges.append((start, end))
        prepared[name] = tensor
    return prepared


def _encode_body(round_: int, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The header fields the digest covers; raise if ``metadata`` would not come back equal."""
    if not isinstance(metadata, Mapping):
        raise TypeError(f"checkpoint metadata must be a mapping, got {type(metadata).__name__}")
    body = {"version": _FORMAT_VERSION, "round": round_, "metadata": dict(metadata)}
    try:
        text = _canonical(body)
    except TypeError as error:
        raise TypeError(f"checkpoint metadata is not JSON-serializable: {error}") from error
    except ValueError as error:  # nan, inf, circular references
        raise ValueError(f"checkpoint metadata is not JSON-serializable: {error}") from error
    decoded = json.loads(text)
    if decoded["metadata"] != body["metadata"]:
        raise ValueError(
            "checkpoint metadata would not load back equal from JSON (tuples, non-string keys?); "
            "store nested states through flatten_state"
        )
    return dict(decoded)


def _canonical(value: Any) -> str:
    """One JSON text per value, so the digest can be recomputed from the parsed header."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _digest(body: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the header body and every tensor's name, dtype, shape and bytes, by name."""
    digest = hashlib.sha256(_canonical(body).encode())
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        data = tensor.reshape(-1).view(torch.uint8).numpy()
        # Length-prefixed fields, so no two different checkpoints feed the same byte stream.
        spec = json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode()
        digest.update(len(spec).to_bytes(8, "little") + spec + data.nbytes.to_bytes(8, "little"))
        digest.update(data.data)
    return digest.hexdigest()


def _read_checkpoint(path: Path, round_: int) -> Checkpoint:
    """Read and verify one checkpoint file; raise on anything wrong with it."""
    with safe_open(path, framework="pt") as handle:
        header = (handle.metadata() or {}).get(_HEADER_KEY)
        # A safe_open handle has keys() but is not iterable.
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    if header is None:
        raise _InvalidCheckpoint(f"no {_HEADER_KEY!r} header")
    fields = json.loads(header)
    if not isinstance(fields, dict) or fields.get("version") != _FORMAT_VERSION:
        raise _InvalidCheckpoint(f"format version {fields.get('version') if isinstance(fields, dict) else None!r}")
    stored = fields.pop("sha256", None)
    if stored != _digest(fields, tensors):
        raise _InvalidCheckpoint("SHA-256 digest mismatch (file altered or torn)")
    if fields.get("round") != round_:
        raise _InvalidCheckpoint(f"header says round {fields.get('round')!r} but the file name says {round_}")
    metadata = fields.get("metadata")
    if not isinstance(metadata, dict):
        raise _InvalidCheckpoint("header has no metadata object")
    return Checkpoint(round=round_, tensors=tensors, metadata=metadata, path=path)


def _list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """Checkpoint files in ``directory`` by increasing round (temp files and others ignored)."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _FILE_NAME.match(path.name)
        if match is not None:
            found.append((int(match.group(1)), path))
    return sorted(found)


def _remove_stale_tmp(directory: Path) -> None:
    """Delete temp files left by a save that crashed (they can hold gigabytes)."""
    for path in directory.glob(f"*{_TMP_SUFFIX}"):
        logger.info("removing temp file of an interrupted save: %s", path)
        path.unlink(missing_ok=True)


def _prune(directory: Path, keep: int, saved: Path) -> None:
    """Delete all but the newest ``keep`` checkpoints; never the one just saved.

    The one just saved may be older than files left from an abandoned run (if those were torn and
    the trainer resumed from further back), and deleting it would lose the only good state.
    """
    checkpoints = _list_checkpoints(directory)
    survivors = {path for _, path in checkpoints[-keep:]} | {saved}
    for _, path in checkpoints:
        if path not in survivors:
            path.unlink(missing_ok=True)


def _fsync_path(path: Path) -> None:
    """Flush a file's or a directory's data and metadata to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def flatten_state(state: Mapping[str, Any], prefix: str) -> tuple[dict[str, torch.Tensor], Any]:
    """Split a nested state into ``{f"{prefix}/{path}": tensor}`` and a JSON-able skeleton.

    ``state`` may nest dicts (str or int keys), lists and tuples of tensors, floats (also inf and
    nan), ints, bools, strings and ``None``, like ``optimizer.state_dict()``. The skeleton records
    every container's type, so ``unflatten_state`` rebuilds an equal structure: int keys stay ints,
    tuples stay tuples. Tensors are not copied; save them before they are modified.
    """
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten_node(state, [], prefix, tensors)
    return tensors, skeleton


def unflatten_state(tensors: Mapping[str, torch.Tensor], skeleton: Any, prefix: str) -> Any:
    """Rebuild the structure ``flatten_state`` split, taking tensors from ``tensors``.

    Raises ``ValueError`` for a skeleton that ``flatten_state`` cannot have produced or that names
    a tensor missing from ``tensors``.
    """
    return _unflatten_node(skeleton, tensors, prefix)


def _flatten_node(node: Any, path: list[str], prefix: str, out: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, torch.Tensor):
        relative = "/".join(path)
        key = _join(prefix, relative)
        if key in out:
            raise ValueError(f"two entries of the state map to the tensor name {key!r}")
        out[key] = node
        return {"tensor": relative}
    if isinstance(node, Mapping):
        return {"dict": [_flatten_item(key, value, path, prefix, out) for key, value in node.items()]}
    if isinstance(node, list | tuple):
        items = [_flatten_node(value, [*path, str(index)], prefix, out) for index, value in enumerate(node)]
        return {"tuple" if isinstance(node, tuple) else "list": items}
    if isinstance(node, float) and not math.isfinite(node):
        return {"float": str(float(node))}  # strict JSON has no inf or nan
    if node is None or isinstance(node, bool | int | float | str):
        return node
    raise TypeError(f"cannot checkpoint {type(node).__name__} at {'/'.join(path) or 'the root'} of {prefix!r}")


def _flatten_item(key: Any, value: Any, path: list[str], prefix: str, out: dict[str, torch.Tensor]) -> list[Any]:
    if not isinstance(key, str | int):
        raise TypeError(f"dict keys must be str or int, got {key!r} at {'/'.join(path) or 'the root'}")
    # Escape "/" so a key containing it cannot pose as a nested path.
    part = str(key).replace("%", "%25").replace("/", "%2F")
    return [key, _flatten_node(value, [*path, part], prefix, out)]


def _unflatten_node(node: Any, tensors: Mapping[str, torch.Tensor], prefix: str) -> Any:
    if node is None or isinstance(node, bool | int | float | str):
        return node
    if not isinstance(node, dict) or len(node) != 1:
        raise ValueError(f"malformed state skeleton node: {node!r}")
    ((tag, value),) = node.items()
    if tag == "tensor":
        key = _join(prefix, value)
        if key not in tensors:
            raise ValueError(f"the checkpoint has no tensor {key!r}")
        return tensors[key]
    if tag == "dict":
        return {key: _unflatten_node(item, tensors, prefix) for key, item in value}
    if tag in ("list", "tuple"):
        items = [_unflatten_node(item, tensors, prefix) for item in value]
        return tuple(items) if tag == "tuple" else items
    if tag == "float":
        return float(value)
    raise ValueError(f"unknown state skeleton tag {tag!r}")


def _join(prefix: str, relative: str) -> str:
    return "/".join(part for part in (prefix, relative) if part)
