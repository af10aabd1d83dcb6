"""How a round ends (``rounds.py``): its aggregate, computed in a worker thread, and the state and record
that the durable save then holds."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping

import torch

from swarmnet.coordinator.aggregation import Aggregated, NonFiniteAggregate, aggregate_round
from swarmnet.coordinator.config import CoordinatorConfig
from swarmnet.coordinator.history import RoundRecord
from swarmnet.coordinator.open_round import OpenRound
from swarmnet.coordinator.store import CoordinatorState
from swarmnet.errors import ProtocolError

__all__ = ["aggregate_in_thread", "closed_state", "round_record", "updated_state"]

logger = logging.getLogger(__name__)


async def aggregate_in_thread(
    round_: OpenRound, state: CoordinatorState, config: CoordinatorConfig
) -> tuple[Aggregated | None, str]:
    """``round_``'s aggregate over ``state``, or ``None`` and why the round fails."""
    try:
        result = await asyncio.to_thread(aggregate_round, round_, state.adapter, state.server_state, config)
    except ProtocolError as error:  # unmasking failed: the round is lost, nothing else is
        return None, f"unmasking failed: {error}"
    except NonFiniteAggregate as error:  # the adapter stays as it was; the next round goes on
        logger.warning("round %d refused: %s", round_.number, error)
        return None, f"refused: {error}"
    return result, ""


def updated_state(state: CoordinatorState, result: Aggregated) -> CoordinatorState:
    """``state`` with the new global adapter and server optimizer state of a completed round."""
    return dataclasses.replace(
        state, version=state.version + 1, adapter=result.adapter, server_state=result.server_state
    )


def round_record(
    round_: OpenRound, reason: str, result: Aggregated | None, version: int, epsilon: float
) -> RoundRecord:
    """The history entry of ``round_``: failed for ``reason``, else completed with ``result``."""
    return RoundRecord(
        round=round_.number,
        outcome="failed" if reason else "completed",
        reason=reason or _dropped_note(round_),
        selected=round_.selected,
        contributors=result.contributors if result is not None else (),
        uplink_bytes=sum(s.nbytes for s in round_.submissions.values()),
        seconds=time.monotonic() - round_.opened,
        train_loss=result.train_loss if result is not None else float("nan"),
        global_version=version,
        secure_aggregation=round_.secagg is not None,
        epsilon=epsilon,
    )


def closed_state(
    state: CoordinatorState, record: RoundRecord, accountant: Mapping[str, torch.Tensor]
) -> CoordinatorState:
    """What the save after ``record``'s round holds: the next round is the one after it."""
    return dataclasses.replace(
        state, next_round=record.round + 1, history=(*state.history, record), accountant=accountant
    )


def _dropped_note(round_: OpenRound) -> str:
    missing = sorted(set(round_.selected) - set(round_.submissions))
    return f"no update from {len(missing)} of {len(round_.selected)} selected" if missing else ""
