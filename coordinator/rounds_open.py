"""How a round opens (``rounds.py``): who is drawn, what the round asks, and which coordinates a secure
round sends, steered by what the coordinator carries from one secure round to the next."""

from __future__ import annotations

import logging
import random
import time

import torch

from swarmnet.coordinator.config import CoordinatorConfig
from swarmnet.coordinator.open_round import OpenRound
from swarmnet.coordinator.registry import ClientRegistry
from swarmnet.coordinator.rounds_config import round_config
from swarmnet.coordinator.sampling import Sample, draw_sample
from swarmnet.coordinator.secagg_round import SecAggRound
from swarmnet.coordinator.store import CoordinatorState
from swarmnet.federated.randomness import Randomness
from swarmnet.federated.secagg.scaled import default_scales
from swarmnet.federated.secure_round import secagg_context
from swarmnet.federated.secure_update import indices_to_bytes, informed_subset, secure_words
from swarmnet.proto import federated_pb2 as pb

__all__ = ["RoundOpener"]

logger = logging.getLogger(__name__)


class RoundOpener:
    """Draws and opens rounds; keeps the secure-subset scores and the shared scales between rounds."""

    def __init__(self, config: CoordinatorConfig, registry: ClientRegistry) -> None:
        self._config, self._registry = config, registry
        self._randomness = Randomness(config.insecure_deterministic_seed)
        if self._randomness.deterministic:
            logger.warning(self._randomness.warning())
        # What each coordinate's aggregate was when last sent (known to the coordinator anyway): it
        # steers the next secure subset. The first secure round sends every coordinate, so every
        # score starts informed; not persisted, so a restart repeats that dense round once.
        self._scores: torch.Tensor | None = None
        # The shared scales of the next secure round (scaled encoding), from the magnitudes the last
        # one summed; None: SecAggSettings.initial_scale (first round, or after a restart).
        self._scales: torch.Tensor | None = None

    def draw(self, number: int) -> tuple[Sample, random.Random]:
        """Round ``number``'s participants (``sampling.py``), and the generator its secure subset draws from."""
        rng = self._randomness.rng(number)  # the draw, then the round's secure subset
        poisson = self._config.privacy is not None
        return draw_sample(self._registry.active(), self._config.rounds.clients_per_round, poisson, rng), rng

    def open(self, sample: Sample, rng: random.Random, state: CoordinatorState) -> OpenRound:
        """Round ``state.next_round`` of ``sample``, open for its clients from now."""
        number, now, length = state.next_round, time.monotonic(), state.schema.numel
        config = round_config(self._config, self._registry, sample.selected, rng, lambda: self._shared_scales(length))
        round_ = OpenRound(
            number=number,
            version=state.version,
            nonce=self._registry.round_nonce(number, state.version),
            selected=sample.selected,
            config=config,
            opened=now,
            deadline=now + self._config.rounds.round_timeout_s,
            length=length,
            sample_rate=sample.rate,
            population=sample.population,
        )
        if self._config.rounds.secure_aggregation:
            self._secure(round_, config)
        logger.info(
            "round %d opened: %d clients selected of %d active", number, len(sample.selected), sample.population
        )
        return round_

    @staticmethod
    def refused(sample: Sample, state: CoordinatorState) -> OpenRound:
        """The record-only round of a draw that cannot run: no task goes out for it."""
        now = time.monotonic()
        return OpenRound(
            number=state.next_round, version=state.version, nonce=b"", selected=sample.selected,
            config=pb.RoundConfig(), opened=now, deadline=now, length=state.schema.numel,
            sample_rate=sample.rate, population=sample.population,
        )  # fmt: skip

    def remember(self, round_: OpenRound, mean: torch.Tensor, next_scales: torch.Tensor | None) -> None:
        """Update the secure-subset scores with the coordinates this round sent, and the shared scales."""
        if round_.indices is None:
            return
        if next_scales is not None:
            self._scales = next_scales
        if self._scores is None or self._scores.numel() != mean.numel():
            self._scores = mean.abs()
        else:
            self._scores[round_.indices] = mean[round_.indices].abs()

    def _secure(self, round_: OpenRound, config: pb.RoundConfig) -> None:
        """Choose the secure round's coordinates and set up its phases."""
        length = round_.length
        if self._scores is None:
            config.secagg_density = 1.0  # the dense first round: clients send all, scores get filled
        round_.indices = informed_subset(length, config.secagg_density, config.secagg_seed, self._scores)
        if round_.indices.numel() < length:
            config.secagg_indices = indices_to_bytes(round_.indices)
        context = secagg_context(self._config.run, round_.number, round_.nonce)
        words = secure_words(config, length, int(round_.indices.numel()))
        round_.secagg = SecAggRound(round_.selected, config.secagg_threshold, context, words)

    def _shared_scales(self, length: int) -> torch.Tensor:
        """What the next scaled secure round publishes: the last round's, or the initial scale."""
        if self._scales is not None:
            return self._scales
        secagg = self._config.secagg
        return default_scales(length, secagg.block, secagg.initial_scale)
