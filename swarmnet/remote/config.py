"""Configuration of the remote-module layer: request limits, batching, records and routing."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from swarmnet.errors import ConfigError
from swarmnet.keyspace import REMOTE_MODULE_MAX_LIFETIME

__all__ = ["UID_PATTERN", "ClientConfig", "RequestLimits", "RoutingConfig", "ServerConfig", "check_uid"]

# A module uid: dotted names such as ``RUN.stage.2`` or an expert ``RUN.L.3.7``; no '/' (it is part of a key).
UID_PATTERN = re.compile(r"[A-Za-z0-9_\-:]{1,64}(\.[A-Za-z0-9_\-:]{1,64}){0,7}")


def check_uid(uid: str) -> str:
    """Return ``uid`` if it is a valid module uid, else raise ``ConfigError``."""
    if len(uid) > 128 or UID_PATTERN.fullmatch(uid) is None:
        raise ConfigError(f"invalid module uid {uid[:140]!r}: dotted names of [A-Za-z0-9_-:], at most 128 chars")
    return uid


@dataclass(frozen=True, kw_only=True)
class RequestLimits:
    """What one request may ask of a server; checked before any tensor of the request is decoded."""

    max_request_bytes: int = 64 * 1024 * 1024  # the whole message
    max_tensors: int = 8  # inputs plus, for backward, the output gradient
    max_elements: int = 2**24  # per tensor
    max_ndim: int = 6
    max_samples: int = 1024  # the leading (batch) dimension of one request

    def validate(self) -> None:
        """Raise ``ConfigError`` for a non-positive limit."""
        if min(self.max_request_bytes, self.max_tensors, self.max_elements, self.max_ndim, self.max_samples) <= 0:
            raise ConfigError(f"request limits must be positive: {self}")


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """How a module server batches work and announces its modules."""

    max_batch: int = 64  # samples merged into one forward or backward; 1 turns batching off
    max_wait: float = 0.002  # seconds the first request of a batch waits for others to join it
    # A batch expected (from this module's measured seconds per sample) to compute within this many seconds
    # runs on the event loop: a hop to a worker thread costs more than such short work. 0: always a thread.
    inline_max_seconds: float = 0.002
    max_queue: int = 256  # requests waiting per module; beyond it requests are refused (overloaded)
    limits: RequestLimits = field(default_factory=RequestLimits)
    record_ttl: float = 30.0  # seconds a module record stays valid; at most the family's bound
    announce_interval: float = 10.0  # seconds between record refreshes; must fit twice in ``record_ttl``
    throughput_half_life: float = 10.0  # seconds of busy time over which the throughput EWMA forgets
    initial_throughput: float = 1.0  # samples/s announced before any work was measured

    def validate(self) -> None:
        """Raise ``ConfigError`` for inconsistent settings."""
        self.limits.validate()
        if self.max_batch <= 0 or self.max_wait < 0 or self.max_queue <= 0 or self.inline_max_seconds < 0:
            raise ConfigError("max_batch and max_queue must be positive, max_wait and inline_max_seconds non-negative")
        if not 0 < self.record_ttl <= REMOTE_MODULE_MAX_LIFETIME:
            raise ConfigError(f"record_ttl must be in (0, {REMOTE_MODULE_MAX_LIFETIME:g}] seconds")
        if not 0 < self.announce_interval <= self.record_ttl / 2:
            raise ConfigError("announce_interval must be in (0, record_ttl/2]")
        if self.throughput_half_life <= 0 or self.initial_throughput <= 0:
            raise ConfigError("throughput_half_life and initial_throughput must be positive")


@dataclass(frozen=True, kw_only=True)
class RoutingConfig:
    """How a client picks among a module's replicas."""

    min_throughput: float = 1e-3  # samples/s: claims below are read as this
    max_throughput: float = 1e6  # samples/s: claims above are read as this (no one can buy all traffic)
    max_queue: int = 10_000  # claimed queue lengths are clamped to this
    default_latency: float = 0.05  # seconds assumed for a replica never called yet (when none was)
    min_latency: float = 1e-3  # seconds: a shorter measured call is read as this (no network is faster)
    latency_half_life: int = 8  # calls over which the latency EWMA forgets
    ban_time: float = 30.0  # seconds a replica that failed is avoided
    max_slowdown: float = 8.0  # replicas expected this many times slower than the best are not picked
    seed: int | None = None  # for reproducible routing in simulations

    def validate(self) -> None:
        """Raise ``ConfigError`` for inconsistent settings."""
        if not 0 < self.min_throughput <= self.max_throughput or self.max_queue < 0:
            raise ConfigError("throughput bounds must satisfy 0 < min <= max; max_queue >= 0")
        if (
            self.default_latency <= 0
            or self.min_latency <= 0
            or self.latency_half_life <= 0
            or self.ban_time < 0
            or self.max_slowdown < 1
        ):
            raise ConfigError(f"invalid routing settings: {self}")


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """How a client calls remote modules."""

    codec: str = "none"  # codec of activations and gradients, both ways, unless a call names another
    timeout: float = 30.0  # seconds one attempt may take
    max_attempts: int = 4  # replicas tried before a call fails
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    limits: RequestLimits = field(default_factory=RequestLimits)  # what a reply may hold
    lookup_interval: float = 5.0  # seconds a uid's replica list is cached

    def validate(self) -> None:
        """Raise ``ConfigError`` for inconsistent settings."""
        self.routing.validate()
        self.limits.validate()
        if self.timeout <= 0 or self.max_attempts <= 0 or self.lookup_interval < 0:
            raise ConfigError("timeout and max_attempts must be positive, lookup_interval non-negative")
