"""What a peer states and keeps while it seeks a group: its signed join record and its matchmaking state."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from pydantic import Field

from swarmnet.averaging.group import Group
from swarmnet.records import Payload

__all__ = ["GroupJoin", "Seeking"]


class GroupJoin(Payload):
    """A peer's signed statement that it is ready to average a round."""

    KIND = "avg_join"

    bandwidth_mbps: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    grouped: bool = False  # already in a group for this round: do not propose to it


@dataclass
class Seeking:
    """This peer's state while it looks for a group for one (run, round, schema)."""

    key: tuple[str, int, str]
    committed: asyncio.Future[Group]
    leading: bool = False
    reserved_by: str | None = None
    group_id: str | None = None
    reserved_until: float = 0.0
    refusals: dict[str, str] = field(default_factory=dict)  # peers to skip this round, and why
    last_run: list[str] = field(default_factory=list)  # our run as our previous poll saw it
    settling: bool = False  # we lead a ready run that our last poll saw change: look again soon
    watched: tuple[str, float] | None = None  # the leader we wait for, and since when it is ready
    join: tuple[str, GroupJoin, float] | None = None  # our join record: DHT key, payload, expiry
    announced_at: float = 0.0  # loop time of our latest store of it
