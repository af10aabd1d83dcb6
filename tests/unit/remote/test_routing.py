"""Replica choice: at random in proportion to speed, claims clamped, queues and failures avoided."""

from __future__ import annotations

from collections import Counter

from swarmnet.remote import Replica, ReplicaRouter, RoutingConfig


def _replica(peer: str, throughput: float, queue: int = 0) -> Replica:
    return Replica(peer, "RUN.stage.0", throughput, queue, 1, expires_at=1e12)


def _shares(router: ReplicaRouter, replicas: list[Replica], draws: int = 4000) -> dict[str, float]:
    counts = Counter(r.peer_id for r in (router.choose(replicas, 0.0) for _ in range(draws)) if r is not None)
    return {peer: n / draws for peer, n in counts.items()}


def test_choice_is_random_in_proportion_to_throughput() -> None:
    router = ReplicaRouter(RoutingConfig(default_latency=1e-6, seed=0))
    shares = _shares(router, [_replica("a", 100.0), _replica("b", 300.0)])
    assert 0.70 < shares["b"] < 0.80


def test_claimed_throughput_is_clamped() -> None:
    router = ReplicaRouter(RoutingConfig(default_latency=1e-6, max_throughput=1000.0, seed=0))
    shares = _shares(router, [_replica("liar", 1e300), _replica("b", 500.0)])
    assert 0.60 < shares["liar"] < 0.73  # 1000 : 500, not everything


def test_long_queues_and_much_slower_replicas_are_avoided() -> None:
    router = ReplicaRouter(RoutingConfig(default_latency=1e-3, max_slowdown=4.0, seed=0))
    shares = _shares(router, [_replica("busy", 100.0, queue=1000), _replica("idle", 100.0)])
    assert shares == {"idle": 1.0}


def test_measured_latency_overrides_claims() -> None:
    router = ReplicaRouter(RoutingConfig(default_latency=1e-3, max_slowdown=4.0, seed=0))
    router.succeeded("claims-fast", 2.0)  # it says 1e5 samples/s but took 2 s
    router.succeeded("b", 0.01)
    shares = _shares(router, [_replica("claims-fast", 1e5), _replica("b", 10.0)])
    assert shares == {"b": 1.0}


def test_a_failed_replica_is_banned_until_the_ban_expires() -> None:
    router = ReplicaRouter(RoutingConfig(ban_time=30.0, seed=0))
    replicas = [_replica("a", 100.0), _replica("b", 100.0)]
    router.failed("a", now=0.0)
    assert {router.choose(replicas, 10.0).peer_id for _ in range(50)} == {"b"}  # type: ignore[union-attr]
    assert router.choose(replicas, 10.0, exclude=frozenset({"b"})) is None
    assert not router.banned("a", 31.0)
