"""One open round and the checks every submitted update passes before it counts.

Checks go cheapest first and nothing is decoded before the signature verified, so a flood of
junk costs the coordinator a hash and a signature check per request, and a rejected update
leaves the round exactly as it was.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import grpc
import numpy as np
import torch

from swarmnet.compression import decode
from swarmnet.coordinator.rejection import Rejected
from swarmnet.coordinator.secagg_round import SecAggRound
from swarmnet.coordinator.store import ClientRecord
from swarmnet.errors import CodecError
from swarmnet.federated.secure_update import from_wire
from swarmnet.federated.signing import update_message
from swarmnet.identity import verify_signature
from swarmnet.proto import federated_pb2 as pb

__all__ = ["MAX_SAMPLES", "OpenRound", "Submission", "check_header", "check_update"]

# A sanity bound on the wire. What keeps a large claim from dominating the weighted average is the
# cap on each claim's weight (``strategies/weights.py``), not this.
# A reported training loss is shown, never trusted: a larger one (or NaN) counts as unknown, so one
# client's 1e308 cannot turn the round's mean loss into Inf in the history.
MAX_REPORTED_LOSS = 1e9
MAX_SAMPLES = 10**12


@dataclass(frozen=True)
class Submission:
    """An accepted update."""

    client_id: str
    samples: int
    nbytes: int
    train_loss: float
    delta: torch.Tensor | None = None  # decoded flat delta (plain aggregation)
    masked: np.ndarray | None = None  # masked field words (secure aggregation)


@dataclass
class OpenRound:
    """The round being run now."""

    number: int
    version: int
    nonce: bytes
    selected: tuple[str, ...]
    config: pb.RoundConfig
    opened: float  # monotonic clock
    deadline: float  # monotonic clock: last moment an update is accepted
    length: int  # elements of the flat adapter
    secagg: SecAggRound | None = None
    indices: torch.Tensor | None = None  # secure aggregation's coordinate subset
    submissions: dict[str, Submission] = field(default_factory=dict)
    finished: bool = False  # aggregated or failed; waiting calls are released
    sample_rate: float = 1.0  # q: each of the population's clients was in the sample with this probability
    population: int | None = None  # the active clients sampled from (None: the selected ones)

    @property
    def expected_participants(self) -> float:
        """``q`` times the population: how many clients the sampling draws on average (fixed before the draw)."""
        population = len(self.selected) if self.population is None else self.population
        return max(self.sample_rate * population, 1.0)

    def all_in(self) -> bool:
        """Whether no selected client is still expected to submit."""
        if self.secagg is not None:
            return not self.secagg.expecting() if self.secagg.phase == "collect" else False
        return set(self.submissions) >= set(self.selected)


def check_update(
    round_: OpenRound, record: ClientRecord, header: pb.UpdateHeader, payload: bytes, now: float
) -> Submission:
    """Validate an update against the open round; ``Rejected`` with the right status otherwise."""
    check_header(round_, record, header, now)
    digest = hashlib.sha256(payload).digest()
    if len(payload) != header.payload_size or digest != header.payload_sha256:
        raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, "payload size or SHA-256 differs from the header")
    message = update_message(
        round_nonce=round_.nonce,
        round_=header.round,
        global_version=header.global_version,
        samples=header.samples,
        encoding=header.encoding,
        payload_size=header.payload_size,
        payload_sha256=header.payload_sha256,
    )
    if not verify_signature(record.public_key, header.signature, message):
        raise Rejected(grpc.StatusCode.UNAUTHENTICATED, "update signature missing or invalid for this round")
    loss = header.train_loss if abs(header.train_loss) <= MAX_REPORTED_LOSS else float("nan")  # NaN fails too
    if round_.secagg is not None:
        return Submission(record.client_id, header.samples, len(payload), loss, masked=_masked_words(round_, payload))
    return Submission(record.client_id, header.samples, len(payload), loss, delta=_decoded_delta(round_, payload))


def check_header(round_: OpenRound, record: ClientRecord, header: pb.UpdateHeader, now: float) -> None:
    """The checks that need only the header: run before the payload streams in."""
    if round_.finished or header.round != round_.number:
        raise Rejected(
            grpc.StatusCode.FAILED_PRECONDITION, f"round {header.round} is not open (round {round_.number} is)"
        )
    if record.client_id not in round_.selected:
        raise Rejected(grpc.StatusCode.PERMISSION_DENIED, f"client was not selected for round {round_.number}")
    if record.client_id in round_.submissions:
        raise Rejected(grpc.StatusCode.ALREADY_EXISTS, f"an update for round {round_.number} was already accepted")
    if now > round_.deadline:
        raise Rejected(grpc.StatusCode.DEADLINE_EXCEEDED, f"round {round_.number} stopped taking updates")
    if header.global_version != round_.version:
        raise Rejected(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"update is against adapter version {header.global_version}; the round trains version {round_.version}",
        )
    if not 0 < header.samples <= MAX_SAMPLES:
        raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, f"samples must be in [1, {MAX_SAMPLES}]")
    expected = "secagg" if round_.secagg is not None else "codec"
    if header.encoding != expected:
        raise Rejected(
            grpc.StatusCode.INVALID_ARGUMENT, f"this round takes {expected!r} updates, not {header.encoding!r}"
        )


def _decoded_delta(round_: OpenRound, payload: bytes) -> torch.Tensor:
    try:
        delta = decode(payload, max_elements=round_.length)
    except CodecError as error:
        raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, f"malformed update payload: {error}") from error
    if delta.numel() != round_.length:
        raise Rejected(
            grpc.StatusCode.INVALID_ARGUMENT, f"update has {delta.numel()} values; the adapter has {round_.length}"
        )
    delta = delta.reshape(-1).to(torch.float32)
    if not bool(torch.isfinite(delta).all()):
        raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, "update contains NaN or Inf")
    return delta


def _masked_words(round_: OpenRound, payload: bytes) -> np.ndarray:
    assert round_.secagg is not None
    try:
        return from_wire(payload, round_.config.secagg_bits, round_.secagg.length)
    except ValueError as error:
        raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, f"malformed masked update: {error}") from error
