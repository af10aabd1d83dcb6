"""Error feedback: keep what a lossy codec dropped and send it next time.

A biased compressor (1-bit sign, top-k) loses part of every tensor it encodes. Error feedback
(1-bit Adam's error compensation, DGC's local gradient accumulation) keeps that loss in a
per-key residual and adds it to the next tensor sent under the same key, so over many steps
nothing is lost: ``sum(decoded payloads) + residual == sum(inputs)``.

Deep Gradient Compression adds two options, both off by default:

* momentum correction: a per-key velocity ``u = m * u + g`` is accumulated into the residual
  instead of the raw gradient, so the momentum rides along the compressed stream (the receiver
  then applies plain SGD to what it decodes: the momentum is already in it);
* momentum factor masking: the velocity is zeroed where the payload transmitted something (its
  decoded value is non-zero), so stale momentum does not keep pushing coordinates that were just
  sent. Meant for sparse codecs; with a dense codec (sign) almost every coordinate is "sent".

Usage on the sender side, one key per parameter (or per bucket)::

    ef = ErrorFeedback(ErrorFeedbackConfig(momentum=0.9, factor_masking=True))
    payload = ef.encode(name, param.grad, codec)      # compensate, encode, keep the error

A reducer of a compressed all-reduce (1-bit Adam) compresses the partial sums it sends back,
and keeps its own residual per partition it reduces, with the same class under a distinct key::

    ef.encode(f"reduce/{part}", partial_sum, codec)

A caller that compresses by other means, or must see the compensated value first, uses the
lower-level pair instead: ``x = ef.compensate(key, t)``, compress ``x`` however it likes, then
``ef.update(key, what_the_receiver_decodes)``.

A partitioned all-reduce sends slices of one long vector, cut differently each round, so it keeps
one residual per vector and works on ranges of it (``encode_range``, ``take_range``, ``add_range``,
``clear_range``; no momentum)::

    ef.encode_range("sent/<schema>", numel, start, flat[start:stop], codec)

Errors: a tensor of the wrong size for its key, a non-finite (NaN/Inf) or non-floating input,
or malformed state is a ``ValueError`` (a local mistake, not a remote fault), raised before any
state is touched. A codec that fails inside ``encode`` drops that key's state (a half-updated
residual must not be reused) and the codec's exception propagates. Payloads carry the tensor's
shape: decode them with ``codec.decode(payload, shape=tensor.shape)``, or with
``codec.decode_accumulate(payload, out)`` into a flat buffer or one of that shape.
State lives on the CPU. Not thread-safe: guard an instance shared between threads.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from swarmnet.buffers import empty, zeros
from swarmnet.compression.base import Codec, all_finite
from swarmnet.errors import ConfigError

__all__ = ["ErrorFeedback", "ErrorFeedbackConfig", "ErrorFeedbackStatistics"]

_STORAGE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_PREFIXES = ("residual/", "velocity/", "shape/")
_Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True, kw_only=True)
class ErrorFeedbackConfig:
    """How ``ErrorFeedback`` compensates; ``validate()`` raises ``ConfigError``."""

    # DGC momentum correction: 0 accumulates the raw tensor; m in (0, 1) accumulates the
    # velocity u = m * u + g instead (the receiver must then not apply momentum again).
    momentum: float = 0.0
    # DGC momentum factor masking: zero the velocity where the decoded payload is non-zero.
    # Needs momentum > 0.
    factor_masking: bool = False
    # Storage dtype of residuals and velocities: float32, or bfloat16/float16 to halve memory
    # (arithmetic stays float32; the rounding when storing back is lost, not fed back).
    dtype: torch.dtype = torch.float32

    def validate(self) -> None:
        """Raise ``ConfigError`` for an out-of-range or inconsistent setting."""
        if not isinstance(self.momentum, int | float) or not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"momentum must be a float in [0, 1), got {self.momentum!r}")
        if self.factor_masking and self.momentum == 0.0:
            raise ConfigError("factor_masking masks the momentum velocity: it needs momentum > 0")
        if self.dtype not in _STORAGE_DTYPES:
            raise ConfigError(f"residual dtype must be one of {[str(d) for d in _STORAGE_DTYPES]}, got {self.dtype}")


@dataclass(frozen=True)
class ErrorFeedbackStatistics:
    """A snapshot of the stored state."""

    keys: int  # number of keys with a residual
    residual_elements: int  # total elements over all residuals
    residual_norm: float  # L2 norm of all residuals together
    velocity_norm: float  # L2 norm of all velocities together (0.0 without momentum)


class ErrorFeedback:
    """Per-key residuals (and DGC velocities) for error-compensated compression."""

    def __init__(self, config: ErrorFeedbackConfig | None = None) -> None:
        self.config = config if config is not None else ErrorFeedbackConfig()
        self.config.validate()
        self._residuals: dict[str, torch.Tensor] = {}
        self._velocities: dict[str, torch.Tensor] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        # compensate() -> update(): the float32 value being sent, per key.
        self._pending: dict[str, torch.Tensor] = {}

    # --- the sender side ---------------------------------------------------------------------

    def encode(self, key: str, tensor: torch.Tensor, codec: Codec) -> bytes:
        """Compensate ``tensor`` with ``key``'s residual, encode it, and keep the new error."""
        flat = self._checked(key, tensor)
        self._check_not_pending(key)
        residual = self._residual(key, tensor.shape)
        try:
            source = self._advance_velocity(key, flat)
            work = residual if residual.dtype == torch.float32 else residual.float()
            payload = codec.encode_with_feedback(source.view(tensor.shape), work)  # keeps the shape
            if work is not residual:
                residual.copy_(work)
            if self.config.factor_masking:
                decoded = codec.decode(payload, max_elements=flat.numel()).reshape(-1)
                self._mask(key, decoded)
        except BaseException:
            self.reset(key)
            raise
        return payload

    def compensate(self, key: str, tensor: torch.Tensor) -> torch.Tensor:
        """Return the flat float32 value to send: residual + tensor (or + velocity).

        Compress the result however you like, then call ``update(key, decoded)`` with what the
        receiver will decode; until then the key is pending (``encode`` and ``compensate`` on it
        raise). The returned tensor may be the residual buffer itself: do not modify it.
        """
        flat = self._checked(key, tensor)
        self._check_not_pending(key)
        residual = self._residual(key, tensor.shape)
        source = self._advance_velocity(key, flat)
        work = residual if residual.dtype == torch.float32 else residual.float()
        work.add_(source)
        self._pending[key] = work
        return work

    def update(self, key: str, sent_decoded: torch.Tensor) -> None:
        """Finish a ``compensate``: the residual becomes what was compensated minus what was sent."""
        if key not in self._pending:
            raise ValueError(f"update({key!r}) without a compensate() before it")
        work = self._pending[key]
        flat = self._flat_finite(key, sent_decoded)
        if flat.numel() != work.numel():
            raise ValueError(f"key {key!r}: {flat.numel()} elements sent, {work.numel()} compensated")
        work.sub_(flat)
        residual = self._residuals[key]
        if work is not residual:
            residual.copy_(work)
        if self.config.factor_masking:
            self._mask(key, flat)
        del self._pending[key]

    # --- ranges of one long vector ----------------------------------------------------------

    def encode_range(
        self, key: str, numel: int, start: int, values: torch.Tensor, codec: Codec, *, restart: bool = False
    ) -> bytes:
        """Encode ``values`` plus ``key``'s residual at ``[start, start + values.numel())`` by the codec's fused
        kernel, and keep the new error there; ``key`` holds one flat vector of ``numel`` elements.

        ``restart`` drops that slice's old residual first (``values`` already carry it, or it went into a
        result nobody uses). ``values`` are not checked for NaN: the caller's vector is. A codec failure
        clears the slice (a half-updated residual must not be reused) and propagates.
        """
        view = self._range(key, numel, start, values.numel())
        work = view if view.dtype == torch.float32 else view.float()
        if restart:
            work.zero_()
        try:
            payload = codec.encode_with_feedback(values, work)
        except BaseException:
            view.zero_()
            raise
        if work is not view:
            view.copy_(work)
        return payload

    def take_range(self, key: str, numel: int, start: int, values: torch.Tensor) -> torch.Tensor:
        """``values`` plus ``key``'s residual at that slice, as a new float32 tensor; the slice is cleared
        (the caller uses the sum exactly: nothing is lost)."""
        view = self._range(key, numel, start, values.numel())
        total = torch.add(values.reshape(-1), view, out=empty(values.numel()))
        view.zero_()
        return total

    def add_range(self, key: str, numel: int, start: int, out: torch.Tensor) -> None:
        """``out += `` ``key``'s residual at ``[start, start + out.numel())``; the residual is unchanged."""
        out.add_(self._range(key, numel, start, out.numel()))

    def clear_range(self, key: str, numel: int, start: int, stop: int) -> None:
        """Zero ``key``'s residual at ``[start, stop)`` (what it kept was spent another way)."""
        self._range(key, numel, start, stop - start).zero_()

    # --- inspection and state ----------------------------------------------------------------

    def residual(self, key: str) -> torch.Tensor:
        """A flat float32 copy of ``key``'s residual; ``KeyError`` for an unknown key."""
        if key not in self._residuals:
            raise KeyError(f"no residual for key {key!r}")
        return self._residuals[key].float().clone()

    def velocity(self, key: str) -> torch.Tensor:
        """A flat float32 copy of ``key``'s velocity (momentum > 0 only); ``KeyError`` otherwise."""
        if key not in self._velocities:
            raise KeyError(f"no velocity for key {key!r}")
        return self._velocities[key].float().clone()

    def keys(self) -> list[str]:
        """Every key with state, sorted."""
        return sorted(self._residuals)

    def reset(self, key: str | None = None) -> None:
        """Forget ``key``'s state (unknown keys are fine), or every key's when ``key`` is None."""
        for store in (self._residuals, self._velocities, self._shapes, self._pending):
            if key is None:
                store.clear()
            else:
                store.pop(key, None)

    def statistics(self) -> ErrorFeedbackStatistics:
        """Key count, residual size and the L2 norms of residuals and velocities."""
        # Lists first: a reader on another thread then never iterates a dict that an encode extends.
        residuals, velocities = list(self._residuals.values()), list(self._velocities.values())
        return ErrorFeedbackStatistics(
            keys=len(residuals),
            residual_elements=sum(r.numel() for r in residuals),
            residual_norm=_norm(residuals),
            velocity_norm=_norm(velocities),
        )

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Copies of the state: ``residual/<key>``, ``velocity/<key>``, ``shape/<key>`` (int64), all 1-D.

        Loads with ``torch.load(..., weights_only=True)``. Raises ``RuntimeError`` while a key is
        pending between ``compensate`` and ``update``.
        """
        if self._pending:
            raise RuntimeError(f"keys {sorted(self._pending)} are between compensate() and update()")
        state: dict[str, torch.Tensor] = {}
        for key, residual in self._residuals.items():
            state[f"residual/{key}"] = residual.clone()
            state[f"shape/{key}"] = torch.tensor(self._shapes[key], dtype=torch.int64)
            if key in self._velocities:
                state[f"velocity/{key}"] = self._velocities[key].clone()
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Replace all state with ``state`` (as ``state_dict`` makes it); ``ValueError`` if malformed.

        Everything is checked before anything changes. Velocities in the state need momentum > 0;
        a key without one starts from a zero velocity.
        """
        residuals, velocities, loaded_shapes = self._parsed(state)
        dtype = self.config.dtype
        self.reset()
        self._shapes = loaded_shapes
        self._residuals = {k: v.detach().to("cpu", dtype, copy=True) for k, v in residuals.items()}
        self._velocities = {k: v.detach().to("cpu", dtype, copy=True) for k, v in velocities.items()}

    def check_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Raise the ``ValueError`` that ``load_state_dict(state)`` would raise, without loading anything."""
        self._parsed(state)

    # --- internals ---------------------------------------------------------------------------

    def _parsed(self, state: dict[str, torch.Tensor]) -> tuple[_Tensors, _Tensors, dict[str, tuple[int, ...]]]:
        """Residuals, velocities and shapes by key, after checking everything ``load_state_dict`` needs."""
        if not isinstance(state, dict):
            raise ValueError(f"error-feedback state must be a dict, got {type(state).__name__}")
        parts: dict[str, dict[str, torch.Tensor]] = {prefix: {} for prefix in _PREFIXES}
        for name, value in state.items():
            prefix = next((p for p in _PREFIXES if isinstance(name, str) and name.startswith(p)), None)
            if prefix is None:
                raise ValueError(f"unexpected entry {name!r} in error-feedback state")
            if not isinstance(value, torch.Tensor) or value.dim() != 1:
                raise ValueError(f"state entry {name!r} must be a 1-D tensor, got {_describe(value)}")
            parts[prefix][name[len(prefix) :]] = value
        residuals, velocities, shapes = parts["residual/"], parts["velocity/"], parts["shape/"]
        if velocities and self.config.momentum == 0.0:
            raise ValueError("state holds velocities but this ErrorFeedback has momentum 0")
        if set(shapes) != set(residuals) or not set(velocities) <= set(residuals):
            raise ValueError("every residual needs a shape, and every shape and velocity a residual")
        loaded_shapes: dict[str, tuple[int, ...]] = {}
        for key, residual in residuals.items():
            shape = shapes[key]
            if shape.dtype != torch.int64 or bool((shape < 0).any()):
                raise ValueError(f"shape of {key!r} must hold non-negative int64 values, got {shape.tolist()}")
            loaded_shapes[key] = tuple(int(s) for s in shape.tolist())
            for kind, tensor in (("residual", residual), ("velocity", velocities.get(key))):
                if tensor is None:
                    continue
                if not tensor.is_floating_point() or not bool(torch.isfinite(tensor).all()):
                    raise ValueError(f"{kind} of {key!r} must be a finite floating tensor")
                if tensor.numel() != math.prod(loaded_shapes[key]):
                    raise ValueError(f"{kind} of {key!r} has {tensor.numel()} elements, shape {loaded_shapes[key]}")
        return residuals, velocities, loaded_shapes

    def _checked(self, key: str, tensor: torch.Tensor) -> torch.Tensor:
        """The flat input, after checking it fits ``key`` and is finite (before any state changes)."""
        flat = self._flat_finite(key, tensor).float()  # a no-op for float32
        shape = self._shapes.get(key)
        if shape is not None and tuple(tensor.shape) != shape:
            raise ValueError(
                f"key {key!r} holds state for shape {shape} ({math.prod(shape)} elements), "
                f"got a tensor of shape {tuple(tensor.shape)} ({tensor.numel()} elements); "
                "use a distinct key per tensor, or reset(key) first"
            )
        return flat

    @staticmethod
    def _flat_finite(key: str, tensor: torch.Tensor) -> torch.Tensor:
        if not isinstance(key, str):
            raise TypeError(f"keys are strings, got {type(key).__name__}")
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"expected a tensor for key {key!r}, got {type(tensor).__name__}")
        if not tensor.is_floating_point() or tensor.device.type != "cpu":
            raise ValueError(f"key {key!r}: need a floating CPU tensor, got {tensor.dtype} on {tensor.device}")
        flat = tensor.detach().reshape(-1)
        if flat.numel() and not all_finite(flat):
            bad = int((~torch.isfinite(flat)).sum())  # the slow count only on the error path
            raise ValueError(f"key {key!r}: {bad} of {flat.numel()} input values are NaN or infinite")
        return flat

    def _check_not_pending(self, key: str) -> None:
        if key in self._pending:
            raise RuntimeError(f"key {key!r} was compensated but not updated; call update() or reset() first")

    def _residual(self, key: str, shape: torch.Size) -> torch.Tensor:
        residual = self._residuals.get(key)
        if residual is None:
            size, dtype = math.prod(shape), self.config.dtype
            residual = zeros(size) if dtype == torch.float32 else torch.zeros(size, dtype=dtype)
            self._residuals[key] = residual
            self._shapes[key] = tuple(shape)
        return residual

    def _range(self, key: str, numel: int, start: int, length: int) -> torch.Tensor:
        """The slice ``[start, start + length)`` of ``key``'s residual over ``numel`` elements (created at zero)."""
        if self.config.momentum != 0.0:
            raise ValueError("ranges of a vector are kept without momentum: a range may be encoded again")
        self._check_not_pending(key)
        shape = self._shapes.get(key)
        if shape is not None and shape != (numel,):
            raise ValueError(f"key {key!r} holds state for shape {shape}, not a vector of {numel} elements")
        if not 0 <= start <= start + length <= numel:
            raise ValueError(f"range [{start}, {start + length}) is outside key {key!r}'s {numel} elements")
        return self._residual(key, torch.Size((numel,)))[start : start + length]

    def _advance_velocity(self, key: str, flat: torch.Tensor) -> torch.Tensor:
        """``u = m * u + g`` (float32) and return it; the input itself without momentum."""
        momentum = self.config.momentum
        if momentum == 0.0:
            return flat
        velocity = self._velocities.get(key)
        if velocity is None:
            velocity = self._velocities[key] = torch.zeros(flat.numel(), dtype=self.config.dtype)
        work = velocity if velocity.dtype == torch.float32 else velocity.float()
        work.mul_(momentum).add_(flat)
        if work is not velocity:
            velocity.copy_(work)
        return work

    def _mask(self, key: str, decoded: torch.Tensor) -> None:
        """DGC momentum factor masking: zero the velocity where ``decoded`` is non-zero."""
        velocity = self._velocities.get(key)
        if velocity is not None:
            velocity.masked_fill_(decoded != 0, 0.0)


def _norm(tensors: Iterable[torch.Tensor]) -> float:
    total = 0.0
    for tensor in tensors:
        total += float(torch.linalg.vector_norm(tensor, dtype=torch.float64)) ** 2
    return math.sqrt(total)


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dim()}-D tensor of shape {tuple(value.shape)}"
    return type(value).__name__
