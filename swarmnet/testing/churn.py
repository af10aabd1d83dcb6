"""Membership under churn: many peers join and leave (cleanly or by dying) in virtual time.

An observer lists the swarm at regular instants and compares the listing with the ground
truth the simulation knows: a live, announced peer must be listed; a peer that left cleanly
must not be; a dead peer may linger only until its announcement expires.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

from swarmnet.clock import run_virtual
from swarmnet.errors import ConfigError
from swarmnet.identity import Identity
from swarmnet.membership import MembershipConfig, PeerInfo, Swarm
from swarmnet.transport.memory import MemoryNetwork

__all__ = ["ChurnConfig", "ChurnReport", "simulate_churn"]


@dataclass(frozen=True, kw_only=True)
class ChurnConfig:
    """Shape of the simulated swarm."""

    peers: int = 1000  # peers that join over the run
    seed: int = 0  # drives join times, lifetimes and how each peer exits
    join_window: float = 300.0  # virtual seconds over which peers arrive (uniformly)
    mean_lifetime: float = 200.0  # mean of the exponential time a peer stays
    clean_leave_share: float = 0.5  # the rest die without a word (SIGKILL-like)
    duration: float = 600.0  # virtual seconds simulated
    check_interval: float = 10.0  # the observer lists the swarm this often
    membership: MembershipConfig = field(
        default_factory=lambda: MembershipConfig(swarm="sim", ttl=15.0, heartbeat_interval=5.0)
    )

    def validate(self) -> None:
        """Raise ``ConfigError`` for an impossible setup."""
        if self.peers < 1 or self.duration <= 0 or self.check_interval <= 0 or self.mean_lifetime <= 0:
            raise ConfigError(f"invalid churn simulation: {self}")
        if not 0 <= self.clean_leave_share <= 1:
            raise ConfigError("clean_leave_share must be within [0, 1]")
        self.membership.validate()


@dataclass(frozen=True)
class ChurnReport:
    """What happened and how well membership tracked it."""

    peers: int
    joins: int
    clean_leaves: int
    deaths: int
    checks: int
    max_listed: int
    missing: int  # live announced peers absent from a listing (should be 0)
    stale_clean: int  # cleanly departed peers still listed (should be 0)
    stale_dead: int  # dead peers listed after their announcement expired (should be 0)
    virtual_seconds: float
    wall_seconds: float


@dataclass
class _Truth:
    """Ground truth, per peer id: when it became listed, and when it stopped being live."""

    announced_at: dict[str, float] = field(default_factory=dict)
    left_at: dict[str, float] = field(default_factory=dict)
    died_at: dict[str, float] = field(default_factory=dict)


async def _peer_life(network: MemoryNetwork, config: ChurnConfig, truth: _Truth, rng: random.Random) -> None:
    join_at = rng.uniform(0, config.join_window)
    lifetime = rng.expovariate(1 / config.mean_lifetime)
    clean = rng.random() < config.clean_leave_share
    await asyncio.sleep(join_at)
    identity = Identity.generate()
    transport = network.add_peer(identity.peer_id)
    swarm = Swarm(transport, identity, config.membership)
    await swarm.join(PeerInfo(roles=("sim",)))
    truth.announced_at[identity.peer_id] = network.clock.time()
    await asyncio.sleep(lifetime)
    if clean:
        await swarm.leave()
        truth.left_at[identity.peer_id] = network.clock.time()
        await transport.shutdown()
    else:
        network.kill(identity.peer_id)
        truth.died_at[identity.peer_id] = network.clock.time()


def _score(listed: set[str], truth: _Truth, now: float, ttl: float) -> tuple[int, int, int]:
    live = set(truth.announced_at) - set(truth.left_at) - set(truth.died_at)
    missing = len(live - listed)
    stale_clean = len(listed & set(truth.left_at))
    stale_dead = sum(1 for p in listed & set(truth.died_at) if now - truth.died_at[p] > ttl)
    return missing, stale_clean, stale_dead


async def _simulate(config: ChurnConfig) -> ChurnReport:
    network = MemoryNetwork()
    rng = random.Random(config.seed)
    truth = _Truth()
    lives = [
        asyncio.create_task(_peer_life(network, config, truth, random.Random(rng.random())))
        for _ in range(config.peers)
    ]
    observer_identity = Identity.generate()
    observer = Swarm(network.add_peer(observer_identity.peer_id), observer_identity, config.membership)
    checks = max_listed = missing = stale_clean = stale_dead = 0
    start = network.clock.time()
    while network.clock.time() - start < config.duration:
        await asyncio.sleep(config.check_interval)
        listed = {m.peer_id for m in await observer.peers()}
        now = network.clock.time()
        m, c, d = _score(listed, truth, now, config.membership.ttl)
        checks, max_listed = checks + 1, max(max_listed, len(listed))
        missing, stale_clean, stale_dead = missing + m, stale_clean + c, stale_dead + d
    for task in lives:
        task.cancel()
    await asyncio.gather(*lives, return_exceptions=True)
    return ChurnReport(
        peers=config.peers,
        joins=len(truth.announced_at),
        clean_leaves=len(truth.left_at),
        deaths=len(truth.died_at),
        checks=checks,
        max_listed=max_listed,
        missing=missing,
        stale_clean=stale_clean,
        stale_dead=stale_dead,
        virtual_seconds=network.clock.time() - start,
        wall_seconds=0.0,
    )


def simulate_churn(config: ChurnConfig | None = None) -> ChurnReport:
    """Run the simulation in virtual time; ``wall_seconds`` is what it cost in real time."""
    config = config or ChurnConfig()
    config.validate()
    started = time.perf_counter()
    report = run_virtual(_simulate(config))
    return ChurnReport(**{**report.__dict__, "wall_seconds": time.perf_counter() - started})
