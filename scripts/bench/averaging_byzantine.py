"""What one Byzantine peer of a group can do to the others' average, on the in-memory transport (virtual time).

Three attacks, each made on the wire (the attacker's messages are rewritten as they leave it):

* **weight**: 5 peers; the attacker sends its update sign-flipped and scaled by 10, and claims weight 1
  or 1e6 in its parts' headers, under each rule, with ``max_weight`` 1 (the default) and 1e6;
* **bandwidth**: 4 peers; the attacker announces 1e6 Mbit/s (the others 100): the share of the vector it
  reduces;
* **lying reducer**: 5 peers under a robust rule; the attacker reduces honestly but shifts its result by
  ``alpha`` times its RMS along a fixed sign pattern (or scales it by 1000, or sends NaN): the honest
  peers' error, and how many of them found it out (``Outcome.distrusted``).

Errors are relative to the plain mean of the honest updates (``signal + 10% noise`` each), the largest
over the honest peers. A few seconds of CPU.

    .venv/bin/python -m scripts.bench.averaging_byzantine --json artifacts/bench/averaging_byzantine.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from unittest import mock

import torch

from swarmnet.averaging import AggregationConfig, Averager, AveragingConfig, MatchmakingConfig, Outcome
from swarmnet.averaging.group import partition
from swarmnet.averaging.messages import DataHeader, decode_message, encode_message
from swarmnet.clock import run_virtual
from swarmnet.compression import get_codec
from swarmnet.identity import Identity
from swarmnet.transport.memory import MemoryNetwork, MemoryTransport

NUMEL = 20_000
RULES = ["mean", "median", "centered_clip", "trimmed_mean"]
ALPHAS = [0.0, 0.1, 0.2, 0.3, 0.4, 1.0, 3.0]
Rewrite = Callable[[DataHeader, memoryview], tuple[DataHeader, bytes] | None]


def base_config(peers: int, rule: str = "mean", **changes: Any) -> AveragingConfig:
    matchmaking = MatchmakingConfig(target_group_size=peers, min_group_size=2, min_wait=0.5, timeout=5.0)
    aggregation = AggregationConfig(rule=rule)  # type: ignore[arg-type]
    return replace(AveragingConfig(run="b", matchmaking=matchmaking, aggregation=aggregation), **changes)


@dataclass(frozen=True)
class Node:
    averager: Averager
    transport: MemoryTransport


async def make_nodes(network: MemoryNetwork, configs: Sequence[AveragingConfig]) -> list[Node]:
    nodes = []
    for config in configs:
        identity = Identity.generate()
        transport = network.add_peer(identity.peer_id)
        averager = Averager(transport, identity, config)
        await averager.start()
        nodes.append(Node(averager, transport))
    return nodes


def rewrite_sends(transport: MemoryTransport, rewrite: Rewrite) -> None:
    """Pass every data message ``transport`` sends through ``rewrite`` (None: unchanged)."""
    original_unary, original_stream = transport.call_unary, transport.call_stream

    def changed(request: bytes) -> bytes:
        header, payload = decode_message(request, DataHeader)
        replacement = rewrite(header, payload)
        return request if replacement is None else encode_message(*replacement)

    async def call_unary(target: str, method: str, request: bytes, *, timeout: float | None = None) -> bytes:
        return await original_unary(target, method, changed(request) if method.endswith(".data") else request,
                                    timeout=timeout)  # fmt: skip

    async def rewritten(requests: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        async for request in requests:
            yield changed(request)

    def call_stream(target: str, method: str, requests: AsyncIterable[bytes], *, timeout: float | None = None) -> Any:
        return original_stream(target, method, rewritten(requests), timeout=timeout)

    transport.call_unary = call_unary  # type: ignore[method-assign,assignment]
    transport.call_stream = call_stream  # type: ignore[method-assign,assignment]


def honest_updates(count: int, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    signal = torch.randn(NUMEL, generator=gen)
    return [signal + 0.1 * torch.randn(NUMEL, generator=gen) for _ in range(count)]


async def average(nodes: Sequence[Node], tensors: Sequence[torch.Tensor]) -> list[Outcome]:
    steps = [n.averager.step([t], round_id=0) for n, t in zip(nodes, tensors, strict=True)]
    return list(await asyncio.gather(*steps))


def worst_error(tensors: Sequence[torch.Tensor], target: torch.Tensor) -> float:
    return max(float((t - target).norm() / target.norm()) for t in tensors)


async def weight_attack(rule: str, claimed: float, max_weight: float) -> dict[str, Any]:
    nodes = await make_nodes(MemoryNetwork(), [base_config(5, rule, max_weight=max_weight)] * 5)
    honest = honest_updates(4, seed=1)
    target = torch.stack(honest).mean(dim=0)
    tensors = [t.clone() for t in honest] + [honest[0] * -10.0]

    def claim(header: DataHeader, payload: memoryview) -> tuple[DataHeader, bytes] | None:
        return (header.model_copy(update={"weight": claimed}), bytes(payload)) if header.kind == "part" else None

    rewrite_sends(nodes[4].transport, claim)
    outcomes = await average(nodes, tensors)
    liar = nodes[4].transport.peer_id
    return {
        "rule": rule, "claimed_weight": claimed, "max_weight": max_weight,
        "error": worst_error(tensors[:4], target), "rejected": all(liar in o.rejected for o in outcomes[:4]),
    }  # fmt: skip


async def bandwidth_attack() -> dict[str, Any]:
    used: list[list[tuple[int, int]]] = []

    def recording(numel: int, bandwidths: Sequence[float]) -> list[tuple[int, int]]:
        used.append(partition(numel, bandwidths))
        return used[-1]

    with mock.patch("swarmnet.averaging.allreduce.partition", recording):  # the ranges the round used
        nodes = await make_nodes(MemoryNetwork(), [base_config(4)] * 3 + [base_config(4, bandwidth_mbps=1e6)])
        outcomes = await average(nodes, honest_updates(4, seed=3))
    liar = outcomes[0].members.index(nodes[3].transport.peer_id)
    shares = [(hi - lo) / NUMEL for lo, hi in used[0]]
    return {"announced_mbps": [100.0, 100.0, 100.0, 1e6], "attacker_share": shares[liar], "shares": shares}


def shifted(alpha: float) -> Callable[[torch.Tensor], torch.Tensor]:
    pattern = torch.randn(NUMEL, generator=torch.Generator().manual_seed(6)).sign()
    return lambda r: r + alpha * r.norm() / r.numel() ** 0.5 * pattern[: r.numel()]


async def lying_reducer(rule: str, name: str, lie: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, Any]:
    nodes = await make_nodes(MemoryNetwork(), [base_config(5, rule)] * 5)
    tensors = honest_updates(5, seed=5)
    target = torch.stack(tensors).mean(dim=0)
    codec = get_codec("none")

    def result_lie(header: DataHeader, payload: memoryview) -> tuple[DataHeader, bytes] | None:
        if header.kind not in ("result", "amend") or not len(payload):
            return None
        return header, codec.encode(lie(codec.decode(payload).clone()).contiguous())

    rewrite_sends(nodes[4].transport, result_lie)
    outcomes = await average(nodes, tensors)
    liar = nodes[4].transport.peer_id
    members = outcomes[0].members
    lo, hi = partition(NUMEL, [100.0] * len(members))[members.index(liar)]
    honest = tensors[:4]
    return {
        "rule": rule, "lie": name, "error": worst_error(honest, target),
        "error_in_its_range": worst_error([t[lo:hi] for t in honest], target[lo:hi]),
        "found_by": sum(liar in getattr(o, "distrusted", {}) for o in outcomes[:4]),
        "unaveraged_elements": max(o.unaveraged_elements for o in outcomes[:4]),
    }  # fmt: skip


async def measure() -> dict[str, Any]:
    weights = [await weight_attack(rule, claimed, bound) for rule in RULES for claimed in (1.0, 1e6)
               for bound in (1.0, 1e6)]  # fmt: skip
    lies: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {f"shift {a:g} x RMS": shifted(a) for a in ALPHAS}
    lies |= {"scaled x1000": lambda r: r * 1000, "NaN": lambda r: torch.full_like(r, float("nan"))}
    reducers = [await lying_reducer(rule, name, lie) for rule in RULES[1:] for name, lie in lies.items()]
    return {"numel": NUMEL, "weight": weights, "bandwidth": await bandwidth_attack(), "lying_reducer": reducers}


def print_report(report: dict[str, Any]) -> None:
    print(f"{'rule':14} {'claimed':>8} {'max_weight':>10} {'error':>8}  rejected")
    for row in report["weight"]:
        print(f"{row['rule']:14} {row['claimed_weight']:8g} {row['max_weight']:10g} {row['error']:8.3f}  "
              f"{row['rejected']}")  # fmt: skip
    bandwidth = report["bandwidth"]
    print(f"\nannounced {bandwidth['announced_mbps']} Mbit/s: the attacker reduces {bandwidth['attacker_share']:.1%}")
    print(f"\n{'rule':14} {'lie':18} {'error':>8} {'in range':>9} {'found by':>9}")
    for row in report["lying_reducer"]:
        print(f"{row['rule']:14} {row['lie']:18} {row['error']:8.3f} {row['error_in_its_range']:9.3f} "
              f"{row['found_by']:>7}/4")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Measure, print the tables, and write the JSON if asked."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.ERROR)  # the engine warns about every lie it finds: the tables say it
    report = run_virtual(measure())
    print_report(report)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
