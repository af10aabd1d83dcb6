"""What secure aggregation's encodings deliver over many rounds, through the real client encoder.

With error feedback, whatever an encoding drops is sent later, so the sum of the decoded aggregates
should track the sum of the true (weighted) means. The shared-scale encoding sends every coordinate
each round and tracks it closely; the fixed-point encoding of a 10% subset leaves most of every
round's update waiting in the residuals.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from swarmnet.coordinator.config import CoordinatorConfig, RoundSettings, SecAggSettings
from swarmnet.errors import ConfigError, ProtocolError
from swarmnet.federated.privacy import PrivacyConfig
from swarmnet.federated.secagg.packing import packed_words
from swarmnet.federated.secagg.scaled import default_scales
from swarmnet.federated.secure_update import decode_secure, indices_from_bytes, scales_to_bytes, secure_weight, subset
from swarmnet.federated.update_encoder import UpdateEncoder
from swarmnet.proto import federated_pb2 as pb

LENGTH, CLIENTS, ROUNDS = 4_000, 8, 30
SAMPLES = [40, 80, 120, 160, 200, 240, 280, 320]


def _deltas(round_: int) -> list[torch.Tensor]:
    """Sign-like client deltas (what a few AdamW steps give) around a direction that drifts."""
    generator = torch.Generator().manual_seed(round_)
    common = torch.sign(torch.randn(LENGTH, generator=torch.Generator().manual_seed(round_ // 10)))
    return [
        0.005 * torch.sign(common + 1.5 * torch.randn(LENGTH, generator=generator)) * (0.5 + i / CLIENTS)
        for i in range(CLIENTS)
    ]


def _config(encoding: str, round_: int, scales: torch.Tensor) -> pb.RoundConfig:
    config = pb.RoundConfig(
        secure_aggregation=True, error_feedback=True, participants=CLIENTS, samples_cap=max(SAMPLES),
        secagg_encoding=encoding, secagg_seed=round_, secagg_max_clients=16,
    )  # fmt: skip
    if encoding == "scaled":
        config.secagg_bits, config.secagg_levels, config.secagg_block, config.secagg_density = 32, 1, 512, 1.0
        config.secagg_scales = scales_to_bytes(scales)
    else:
        config.secagg_bits, config.secagg_clip, config.secagg_density = 16, 0.2, 0.1
    return config


def _tracking_error(encoding: str) -> float:
    """``|sum of decoded means - sum of true means| / |sum of true means|`` after ``ROUNDS`` rounds."""
    encoders = [UpdateEncoder() for _ in range(CLIENTS)]
    scales = default_scales(LENGTH, 512, 1e-3)
    truth, decoded = torch.zeros(LENGTH, dtype=torch.float64), torch.zeros(LENGTH, dtype=torch.float64)
    weights = [secure_weight(n, max(SAMPLES)) for n in SAMPLES]
    for round_ in range(ROUNDS):
        config = _config(encoding, round_, scales)
        deltas = _deltas(round_)
        words = [e.encode_secure(d, config, n).words for e, d, n in zip(encoders, deltas, SAMPLES, strict=True)]
        total = np.zeros_like(words[0])
        for w in words:
            total += w  # the unmasked field sum: masks cancel exactly, tested elsewhere
        indices = (
            indices_from_bytes(config.secagg_indices, LENGTH) if config.secagg_indices
            else subset(LENGTH, config.secagg_density, config.secagg_seed)
        )  # fmt: skip
        values, next_scales = decode_secure(total, config, indices, LENGTH, CLIENTS)
        decoded[indices] += values.double() / sum(weights)
        truth += sum(w * d.double() for w, d in zip(weights, deltas, strict=True)) / sum(weights)
        if next_scales is not None:
            scales = next_scales
    return float((decoded - truth).norm() / truth.norm())


def test_shared_scales_deliver_nearly_all_of_the_updates() -> None:
    scaled, fixed_subset = _tracking_error("scaled"), _tracking_error("fixed")
    assert scaled < 0.1, scaled
    assert scaled < fixed_subset / 3, (scaled, fixed_subset)


def test_unusable_scales_from_the_coordinator_are_refused_and_nothing_is_lost() -> None:
    encoder, delta = UpdateEncoder(), torch.full((LENGTH,), 0.01)
    good = _config("scaled", 0, default_scales(LENGTH, 512, 1e-2))
    bad = [
        replace_config(good, secagg_scales=scales_to_bytes(torch.full((8,), float("nan")))),
        replace_config(good, secagg_scales=scales_to_bytes(torch.ones(3))),  # 8 blocks need 8 scales
        replace_config(good, secagg_scales=b"\x00\x01"),
        replace_config(good, secagg_levels=0),
        replace_config(good, secagg_encoding="float64"),
    ]
    for config in bad:
        with pytest.raises(ProtocolError):
            encoder.encode_secure(delta, config, SAMPLES[0])
    values = encoder.encode_secure(delta, good, max(SAMPLES))  # the residual was never left half-updated
    assert values.words.shape == (packed_words(LENGTH, 5) + 8,)  # 8 clients at 1 level: 5-bit slots


def test_differential_privacy_needs_the_fixed_encoding(tmp_path: Path) -> None:
    privacy = PrivacyConfig(clip_norm=0.1, noise_multiplier=1.0, placement="distributed")
    rounds = RoundSettings(secure_aggregation=True)
    with pytest.raises(ConfigError, match="fixed"):
        CoordinatorConfig(state_dir=tmp_path, rounds=rounds, privacy=privacy).validate()
    fixed = CoordinatorConfig(
        state_dir=tmp_path, rounds=rounds, privacy=privacy, secagg=SecAggSettings(encoding="fixed")
    )
    fixed.validate()
    CoordinatorConfig(state_dir=tmp_path, rounds=rounds).validate()  # scaled without DP
    subset = SecAggSettings(encoding="fixed", density=0.1)  # unsent coordinates would arrive later, unclipped
    with pytest.raises(ConfigError, match="density"):
        CoordinatorConfig(state_dir=tmp_path, rounds=rounds, privacy=privacy, secagg=subset).validate()


def replace_config(config: pb.RoundConfig, **fields: object) -> pb.RoundConfig:
    """A copy of ``config`` with ``fields`` set."""
    copy = pb.RoundConfig()
    copy.CopyFrom(config)
    for name, value in fields.items():
        setattr(copy, name, value)
    return copy
