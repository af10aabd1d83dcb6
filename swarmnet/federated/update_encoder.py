"""A client's update on the way out: DP clipping and noise, compression, error feedback.

Error feedback lives on the client across rounds (CELLM / SCAFCOM style): whatever compression
drops this round (the coordinates top-k left out, the quantization error, the coordinates outside
secure aggregation's shared subset) is added to the next round's delta, so nothing is lost, only
delayed. Differential privacy clips before compression, so the residual never carries more than
the clipped update.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from swarmnet.compression import Codec, ErrorFeedback, TopKCodec, get_codec
from swarmnet.errors import ProtocolError
from swarmnet.federated.privacy import clip_update
from swarmnet.federated.randomness import Randomness
from swarmnet.federated.secagg.field import dequantize
from swarmnet.federated.secagg.scaled import ScaledEncoding
from swarmnet.federated.secure_update import (
    encode_values,
    field_config,
    indices_from_bytes,
    scaled_encoding,
    secure_weight,
    subset,
)
from swarmnet.proto import federated_pb2 as pb

__all__ = ["SecureValues", "UpdateEncoder", "codec_for"]

_KEY = "adapter"


def codec_for(config: pb.RoundConfig) -> Codec:
    """The codec a round asks for: ``topk`` at the round's ratio (int8 values), else by registry name."""
    if config.codec == "topk":
        return TopKCodec(f"topk{config.topk_ratio:g}", ratio=config.topk_ratio, selection="exact", values="int8")
    return get_codec(config.codec or "none")


@dataclass(frozen=True)
class SecureValues:
    """A delta encoded for secure aggregation, before masking."""

    words: np.ndarray  # uint32 field words, one per coordinate of the round's subset
    weight: float  # samples / samples_cap (1 when uniform)


class UpdateEncoder:
    """Turns a client's raw delta into what it sends, keeping the error-feedback residual."""

    def __init__(self, insecure_deterministic_seed: int | None = None) -> None:
        """Noise and stochastic rounding from the OS; ``insecure_deterministic_seed`` (experiments and
        tests only) makes them one seeded stream instead, which anyone knowing the seed can replay."""
        self.feedback = ErrorFeedback()
        self._randomness = Randomness(insecure_deterministic_seed)
        self._seeded = self._randomness.generator() if self._randomness.deterministic else None

    def _generator(self) -> torch.Generator:
        return self._seeded if self._seeded is not None else self._randomness.generator()

    def privatize(self, delta: torch.Tensor, config: pb.RoundConfig) -> torch.Tensor:
        """Clip to the round's DP norm and add this client's share of the noise (no-ops without DP)."""
        if config.dp_clip_norm > 0:
            delta = clip_update(delta, config.dp_clip_norm)[0]
        if config.dp_noise_std > 0:
            if self._seeded is not None:
                noise = torch.randn(delta.numel(), generator=self._seeded) * config.dp_noise_std
            else:
                noise = self._randomness.gaussian(delta.numel(), config.dp_noise_std)
            delta = delta + noise.reshape(delta.shape)
        return delta

    def encode(self, delta: torch.Tensor, config: pb.RoundConfig) -> bytes:
        """A compressed payload of ``delta`` (residual added and updated when the round uses EF)."""
        codec = codec_for(config)
        if config.error_feedback and config.codec != "none":
            return self.feedback.encode(_KEY, delta, codec)
        return codec.encode(delta)

    def encode_secure(self, delta: torch.Tensor, config: pb.RoundConfig, samples: int) -> SecureValues:
        """Field words of ``weight * (delta + residual)`` on the round's subset; the rest stays in the residual."""
        weight = secure_weight(samples, config.samples_cap)
        if config.secagg_indices:
            try:
                indices = indices_from_bytes(config.secagg_indices, delta.numel())
            except ValueError as error:
                raise ProtocolError(f"the coordinator sent a bad secure-aggregation subset: {error}") from error
        else:
            indices = subset(delta.numel(), config.secagg_density, config.secagg_seed)
        scaled = _scaled_encoding(config, delta.numel())
        compensated = self.feedback.compensate(_KEY, delta) if config.error_feedback else delta.reshape(-1)
        try:
            if scaled is not None:  # every coordinate's integer times the round's shared scale
                words, values = scaled.encode(compensated[indices] * weight, indices, compensated * weight, None)
            else:
                field = field_config(config.secagg_bits, config.secagg_clip, config.secagg_max_clients)
                words = encode_values(compensated[indices] * weight, field, self._generator())
                values = dequantize(words, field)
        except ValueError:
            self.feedback.reset(_KEY)  # a diverged update: start the residual afresh, not half-updated
            raise
        sent = torch.zeros_like(compensated)
        sent[indices] = values / weight
        if config.error_feedback:
            self.feedback.update(_KEY, sent)
        return SecureValues(words=words, weight=weight)


def _scaled_encoding(config: pb.RoundConfig, length: int) -> ScaledEncoding | None:
    """The round's shared-scale settings, or None for the fixed-point encoding."""
    if config.secagg_encoding in ("", "fixed"):
        return None
    if config.secagg_encoding != "scaled":
        raise ProtocolError(f"the coordinator asked for an unknown secure encoding {config.secagg_encoding!r}")
    try:
        return scaled_encoding(config, length)
    except ValueError as error:
        raise ProtocolError(f"the coordinator sent unusable shared scales: {error}") from error
