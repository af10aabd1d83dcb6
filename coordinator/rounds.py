"""The round engine: wait for clients, sample, open, collect (or run the secure phases), close.

One asyncio task drives the rounds; the servicer's handlers only record what arrives and wait
on the same condition variable, so every state change happens on the event loop and needs no
lock. Aggregation and the durable save run in a worker thread. Each round ends with a save,
completed or failed, so a restart resumes at the round after the last one that ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable

import grpc
import torch

from swarmnet.coordinator.aggregation import NonFiniteAggregate, aggregate_round
from swarmnet.coordinator.config import CoordinatorConfig
from swarmnet.coordinator.history import RoundRecord
from swarmnet.coordinator.open_round import OpenRound, Submission
from swarmnet.coordinator.proto import federated_pb2 as pb
from swarmnet.coordinator.registry import ClientRegistry
from swarmnet.coordinator.rejection import Rejected
from swarmnet.coordinator.sampling import Sample, draw_sample
from swarmnet.coordinator.secagg_round import SecAggRound
from swarmnet.coordinator.store import CoordinatorState, CoordinatorStore
from swarmnet.coordinator.strategies import secure_samples_cap
from swarmnet.errors import ProtocolError
from swarmnet.federated.privacy import PrivacyAccountant
from swarmnet.federated.randomness import Randomness
from swarmnet.federated.secagg.scaled import default_scales
from swarmnet.federated.secagg.server import threshold_for
from swarmnet.federated.secure_round import secagg_context
from swarmnet.federated.secure_update import indices_to_bytes, informed_subset, scales_to_bytes, secure_words

__all__ = ["RoundEngine"]

logger = logging.getLogger(__name__)

_IDLE_RECHECK_S = 1.0  # the active set changes with time alone, so idle waits wake up this often


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
        self.randomness = Randomness(config.insecure_deterministic_seed)
        if self.randomness.deterministic:
            logger.warning(self.randomness.warning())
        if state.accountant:
            self.accountant.load_state_dict(dict(state.accountant))
        self.changed = asyncio.Condition()
        self._stopping = False
        # What each coordinate's aggregate was when last sent (known to the coordinator anyway): it
        # steers the next secure subset. The first secure round sends every coordinate, so every
        # score starts informed; not persisted, so a restart repeats that dense round once.
        self._scores: torch.Tensor | None = None
        # The shared scales of the next secure round (scaled encoding), from the magnitudes the last
        # one summed; None: SecAggSettings.initial_scale (first round, or after a restart).
        self._scales: torch.Tensor | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def done(self) -> bool:
        """Whether the configured number of rounds has completed."""
        limit = self.config.rounds.rounds
        return limit > 0 and sum(r.outcome == "completed" for r in self.state.history) >= limit

    async def run(self) -> None:
        """Run rounds until ``stop()`` or the round limit."""
        while not self._stopping and not self.done():
            if not await self._wait(lambda: len(self.registry.active()) >= self.config.rounds.min_clients, None):
                break
            rng = self.randomness.rng(self.state.next_round)  # the draw, then the round's secure subset
            sample = self._draw(rng)
            most = self.config.secagg.max_clients if self.config.rounds.secure_aggregation else None
            problem = sample.problem(self.config.rounds.min_participants, most)
            if problem:  # nothing is run or released; the next round draws afresh after a pause
                await self._refuse(sample, problem)
                continue
            round_ = self._open(sample, rng)
            try:
                await self._run_round(round_)
            except Exception as error:  # a bug must cost one round, not the coordinator
                logger.exception("round %d failed with an internal error", round_.number)
                await self._close(round_, f"internal error: {type(error).__name__}: {error}"[:500], aggregate=False)
        await self.notify()

    async def stop(self) -> None:
        """Make ``run`` return at its next wait (an open round is abandoned, not saved)."""
        self._stopping = True
        await self.notify()

    async def notify(self) -> None:
        """Wake every waiter to re-check its condition."""
        async with self.changed:
            self.changed.notify_all()

    async def _wait(self, predicate: Callable[[], bool], deadline: float | None) -> bool:
        """Wait until ``predicate()``; False on stop or at ``deadline`` (monotonic) with it still false."""
        async with self.changed:
            while not predicate():
                if self._stopping:
                    return False
                left = _IDLE_RECHECK_S if deadline is None else min(_IDLE_RECHECK_S, deadline - time.monotonic())
                if left <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), left)
            return True

    # -- one round -------------------------------------------------------------------------------
    def _draw(self, rng: random.Random) -> Sample:
        """This round's participants, drawn from the active clients (``sampling.py``)."""
        poisson = self.config.privacy is not None
        return draw_sample(self.registry.active(), self.config.rounds.clients_per_round, poisson, rng)

    async def _refuse(self, sample: Sample, problem: str) -> None:
        """Record a round whose draw cannot run (no task goes out), then pause before the next draw."""
        now, state = time.monotonic(), self.state
        round_ = OpenRound(
            number=state.next_round, version=state.version, nonce=b"", selected=sample.selected,
            config=pb.RoundConfig(), opened=now, deadline=now, length=state.schema.numel,
            sample_rate=sample.rate, population=sample.population,
        )  # fmt: skip
        logger.info("round %d not run: %s", round_.number, problem)
        await self._close(round_, problem, aggregate=False)
        await self._wait(lambda: self._stopping, time.monotonic() + _IDLE_RECHECK_S)

    def _open(self, sample: Sample, rng: random.Random) -> OpenRound:
        settings, number, state = self.config.rounds, self.state.next_round, self.state
        selected, active = sample.selected, sample.population
        now = time.monotonic()
        length = state.schema.numel
        config = self._round_config(selected, rng)
        round_ = OpenRound(
            number=number,
            version=state.version,
            nonce=self.registry.round_nonce(number, state.version),
            selected=selected,
            config=config,
            opened=now,
            deadline=now + settings.round_timeout_s,
            length=length,
            sample_rate=sample.rate,
            population=sample.population,
        )
        if settings.secure_aggregation:
            if self._scores is None:
                config.secagg_density = 1.0  # the dense first round: clients send all, scores get filled
            round_.indices = informed_subset(length, config.secagg_density, config.secagg_seed, self._scores)
            if round_.indices.numel() < length:
                config.secagg_indices = indices_to_bytes(round_.indices)
            context = secagg_context(self.config.run, number, round_.nonce)
            words = secure_words(config, length, int(round_.indices.numel()))
            round_.secagg = SecAggRound(selected, config.secagg_threshold, context, words)
        self.round, self.phase = round_, "advertise" if round_.secagg else "collect"
        logger.info("round %d opened: %d clients selected of %d active", number, len(selected), active)
        return round_

    def _round_config(self, selected: tuple[str, ...], rng: random.Random) -> pb.RoundConfig:
        settings, secagg, privacy = self.config.rounds, self.config.secagg, self.config.privacy
        config = pb.RoundConfig(
            local_steps=settings.local_steps,
            codec=settings.codec,
            topk_ratio=settings.topk_ratio,
            error_feedback=settings.error_feedback,
            participants=len(selected),
            learning_rate=settings.learning_rate,
        )
        if settings.secure_aggregation:
            config.secure_aggregation = True
            config.secagg_clip, config.secagg_bits, config.secagg_density = secagg.clip, secagg.bits, secagg.density
            config.secagg_seed = rng.getrandbits(62)
            config.secagg_max_clients = secagg.max_clients
            config.secagg_threshold = threshold_for(len(selected), secagg.dropout_fraction)
            config.secagg_encoding = secagg.encoding
            if secagg.encoding == "scaled":  # whole packed words travel; scales as the last round left them
                config.secagg_bits, config.secagg_levels, config.secagg_block = 32, secagg.levels, secagg.block
                config.secagg_scales = scales_to_bytes(self._shared_scales())
            samples = [self.registry.clients[c].samples for c in selected]
            config.samples_cap = 0 if privacy is not None else secure_samples_cap(samples)
        if privacy is not None:
            config.dp_clip_norm = privacy.clip_norm
            if privacy.placement == "distributed":
                config.dp_noise_std = privacy.noise_multiplier * privacy.clip_norm / len(selected) ** 0.5
        return config

    async def _run_round(self, round_: OpenRound) -> None:
        await self.notify()
        reason = await (self._secure_phases(round_) if round_.secagg else self._collect(round_))
        if self._stopping:
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

    async def _collect(self, round_: OpenRound) -> str:
        await self._wait(round_.all_in, round_.deadline)
        if len(round_.submissions) < self.config.rounds.min_participants:
            return f"{len(round_.submissions)} updates by the deadline, {self.config.rounds.min_participants} needed"
        return ""

    async def _secure_phases(self, round_: OpenRound) -> str:
        secagg = round_.secagg
        assert secagg is not None
        timeout = self.config.rounds.phase_timeout_s
        for phase in ("advertise", "share", "collect", "unmask"):
            secagg.phase = self.phase = phase
            if phase == "collect":
                round_.deadline = time.monotonic() + self.config.rounds.round_timeout_s
            await self.notify()
            deadline = round_.deadline if phase == "collect" else time.monotonic() + timeout
            await self._wait(lambda: not secagg.expecting(), deadline)
            needed = max(secagg.threshold, self.config.rounds.min_participants if phase == "collect" else 0)
            if secagg.received() < needed:
                return f"secure aggregation phase {phase}: {secagg.received()} clients, {needed} needed"
        secagg.phase = "done"
        return ""

    async def _close(self, round_: OpenRound, reason: str, aggregate: bool = True) -> RoundRecord:
        state = self.state
        self.phase = "aggregating"
        contributors: tuple[str, ...] = ()
        loss = float("nan")
        if aggregate and not reason:
            try:
                result = await asyncio.to_thread(
                    aggregate_round, round_, state.adapter, state.server_state, self.config
                )
            except ProtocolError as error:  # unmasking failed: the round is lost, nothing else is
                reason = f"unmasking failed: {error}"
            except NonFiniteAggregate as error:  # the adapter stays as it was; the next round goes on
                logger.warning("round %d refused: %s", round_.number, error)
                reason = f"refused: {error}"
            else:
                state = CoordinatorState(
                    next_round=state.next_round,
                    version=state.version + 1,
                    adapter=result.adapter,
                    schema=state.schema,
                    server_state=result.server_state,
                    history=state.history,
                    accountant=state.accountant,
                )
                contributors, loss = result.contributors, result.train_loss
                self._remember(round_, result.mean, result.next_scales)
                self._spend_privacy(round_.sample_rate)
        record = RoundRecord(
            round=round_.number,
            outcome="failed" if reason else "completed",
            reason=reason or self._dropped_note(round_),
            selected=round_.selected,
            contributors=contributors,
            uplink_bytes=sum(s.nbytes for s in round_.submissions.values()),
            seconds=time.monotonic() - round_.opened,
            train_loss=loss,
            global_version=state.version,
            secure_aggregation=round_.secagg is not None,
            epsilon=self.epsilon(),
        )
        state = CoordinatorState(
            next_round=round_.number + 1,
            version=state.version,
            adapter=state.adapter,
            schema=state.schema,
            server_state=state.server_state,
            history=(*state.history, record),
            accountant=self.accountant.state_dict() if self.config.privacy is not None else {},
        )
        await asyncio.to_thread(self.store.save, state)
        self.state, round_.finished, self.round, self.phase = state, True, None, "waiting"
        await self.notify()
        return record

    def _shared_scales(self) -> torch.Tensor:
        """What the next scaled secure round publishes: the last round's, or the initial scale."""
        if self._scales is not None:
            return self._scales
        secagg = self.config.secagg
        return default_scales(self.state.schema.numel, secagg.block, secagg.initial_scale)

    def _remember(self, round_: OpenRound, mean: torch.Tensor, next_scales: torch.Tensor | None) -> None:
        """Update the secure-subset scores with the coordinates this round sent, and the shared scales."""
        if round_.indices is None:
            return
        if next_scales is not None:
            self._scales = next_scales
        if self._scores is None or self._scores.numel() != mean.numel():
            self._scores = mean.abs()
        else:
            self._scores[round_.indices] = mean[round_.indices].abs()

    def _spend_privacy(self, sample_rate: float) -> None:
        """Account for one released aggregate, at the rate its participants were actually drawn with."""
        privacy = self.config.privacy
        if privacy is not None:
            self.accountant.step(privacy.noise_multiplier, sample_rate)

    def epsilon(self) -> float:
        """Differential-privacy epsilon spent so far (0 without DP)."""
        privacy = self.config.privacy
        return 0.0 if privacy is None else float(self.accountant.epsilon(privacy.delta))

    @staticmethod
    def _dropped_note(round_: OpenRound) -> str:
        missing = sorted(set(round_.selected) - set(round_.submissions))
        return f"no update from {len(missing)} of {len(round_.selected)} selected" if missing else ""

    # -- requests --------------------------------------------------------------------------------
    async def task(self, client_id: str, wait_s: float) -> pb.TaskReply:
        """Long-poll for ``client_id``'s next task."""
        self.registry.touch(client_id)
        await self.notify()
        deadline = time.monotonic() + min(max(wait_s, 0.0), 30.0)
        await self._wait(lambda: self._reply_for(client_id).kind != pb.TaskReply.WAIT, deadline)
        return self._reply_for(client_id)

    def _reply_for(self, client_id: str) -> pb.TaskReply:
        if self.done():
            return pb.TaskReply(kind=pb.TaskReply.DONE, round=self.state.next_round, global_version=self.state.version)
        round_ = self.round
        wait = pb.TaskReply(kind=pb.TaskReply.WAIT, round=self.state.next_round, retry_after_s=_IDLE_RECHECK_S)
        if round_ is None or round_.finished or client_id not in round_.selected or client_id in round_.submissions:
            return wait
        if round_.secagg is not None and (round_.secagg.phase != "advertise" or client_id in round_.secagg.keys):
            return wait  # it missed (or already began) this round's key exchange
        return pb.TaskReply(
            kind=pb.TaskReply.TRAIN,
            round=round_.number,
            global_version=round_.version,
            config=round_.config,
            round_nonce=round_.nonce,
            deadline_s=max(0.0, round_.deadline - time.monotonic()),
        )

    async def submit(self, submission: Submission) -> None:
        """Record an update that passed ``check_update`` (re-checked: the round may have moved on)."""
        round_ = self.round
        if round_ is None or round_.finished or submission.client_id in round_.submissions:
            raise Rejected(grpc.StatusCode.FAILED_PRECONDITION, "the round closed while the update streamed in")
        if round_.secagg is not None:
            assert submission.masked is not None
            round_.secagg.collect(submission.client_id, submission.masked)
        round_.submissions[submission.client_id] = submission
        await self.notify()

    async def secagg(self, client_id: str, request: pb.SecAggRequest) -> pb.SecAggReply:
        """Handle one secure-aggregation phase message; waits for the phase to close where needed."""
        round_ = self.round
        if round_ is None or round_.secagg is None or request.round != round_.number:
            raise Rejected(grpc.StatusCode.FAILED_PRECONDITION, f"round {request.round} has no open secure phase")
        secagg, phase = round_.secagg, pb.SecAggRequest.Phase.Name(request.phase).lower()
        if phase == "advertise":
            secagg.advertise(client_id, request.keys)
        elif phase == "share":
            secagg.share(client_id, dict(request.messages))
        elif phase == "unmask":
            secagg.unmask(client_id, dict(request.messages))
            await self.notify()
            return pb.SecAggReply(threshold=secagg.threshold)
        await self.notify()
        await self._await_phase_end(round_, phase)
        if phase == "advertise":
            roster = [secagg.keys[c].to_bytes() for c in sorted(secagg.keys)]
            return pb.SecAggReply(roster=roster, threshold=secagg.threshold)
        if phase == "share":
            return pb.SecAggReply(messages=secagg.messages_for(client_id), threshold=secagg.threshold)
        return pb.SecAggReply(survivors=secagg.survivors(), dropped=secagg.dropped(), threshold=secagg.threshold)

    async def _await_phase_end(self, round_: OpenRound, phase: str) -> None:
        secagg = round_.secagg
        assert secagg is not None
        order = ("advertise", "share", "collect", "unmask", "done")
        limit = max(self.config.rounds.phase_timeout_s, self.config.rounds.round_timeout_s) + 5.0

        def progressed() -> bool:
            return order.index(secagg.phase) > order.index(phase)

        await self._wait(lambda: round_.finished or progressed(), time.monotonic() + limit)
        if progressed():
            return
        if round_.finished:
            raise Rejected(grpc.StatusCode.ABORTED, f"round {round_.number} failed during phase {phase}")
        raise Rejected(grpc.StatusCode.DEADLINE_EXCEEDED, f"phase {phase} did not end in time")
