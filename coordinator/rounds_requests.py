"""The clients' side of the round engine (``rounds.py``): long-polls for tasks, updates arriving, and the
secure-aggregation phase messages. Handlers only record what arrives and wait on the engine's signal."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import grpc

from swarmnet.coordinator.open_round import OpenRound, Submission
from swarmnet.coordinator.rejection import Rejected
from swarmnet.coordinator.rounds_signal import IDLE_RECHECK_S, RoundSignal
from swarmnet.proto import federated_pb2 as pb

if TYPE_CHECKING:
    from swarmnet.coordinator.rounds import RoundEngine

__all__ = ["RoundRequests"]

_PHASES = ("advertise", "share", "collect", "unmask", "done")
_LONGEST_POLL_S = 30.0  # a task long-poll waits at most this long, whatever the client asks


class RoundRequests:
    """Answers clients from the state of ``engine``'s current round."""

    def __init__(self, engine: RoundEngine, signal: RoundSignal) -> None:
        self._engine, self._signal = engine, signal

    async def task(self, client_id: str, wait_s: float) -> pb.TaskReply:
        """Long-poll for ``client_id``'s next task."""
        self._engine.registry.touch(client_id)
        await self._signal.notify()
        deadline = time.monotonic() + min(max(wait_s, 0.0), _LONGEST_POLL_S)
        await self._signal.wait(lambda: self._reply_for(client_id).kind != pb.TaskReply.WAIT, deadline)
        return self._reply_for(client_id)

    def _reply_for(self, client_id: str) -> pb.TaskReply:
        engine = self._engine
        if engine.done():
            return pb.TaskReply(
                kind=pb.TaskReply.DONE, round=engine.state.next_round, global_version=engine.state.version
            )
        round_ = engine.round
        wait = pb.TaskReply(kind=pb.TaskReply.WAIT, round=engine.state.next_round, retry_after_s=IDLE_RECHECK_S)
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
        round_ = self._engine.round
        if round_ is None or round_.finished or submission.client_id in round_.submissions:
            raise Rejected(grpc.StatusCode.FAILED_PRECONDITION, "the round closed while the update streamed in")
        if round_.secagg is not None:
            assert submission.masked is not None
            round_.secagg.collect(submission.client_id, submission.masked)
        round_.submissions[submission.client_id] = submission
        await self._signal.notify()

    async def secagg(self, client_id: str, request: pb.SecAggRequest) -> pb.SecAggReply:
        """Handle one secure-aggregation phase message; waits for the phase to close where needed."""
        round_ = self._engine.round
        if round_ is None or round_.secagg is None or request.round != round_.number:
            raise Rejected(grpc.StatusCode.FAILED_PRECONDITION, f"round {request.round} has no open secure phase")
        secagg, phase = round_.secagg, pb.SecAggRequest.Phase.Name(request.phase).lower()
        if phase == "advertise":
            secagg.advertise(client_id, request.keys)
        elif phase == "share":
            secagg.share(client_id, dict(request.messages))
        elif phase == "unmask":
            secagg.unmask(client_id, dict(request.messages))
            await self._signal.notify()
            return pb.SecAggReply(threshold=secagg.threshold)
        await self._signal.notify()
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
        settings = self._engine.config.rounds
        limit = max(settings.phase_timeout_s, settings.round_timeout_s) + 5.0

        def progressed() -> bool:
            return _PHASES.index(secagg.phase) > _PHASES.index(phase)

        await self._signal.wait(lambda: round_.finished or progressed(), time.monotonic() + limit)
        if progressed():
            return
        if round_.finished:
            raise Rejected(grpc.StatusCode.ABORTED, f"round {round_.number} failed during phase {phase}")
        raise Rejected(grpc.StatusCode.DEADLINE_EXCEEDED, f"phase {phase} did not end in time")
