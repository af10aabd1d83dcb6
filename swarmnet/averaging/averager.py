"""``Averager``: the one averaging engine every training mode syncs through.

Usage::

    averager = Averager(transport, identity, AveragingConfig(run="my-run", codec="int8"))
    await averager.start()
    outcome = await averager.step(list(model.parameters()), round_id=outer_step, weight=samples)
    if not outcome.succeeded: ...  # tensors unchanged (no group) or averaged over fewer peers

A step finds a group through the DHT (``matchmaking.py``), runs the partitioned reduce
(``allreduce.py``), writes the average back into the tensors in place and returns an
``Outcome``. Error-feedback residuals persist across steps in one ``ErrorFeedback``, a sender's and a reducer's
vector per tensor schema (``vectors.feedback_keys``); ``feedback_state`` and ``load_feedback_state`` carry
them through a checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import AsyncIterator, Sequence

import torch

from swarmnet.averaging.allreduce import GroupRound, RoundReport
from swarmnet.averaging.config import AveragingConfig
from swarmnet.averaging.deadlines import ThroughputModel
from swarmnet.averaging.feedback_state import FeedbackWatch, keep_schema
from swarmnet.averaging.group import Group, schema_id
from swarmnet.averaging.lobby import LobbyLimits, RoundLobby
from swarmnet.averaging.matchmaking import Matchmaker
from swarmnet.averaging.messages import DataHeader, Reply, decode_message, encode_message, method_name
from swarmnet.averaging.outcome import AveragerStatistics, Outcome
from swarmnet.averaging.pacer import Pacer
from swarmnet.averaging.vectors import SchemaFeedback, flatten, unflatten
from swarmnet.compression import ErrorFeedback, get_codec
from swarmnet.errors import ConfigError, ProtocolError, SwarmnetError
from swarmnet.identity import Identity
from swarmnet.transport.base import Transport

__all__ = ["Averager"]

logger = logging.getLogger(__name__)

_NO_FEEDBACK = ("none", "fp16", "bf16")


class Averager:
    """Averages tensors with other peers of the same run; one ``step`` per round."""

    def __init__(self, transport: Transport, identity: Identity, config: AveragingConfig | None = None) -> None:
        self.config = config or AveragingConfig()
        self.config.validate()
        if transport.peer_id != identity.peer_id:
            raise ConfigError(f"transport peer id {transport.peer_id} is not the identity's {identity.peer_id}")
        self._transport = transport
        self._codec = get_codec(self.config.codec)
        self._matchmaker = Matchmaker(transport, identity, self.config.matchmaking, self.config.run)
        pace = self.config.pace_mbps
        # Deadlines start from the slower of the link and our own cap: a paced peer must not be cut off as a straggler.
        self._throughput = ThroughputModel(self.config.deadlines, min(self.config.bandwidth_mbps, pace or math.inf))
        # One bucket for every round and stream: it caps the peer's whole uplink, not each connection.
        self._pacer = Pacer(pace, burst_bytes=2 * self.config.chunk_bytes) if pace is not None else None
        # Our rounds by group id; data that arrives before its round started here waits in the lobby.
        self._lobby: RoundLobby[GroupRound] = RoundLobby(LobbyLimits.for_chunks(self.config.chunk_bytes))
        self._feedback = ErrorFeedback()
        self._watch = FeedbackWatch(self._feedback)
        self._totals: Counter[str] = Counter()
        self._last: Outcome | None = None
        self._started = False

    @property
    def uses_feedback(self) -> bool:
        """Whether residuals are kept (see ``AveragingConfig.error_feedback``)."""
        mode = self.config.error_feedback
        return mode == "on" or (mode == "auto" and self.config.codec not in _NO_FEEDBACK)

    async def start(self) -> None:
        """Register the RPC handlers; call once before ``step``."""
        if not self._started:
            await self._matchmaker.start()
            await self._transport.add_unary_handler(method_name(self.config.run, "data"), self._on_data)
            await self._transport.add_stream_handler(method_name(self.config.run, "stream"), self._on_stream)
            self._started = True

    async def step(self, tensors: Sequence[torch.Tensor], *, round_id: int, weight: float = 1.0) -> Outcome:
        """Average ``tensors`` in place with a group for ``round_id``; weight = samples or steps since last time.

        A weight above ``config.max_weight`` is clipped to it (and logged): the other peers refuse heavier ones.

        Never raises for other peers' faults or absence: the outcome says what happened.
        """
        if not self._started:
            raise RuntimeError("call start() before step()")
        _check_inputs(tensors, weight, round_id)
        if weight > self.config.max_weight:
            # Every other peer would refuse a heavier contribution: it counts at the most the protocol allows.
            logger.warning("round %s: weight %s clipped to max_weight %s", round_id, weight, self.config.max_weight)
            weight = self.config.max_weight
        loop = asyncio.get_running_loop()
        started = loop.time()
        schema = schema_id(tensors, self.config.codec, self.config.aggregation.rule)
        group = await self._matchmaker.form_group(round_id, schema, self.config.bandwidth_mbps)
        matchmaking = loop.time() - started
        if group is None:
            return self._record(self._outcome(round_id, None, RoundReport(), matchmaking, "no group formed in time"))
        if len(group.members) == 1:
            return self._record(self._outcome(round_id, group, RoundReport(contributors={0}), matchmaking))
        flat = flatten(tensors)
        feedback = SchemaFeedback.of(self._feedback, schema, flat.numel()) if self.uses_feedback else None
        round_ = GroupRound(
            self._transport, group, flat, weight=weight, codec=self._codec, feedback=feedback, config=self.config,
            throughput=self._throughput, pacer=self._pacer,
        )  # fmt: skip
        await self._lobby.open(group.group_id, round_)
        try:
            with self._watch.changing():
                report = await round_.run()
        finally:
            await self._lobby.close(group.group_id)
        if flat.data_ptr() != tensors[0].data_ptr():  # not averaged in place already
            unflatten(flat, tensors)
        outcome = self._outcome(round_id, group, report, matchmaking, round_=round_)
        for peer in outcome.distrusted:
            self._matchmaker.distrust(peer)
        return self._record(outcome)

    def statistics(self, *, error_feedback: bool = True) -> AveragerStatistics:
        """Totals over every step so far, the last outcome, and the residuals' statistics (a pass over every
        residual, once per step; ``error_feedback=False`` leaves them out, as None)."""
        t = self._totals
        return AveragerStatistics(
            rounds=t["rounds"], succeeded=t["succeeded"], failed=t["rounds"] - t["succeeded"],
            bytes_sent=t["bytes_sent"], bytes_received=t["bytes_received"], rejected_contributions=t["rejected"],
            estimated_mbps=self._throughput.bytes_per_second * 8 / 1e6, last=self._last,
            error_feedback=self._watch.statistics() if error_feedback and self.uses_feedback else None,
        )  # fmt: skip

    def feedback_state(self) -> dict[str, torch.Tensor]:
        """Copies of the error-feedback residuals, as ``ErrorFeedback.state_dict`` gives them (for a checkpoint).

        Raises ``RuntimeError`` while a step is running: its residuals are half updated.
        """
        self._watch.check_idle()
        return self._feedback.state_dict()

    def load_feedback_state(self, state: dict[str, torch.Tensor], tensors: Sequence[torch.Tensor]) -> None:
        """Replace the residuals with ``state`` (from ``feedback_state``); ``tensors`` are what ``step`` averages.

        Raises ``ValueError`` for residuals that are malformed (not finite, a shape that does not fit) or whose
        size is not that of ``tensors``; residuals of another schema (another layout, codec or aggregation
        rule) are dropped with a log line, since no step would use them. Nothing changes on an error.
        """
        self._watch.check_idle()
        self._feedback.load_state_dict(self._ours(state, tensors))
        self._watch.changed()

    def check_feedback_state(self, state: dict[str, torch.Tensor], tensors: Sequence[torch.Tensor]) -> None:
        """Raise the ``ValueError`` that ``load_feedback_state`` would raise, without loading anything."""
        self._feedback.check_state_dict(self._ours(state, tensors))

    def _ours(self, state: dict[str, torch.Tensor], tensors: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        schema = schema_id(tensors, self.config.codec, self.config.aggregation.rule)
        return keep_schema(state, schema, sum(t.numel() for t in tensors))

    def _record(self, outcome: Outcome) -> Outcome:
        self._last = outcome
        self._totals.update(
            rounds=1, succeeded=int(outcome.succeeded), bytes_sent=outcome.total_bytes_sent,
            bytes_received=sum(outcome.bytes_received.values()), rejected=len(outcome.rejected),
        )  # fmt: skip
        level = logging.INFO if outcome.succeeded else logging.WARNING
        logger.log(level, "round %s: %s", outcome.round_id, _summary(outcome))
        return outcome

    def _outcome(
        self,
        round_id: int,
        group: Group | None,
        report: RoundReport,
        matchmaking: float,
        reason: str = "",
        round_: GroupRound | None = None,
    ) -> Outcome:
        members = group.members if group is not None else ()

        def names(indices: dict[int, str]) -> dict[str, str]:
            return {members[i]: why for i, why in indices.items()}

        contributors = tuple(members[i] for i in sorted(report.contributors))
        if group is not None and not reason and len(members) > 1 and len(contributors) < 2:
            reason = "fewer than two contributors"
        return Outcome(
            run=self.config.run, round_id=round_id, succeeded=group is not None and not reason, reason=reason,
            group_id=group.group_id if group else None, members=members, contributors=contributors,
            rejected=names(report.rejected), failed=names(report.failed), distrusted=names(report.distrusted),
            bytes_sent={members[i]: n for i, n in round_.bytes_sent.items()} if round_ else {},
            bytes_received={members[i]: n for i, n in round_.bytes_received.items()} if round_ else {},
            phase_seconds={"matchmaking": matchmaking, **report.phase_seconds}, codec=self.config.codec,
            mode=report.mode, aggregation=self.config.aggregation.rule,
            recovered_elements=report.recovered_elements, amended_elements=report.amended_elements,
            unaveraged_elements=report.unaveraged_elements,
            consistent=report.consistent,
        )  # fmt: skip

    async def _on_stream(self, caller: str, requests: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Chunks of one message on one stream: one reply each; a bad chunk is refused, not fatal."""
        async for request in requests:
            try:
                yield await self._on_data(caller, request)
            except SwarmnetError as e:
                yield encode_message(Reply(ok=False, reason=f"{type(e).__name__}: {e}"[:1000]))

    async def _on_data(self, caller: str, request: bytes) -> bytes:
        header, payload = decode_message(request, DataHeader)
        round_ = await self._find_round(caller, header, len(request))
        if isinstance(round_, str):
            return encode_message(Reply(ok=False, reason=round_))
        if round_ is None:  # a ping before our round started: we are alive, and the group is not over here
            return encode_message(Reply(ok=True))
        if caller not in round_.group.members:
            raise ProtocolError(f"{caller} is not a member of group {header.group_id}")
        if header.kind != "ping":
            round_.receive(round_.group.index(caller), header, payload)
        return encode_message(Reply(ok=True))

    async def _find_round(self, caller: str, header: DataHeader, size: int) -> GroupRound | str | None:
        """The round of ``header``'s group, once it starts here; a refusal's reason; or None for a ping that came
        before it (answered at once: a ping asks whether we are alive, and waiting would only make it time out).

        Data for a group that has not started here waits up to the matchmaking timeout, whether or not we know
        of the group yet: on a loaded machine the step that sets up our round, or even the commit that names
        the group, can lag the data by seconds, and refusing the data would drop a healthy peer from the
        round. The lobby bounds what may wait (``lobby.py``).
        """
        group_id = header.group_id
        if header.kind == "ping" and not self._lobby.finished(group_id):
            return self._lobby.find_now(group_id)
        expected = self._matchmaker.expects(group_id)
        timeout = self.config.matchmaking.timeout
        return await self._lobby.find(caller, group_id, size, expected=expected, timeout=timeout)


def _check_inputs(tensors: Sequence[torch.Tensor], weight: float, round_id: int) -> None:
    if not tensors or not all(isinstance(t, torch.Tensor) and t.is_floating_point() for t in tensors):
        raise ValueError("step() needs a non-empty sequence of floating-point tensors")
    if not (isinstance(weight, int | float) and math.isfinite(weight) and weight > 0):
        raise ValueError(f"weight must be a positive finite number, got {weight!r}")
    if round_id < 0:
        raise ValueError(f"round_id must be >= 0, got {round_id}")


def _summary(outcome: Outcome) -> str:
    if outcome.group_id is None:
        return outcome.reason
    return (
        f"{len(outcome.contributors)}/{len(outcome.members)} contributed, {outcome.total_bytes_sent} bytes sent, "
        f"{outcome.seconds:.2f}s, codec {outcome.codec}" + (f" ({outcome.reason})" if outcome.reason else "")
    )
