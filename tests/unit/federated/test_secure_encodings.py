"""What secure aggregation's encodings deliver over many rounds, through the real client encoder.

With error feedback, whatever an encoding drops is sent later, so the sum of the decoded aggregates
should track the sum of the true (weighted) means. The shared-scale encoding sends every coordinate
each round and tracks it closely; the fixed-point encoding of a 10% subset leaves most of every
round's update waiting in the residuals.
"""

from __future__ import annotations

import numpy as np
import torch

from swarmnet.coordinator.proto import federated_pb2 as pb
from swarmnet.federated.secagg.scaled import default_scales
from swarmnet.federated.secure_update import decode_secure, indices_from_bytes, scales_to_bytes, secure_weight, subset
from swarmnet.federated.update_encoder import UpdateEncoder

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
