"""The round engine: wait for clients, sample, open, collect (or run the secure phases), close.

One asyncio task drives the rounds; the servicer's handlers only record what arrives and wait
on the same condition variable, so every state change happens on the event loop and needs no
lock. Aggregation and the durable save run in a worker thread. Each round ends with a save,
completed or failed, so a restart resumes at the round after the last one that ended.

Where each part lives: the condition variable in ``rounds_signal.py``; the draw, the round's config and
its secure subset in ``rounds_open.py`` and ``rounds_config.py``; gathering updates in
``rounds_phases.py``; the aggregate, record and saved state in ``rounds_close.py``; the clients' requests
in ``rounds_requests.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time

from swarmnet.coordinator.config import CoordinatorConfig
from swarmnet.coordinator.history import RoundRecord
from swarmnet.coordinator.open_round import OpenRound, Submission
from swarmnet.coordinator.registry import ClientRegistry
from swarmnet.coordinator.rounds_close import aggregate_in_thread, closed_state, round_record, updated_state
from swarmnet.coordinator.rounds_open import RoundOpener
from swarmnet.coordinator.rounds_phases import collect, secure_phases
from swarmnet.coordinator.rounds_requests import RoundRequests
from swarmnet.coordinator.rounds_signal import IDLE_RECHECK_S, RoundSignal
from swarmnet.coordinator.sampling import Sample
from swarmnet.coordinator.store import CoordinatorState, CoordinatorStore
from swarmnet.federated.privacy import PrivacyAccountant
from swarmnet.proto import federated_pb2 as pb

__all__ = ["RoundEngine"]

logger = logging.getLogger(__name__)


class RoundEngine:
    """Runs rounds over a ``CoordinatorState``; the servicer calls its ``task``/``submit``/``secagg``."""

    def __init__(
        self, config: CoordinatorConfig, store: CoordinatorStore, registry: ClientRegistry, state: CoordinatorState
    ) -> None:
        self.config = config
        self.store = store
        self.registry = registry
        self.state = state
        self.round: OpenRound | None = None
        self.phase = "waiting"
        self.accountant = PrivacyAccountant()
        if state.accountant:
            self.accountant.load_state_dict(dict(state.accountant))
        self._signal = RoundSignal()
        self._opener = RoundOpener(config, registry)
        self._requests = RoundRequests(self, self._signal)

    # -- lifecycle ---------------------------------------------------------------------------
    def done(self) -> bool:
        """Whether the configured number of rounds has completed."""
        limit = self.config.rounds.rounds
        return limit > 0 and sum(r.outcome == "completed" for r in self.state.history) >= limit

    async def run(self) -> None:
        """Run rounds until ``stop()`` or the round limit."""
        while not self._signal.stopping and not self.done():
            if not await self._signal.wait(
                lambda: len(self.registry.active()) >= self.config.rounds.min_clients, None
            ):
                break
            sample, rng = self._opener.draw(self.state.next_round)
            most = self.config.secagg.max_clients if self.config.rounds.secure_aggregation else None
            problem = sample.problem(self.config.rounds.min_participants, most)
            if problem:  # nothing is run or released; the next round draws afresh after a pause
                await self._refuse(sample, problem)
                continue
            round_ = self._opener.open(sample, rng, self.state)
            self.round, self.phase = round_, "advertise" if round_.secagg else "collect"
            try:
                await self._run_round(round_)
            except Exception as error:  # a bug must cost one round, not the coordinator
                logger.exception("round %d failed with an internal error", round_.number)
                await self._close(round_, f"internal error: {type(error).__name__}: {error}"[:500], aggregate=False)
        await self.notify()

    async def stop(self) -> None:
        """Make ``run`` return at its next wait (an open round is abandoned, not saved)."""
        await self._signal.stop()

    async def notify(self) -> None:
        """Wake every waiter to re-check its condition."""
        await self._signal.notify()

    # -- one round -------------------------------------------------------------------------------
    async def _refuse(self, sample: Sample, problem: str) -> None:
        """Record a round whose draw cannot run (no task goes out), then pause before the next draw."""
        round_ = self._opener.refused(sample, self.state)
        logger.info("round %d not run: %s", round_.number, problem)
        await self._close(round_, problem, aggregate=False)
        await self._signal.wait(lambda: self._signal.stopping, time.monotonic() + IDLE_RECHECK_S)

    async def _run_round(self, round_: OpenRound) -> None:
        def enter(phase: str) -> None:
            self.phase = phase

        await self.notify()
        settings = self.config.rounds
        if round_.secagg:
            reason = await secure_phases(round_, self._signal, settings, enter)
        else:
            reason = await collect(round_, self._signal, settings)
        if self._signal.stopping:
            return
        record = await self._close(round_, reason)
        logger.info(
            "round %d %s%s: %d contributors, %d B uplink, %.2f s",
            record.round,
            record.outcome,
            f" ({record.reason})" if record.reason else "",
            len(record.contributors),
            record.uplink_bytes,
            record.seconds,
        )

    async def _close(self, round_: OpenRound, reason: str, aggregate: bool = True) -> RoundRecord:
        state, result, privacy = self.state, None, self.config.privacy
        self.phase = "aggregating"
        if aggregate and not reason:
            result, reason = await aggregate_in_thread(round_, state, self.config)
        if result is not None:
            state = updated_state(state, result)
            self._opener.remember(round_, result.mean, result.next_scales)
            if privacy is not None:  # one released aggregate, at the rate its participants were drawn with
                self.accountant.step(privacy.noise_multiplier, round_.sample_rate)
        record = round_record(round_, reason, result, state.version, self.epsilon())
        state = closed_state(state, record, self.accountant.state_dict() if privacy is not None else {})
        await asyncio.to_thread(self.store.save, state)
        self.state, round_.finished, self.round, self.phase = state, True, None, "waiting"
        await self.notify()
        return record

    def epsilon(self) -> float:
        """Differential-privacy epsilon spent so far (0 without DP)."""
        privacy = self.config.privacy
        return 0.0 if privacy is None else float(self.accountant.epsilon(privacy.delta))

    # -- requests (``rounds_requests.py``) ---------------------------------------------------------
    async def task(self, client_id: str, wait_s: float) -> pb.TaskReply:
        """Long-poll for ``client_id``'s next task."""
        return await self._requests.task(client_id, wait_s)

    async def submit(self, submission: Submission) -> None:
        """Record an update that passed ``check_update`` (re-checked: the round may have moved on)."""
        await self._requests.submit(submission)

    async def secagg(self, client_id: str, request: pb.SecAggRequest) -> pb.SecAggReply:
        """Handle one secure-aggregation phase message; waits for the phase to close where needed."""
        return await self._requests.secagg(client_id, request)
