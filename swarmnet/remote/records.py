"""Signed DHT records of hosted modules, and the keys they live under.

Each server hosting module ``uid`` keeps one record in its own slot (subkey: its peer id) of
``swarmnet/v<N>/mod/<uid>/servers``: its measured throughput, queue and state. For lookups by
prefix (an expert grid row ``RUN.L.3.``), it also keeps, under ``swarmnet/v<N>/mod/<prefix>/uids``,
the list of uids it hosts there. Both key families are bounded in ``swarmnet.keyspace``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from swarmnet.records import Payload
from swarmnet.version import PROTOCOL_VERSION

__all__ = ["MAX_PREFIX_UIDS", "ModuleRecord", "PrefixRecord", "module_key", "prefix_key", "prefix_of"]

MAX_PREFIX_UIDS = 48  # uids one prefix record may list: keeps it under the family's 8 KiB bound
_Uid = Annotated[str, StringConstraints(max_length=128)]
ModuleState = Literal["joining", "online", "draining"]


class ModuleRecord(Payload):
    """One server's announcement of one hosted module. Its figures are the server's own claims:
    readers clamp them (``RoutingConfig``) and prefer what they measure themselves."""

    KIND = "remote_module"

    uid: _Uid
    throughput: float = Field(ge=0)  # samples/s: EWMA of served samples per busy second
    queue: int = Field(default=0, ge=0)  # samples waiting when the record was made
    state: ModuleState = "online"
    max_batch: int = Field(default=1, ge=1)  # samples the server merges into one forward or backward


class PrefixRecord(Payload):
    """The uids one server hosts under a prefix (e.g. ``RUN.L.3.``), for lookups of a whole grid row."""

    KIND = "remote_prefix"

    prefix: _Uid
    uids: tuple[_Uid, ...] = Field(default=(), max_length=MAX_PREFIX_UIDS)


def module_key(uid: str) -> str:
    """The DHT key of ``uid``'s server records."""
    return f"swarmnet/v{PROTOCOL_VERSION}/mod/{uid}/servers"


def prefix_key(prefix: str) -> str:
    """The DHT key of the uid lists under ``prefix``."""
    return f"swarmnet/v{PROTOCOL_VERSION}/mod/{prefix}/uids"


def prefix_of(uid: str) -> str | None:
    """The prefix a uid is announced under: everything up to its last dot (``RUN.L.3.7`` -> ``RUN.L.3.``)."""
    head, dot, _ = uid.rpartition(".")
    return head + dot if dot else None
