"""A DiLoCo / Streaming DiLoCo trainer on the swarm: inner steps, exchanges, consensus, joins.

``SwarmTrainer.run`` loops over sync points (``DiLoCoConfig.syncs_after``). Between them it runs
inner steps in a worker thread, so the event loop keeps serving averaging and state requests. At a
sync point of fragment ``p`` it announces that it got there, takes the pseudo-gradient, and starts
the exchange through fragment ``p``'s ``Averager`` in the background; ``overlap_steps`` later (at
once for plain DiLoCo) it applies the outer step with the average and publishes its new global state.

Membership is elastic. A trainer that sees most of the other trainers already at its next sync
point stops early and joins with a weight equal to the steps it did; a trainer whose state is not
the swarm's consensus (it missed a round, or averaged in a minority group) fetches the consensus
state from the peers that hold it; a joiner does the same before its first step, waiting up to
``join_wait`` seconds while the announcers disagree. A trainer that reached ``max_steps`` stops only once
the peers that ended at its round hold one state (up to ``final_wait``; ``closing.py``): when the last
round failed, each peer applied its own update, and the ones off the consensus fetch it first.

Nothing another trainer says about its progress is taken on its word alone: the consensus counts
distinct announcers (``consensus.py``), the stop-early rule needs a majority of the other trainers
(``progress.py``), and claims beyond what the run's schedule and time allow are ignored
(``pace.py``). While it trains, a trainer re-stores its progress and state records, so they stay
live (and counted) through sync intervals longer than their lifetime.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from swarmnet.averaging import Averager, AveragingConfig, Outcome
from swarmnet.clock import off_loop
from swarmnet.data.text import Batch, ShardSampler
from swarmnet.diloco.closing import converging, settled
from swarmnet.diloco.consensus import Consensus, choose
from swarmnet.diloco.pace import PaceBound
from swarmnet.diloco.progress import ProgressBoard, swarm_reached
from swarmnet.diloco.replica import Replica
from swarmnet.diloco.reports import Progress, TrainerStatistics
from swarmnet.diloco.state_sync import GlobalState, StateAnnouncement, StateSync, StateSyncConfig, StateSyncError
from swarmnet.errors import ConfigError
from swarmnet.identity import Identity
from swarmnet.keyspace import DILOCO_PROGRESS_MAX_LIFETIME, DILOCO_STATE_MAX_LIFETIME
from swarmnet.telemetry.collect import fp32_allreduce_bytes
from swarmnet.transport.base import Transport

__all__ = ["SwarmTrainer", "TrainerConfig"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TrainerConfig:
    """What the trainer does besides the DiLoCo math (``Replica.config``)."""

    run: str
    schema: str  # model layout id: trainers exchange state only with equal schemas
    max_steps: int | None = None  # stop after this many inner steps (None: until stopped)
    poll_interval: float = 0.5  # seconds between looks at the others' progress while training
    eval_every: int = 0  # evaluate the global parameters every this many syncs (0: never)
    averaging: AveragingConfig = field(default_factory=AveragingConfig)
    state_ttl: float = 120.0  # seconds a state announcement lives unless refreshed by the next sync
    progress_ttl: float = 30.0  # seconds a "reached sync point" record lives: a dead peer's stops counting
    max_step_rate: float = 100.0  # inner steps per second no trainer of the run exceeds: bounds others' claims
    join_wait: float = 30.0  # seconds a joiner waits for the announcers to agree before starting on its own
    # Seconds a trainer that reached max_steps waits, serving and fetching, for the peers that ended with it to
    # hold one state (its last round failed or left someone out: each peer applied its own update; ``closing.py``).
    final_wait: float = 30.0

    def validate(self) -> None:
        """Raise ``ConfigError`` for an impossible setting."""
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError("max_steps must be positive")
        if self.poll_interval <= 0 or self.eval_every < 0 or self.state_ttl <= 0 or self.progress_ttl <= 0:
            raise ConfigError("poll_interval, state_ttl and progress_ttl must be positive and eval_every >= 0")
        if not self.max_step_rate > 0 or self.join_wait < 0 or self.final_wait < 0:
            raise ConfigError("max_step_rate must be positive, join_wait and final_wait >= 0")
        # Records live their ttl + 1 s at most; storage nodes refuse longer-lived ones.
        if self.state_ttl + 1.0 > DILOCO_STATE_MAX_LIFETIME or self.progress_ttl + 1.0 > DILOCO_PROGRESS_MAX_LIFETIME:
            raise ConfigError(
                f"state_ttl must be at most {DILOCO_STATE_MAX_LIFETIME - 1.0:g} s and progress_ttl at most "
                f"{DILOCO_PROGRESS_MAX_LIFETIME - 1.0:g} s"
            )
        self.averaging.validate()


@dataclass
class _Pending:
    fragment: int
    apply_at: int
    task: asyncio.Task[tuple[Outcome, torch.Tensor]]


class SwarmTrainer:
    """Drives one ``Replica`` on the swarm; see the module docstring."""

    def __init__(
        self,
        transport: Transport,
        identity: Identity,
        replica: Replica,
        sampler: ShardSampler,
        config: TrainerConfig,
        *,
        validation: list[Batch] | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        on_sync: Callable[[SwarmTrainer], None] | None = None,
    ) -> None:
        config.validate()
        self.replica, self.sampler, self.config = replica, sampler, config
        self.validation, self.on_progress, self.on_sync = validation or [], on_progress, on_sync
        self._transport = transport
        diloco = replica.config
        # One averager per fragment (each keeps its own error-feedback residuals). A contribution weighs the inner
        # steps it holds, never more than one sync interval: every trainer of the run refuses a heavier claim.
        averaging = replace(config.averaging, codec=diloco.codec, max_weight=float(diloco.inner_steps))
        self.averagers = [
            Averager(transport, identity, replace(averaging, run=f"{config.run}-f{p}"))
            for p in range(diloco.fragments)
        ]
        self.state = StateSync(
            transport, identity, StateSyncConfig(run=config.run, ttl=config.state_ttl), config.schema
        )
        self.board = ProgressBoard(transport, identity, config.run, config.schema, ttl=config.progress_ttl)
        self.pace = PaceBound(diloco, config.max_step_rate, transport.clock)
        self._pending: list[_Pending] = []
        self._positions: dict[str, int] = {}  # the sync step each other trainer announced last
        self._loss: float | None = None
        self._steps_done = 0  # inner steps this trainer actually ran (jumps excluded)
        self._since = [0] * diloco.fragments  # ``_steps_done`` at each fragment's last sync
        self.outcomes: list[Outcome] = []
        self.fetches = 0
        self.raw_bytes = 0  # dense fp32 equivalent of what the exchanges sent

    async def start(self) -> None:
        """Register handlers and adopt the swarm's state if it is ahead of ours (a joiner)."""
        for averager in self.averagers:
            await averager.start()
        await self.state.start()
        await self._join()

    async def run(self, stop: asyncio.Event) -> None:
        """Train until ``stop`` is set or ``max_steps`` is reached; exchanges in flight are finished."""
        watcher = asyncio.create_task(self._watch(stop), name="swarmnet-diloco-watch")
        try:
            while not stop.is_set() and not self._done():
                await self._inner_step()
                await self._apply_due()
                await self._maybe_sync()
            for pending in list(self._pending):
                await self._apply(pending)
            if self._done():
                await self._settle()
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await self.board.leave()
            await self.state.withdraw()

    def statistics(self) -> TrainerStatistics:
        """Counters for telemetry and the summary, with each fragment averager's (error feedback included)."""
        stats = tuple(a.statistics() for a in self.averagers)
        return TrainerStatistics(
            step=self.replica.step, rounds=self.replica.rounds, loss=self._loss,
            bytes_sent=sum(s.bytes_sent for s in stats), bytes_received=sum(s.bytes_received for s in stats),
            state_fetches=self.fetches, state_bytes_served=self.state.bytes_served, raw_bytes=self.raw_bytes,
            last=stats[-1].last if stats else None, averagers=stats,
        )  # fmt: skip

    def _done(self) -> bool:
        return self.config.max_steps is not None and self.replica.step >= self.config.max_steps

    async def _inner_step(self) -> None:
        batch = self.sampler.batch(self.replica.step)
        loss = await off_loop(self.replica.inner_step, batch)
        self._steps_done += 1
        self._loss = loss if self._loss is None else 0.95 * self._loss + 0.05 * loss
        self._report("step")

    def _next_sync(self) -> int:
        """The first inner step after ours at which some fragment syncs."""
        step = self.replica.step + 1
        while not self.replica.config.syncs_after(step):
            step += 1
        return step

    async def _maybe_sync(self) -> None:
        """Start the exchanges due now, or jump to the next sync point if another trainer is there."""
        step = self.replica.step
        if not self.replica.config.syncs_after(step):
            target = self._next_sync()
            if self._pending or not swarm_reached(self._positions, target, self.pace.check):
                return
            logger.info("most other trainers reached step %d; joining their sync from step %d", target, step)
            self.replica.step = step = target  # the data cursor and schedule follow the swarm
        self.pace.mark(step)
        await self.board.reached(step)
        if await self._catch_up():
            return
        for fragment in self.replica.config.syncs_after(step):
            self._start_exchange(fragment, step)
        await self._apply_due()

    def _start_exchange(self, fragment: int, step: int) -> None:
        pseudo_gradient = self.replica.pseudo_gradient(fragment)
        # Weighted by the steps this update holds: a trainer that stopped early counts for less.
        weight = float(max(1, self._steps_done - self._since[fragment]))
        self._since[fragment] = self._steps_done
        averager = self.averagers[fragment]

        async def exchange() -> tuple[Outcome, torch.Tensor]:
            own = pseudo_gradient.clone()
            outcome = await averager.step([pseudo_gradient], round_id=step, weight=weight)
            if not outcome.succeeded or not outcome.consistent:
                # What a failed round leaves in the tensor is not specified (ranges of an average over some
                # subset): fall back to exactly our own update, which the consensus check can then reconcile.
                return outcome, own
            return outcome, pseudo_gradient

        task = asyncio.create_task(exchange(), name=f"swarmnet-diloco-sync-{step}-{fragment}")
        self._pending.append(_Pending(fragment, step + self.replica.config.overlap_steps, task))

    async def _apply_due(self) -> None:
        for pending in [p for p in self._pending if p.apply_at <= self.replica.step]:
            await self._apply(pending)

    async def _apply(self, pending: _Pending) -> None:
        self._pending.remove(pending)
        outcome, average = await pending.task
        self.outcomes.append(outcome)
        self.raw_bytes += fp32_allreduce_bytes(len(outcome.members), average.numel())
        if not outcome.succeeded or not outcome.consistent:
            # Our own pseudo-gradient stands in; if the swarm moved on without us, the consensus check
            # at the next sync point fetches its state.
            logger.warning(
                "sync at step %d: %s; applying our own update", pending.apply_at, outcome.reason or "inconsistent"
            )
        self.replica.apply_outer(average, pending.fragment)
        await self.state.publish(self._global_state())
        event_loss = None
        if self.config.eval_every and self.replica.rounds % self.config.eval_every == 0 and self.validation:
            event_loss = await off_loop(self.replica.evaluate, self.validation)
        self._report("sync", outcome, event_loss)
        if self.on_sync is not None:
            self.on_sync(self)

    async def _join(self) -> None:
        """Adopt the swarm's state before the first step (waiting up to ``join_wait`` while announcers
        disagree), or announce our own: from then on every trainer counts in the consensus."""
        # No pace bound yet, even when resumed from a checkpoint: the swarm may have moved on for any time since.
        clock = self._transport.clock
        deadline = clock.time() + self.config.join_wait
        adopted = False
        while True:
            announcements = await self.state.announcements()
            consensus = self._choose(announcements)
            if consensus is not None or not announcements:  # agreed, or a new run
                adopted = await self._adopt(consensus)
                break
            if clock.time() >= deadline:
                logger.warning(
                    "%d peers announce states but no consensus formed in %.0f s; starting from our own state",
                    len(announcements), self.config.join_wait,
                )  # fmt: skip
                break
            await asyncio.sleep(self.config.poll_interval)
        self.pace.mark(self.replica.step)
        if not adopted:
            await self.state.publish(self._global_state())

    def _choose(self, announcements: dict[str, StateAnnouncement]) -> Consensus | None:
        def plausible(peer: str, a: StateAnnouncement) -> bool:
            return self.pace.check(peer, a.step, a.rounds)

        return choose(announcements, me=self._transport.peer_id, plausible=plausible)

    async def _catch_up(self) -> bool:
        """Adopt the swarm's consensus state if ours is behind or not it; True if we did."""
        if self._pending:
            return False
        return await self._adopt(self._choose(await self.state.announcements()))

    async def _adopt(self, consensus: Consensus | None) -> bool:
        """Fetch and load ``consensus`` unless we hold it or are ahead of it; True if we did."""
        if consensus is None:
            return False
        mine = self._global_state()
        announced = consensus.announcement
        if announced.rounds < mine.rounds or announced.digest == mine.digest():
            return False
        if announced.rounds == mine.rounds and self._transport.peer_id in consensus.holders:
            return False
        try:
            fetched = await self.state.fetch(consensus, self.replica.global_params.numel())
        except StateSyncError as e:
            logger.warning("could not fetch the swarm's state (round %d): %s", announced.rounds, e)
            return False
        self.replica.load_global(fetched.global_params, fetched.momentum, fetched.step, fetched.rounds)
        self.pace.mark(fetched.step)
        self.fetches += 1
        self._since = [self._steps_done] * len(self._since)
        logger.info(
            "adopted the swarm's state: round %d, step %d, held by %d of %d announcers (%s)",
            fetched.rounds, fetched.step, len(consensus.holders), consensus.announcers, consensus.basis,
        )  # fmt: skip
        await self.state.publish(fetched)
        self._report("fetched")
        return True

    async def _settle(self) -> None:
        """After the last sync: wait (up to ``final_wait``) until the peers that ended at our round hold our
        state, adopting the swarm's consensus of that round if it is not ours (``closing.py``). Our state
        stays served meanwhile, so the peers off it can fetch it from us."""
        clock, me = self._transport.clock, self._transport.peer_id
        deadline = clock.time() + self.config.final_wait
        fragments = self.replica.config.fragments
        sure = converging(self.outcomes[-fragments:])
        while True:
            announcements = await self.state.announcements()
            if settled(announcements, me=me, fragments=fragments, sure=sure):
                return
            consensus = self._choose(announcements)
            same_round = consensus is not None and consensus.announcement.rounds == self.replica.rounds
            if same_round and consensus is not None and await self._adopt(consensus):
                sure = frozenset()  # our last outcome no longer says what we hold
                continue
            if clock.time() >= deadline:
                logger.warning(
                    "stopping after %.0f s while peers that ended at round %d hold other states",
                    self.config.final_wait, self.replica.rounds,
                )  # fmt: skip
                return
            await asyncio.sleep(self.config.poll_interval)

    def _global_state(self) -> GlobalState:
        r = self.replica
        return GlobalState(r.global_params, r.momentum, r.step, r.rounds)

    async def _watch(self, stop: asyncio.Event) -> None:
        """Keep ``_positions`` fresh and our own records live while training."""
        while not stop.is_set():
            positions = await self.board.positions()
            if positions is not None:  # a failed lookup keeps the last view rather than an empty swarm
                self._positions = positions
            await self.board.refresh()
            await self.state.refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.poll_interval)

    def _report(self, event: str, outcome: Outcome | None = None, val_loss: float | None = None) -> None:
        if self.on_progress is None:
            return
        stats = [a.statistics(error_feedback=False) for a in self.averagers]  # on every inner step: keep it cheap
        progress = Progress(
            step=self.replica.step, rounds=self.replica.rounds, loss=self._loss or float("nan"),
            bytes_sent=sum(s.bytes_sent for s in stats), bytes_received=sum(s.bytes_received for s in stats),
            last=outcome, val_loss=val_loss, event=event, raw_bytes=self.raw_bytes, syncing=bool(self._pending),
        )  # fmt: skip
        self.on_progress(progress)
