"""swarmnet's averaging engine among peer processes, one per testbed namespace (or on loopback).

Each peer joins the real DHT (``HivemindTransport``) and runs one ``Averager`` per codec (one run per
codec). Rounds start at a shared wall-clock moment written by the runner, as in the hivemind baseline
(``hivemind_averaging.py``): peer i starts round r with ``pattern + i + 1 + r % 4``, so the exact
average is ``pattern + (N + 1) / 2 + r % 4``. Each peer writes its ``Outcome`` per round to a file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run by path (python scripts/bench/x.py): the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.bench.rounds import async_wait_for, checks_after, cpu_ticks, tail, wait_for, write_atomic
from scripts.bench.rounds import pattern as make_pattern

ROOT = Path(__file__).resolve().parents[2]
# One torch thread per peer: the peers share this machine's cores, and oversubscribed OpenMP threads
# spin-wait at their barriers. The hivemind baseline's peers get the same.
PEER_ENV = ["OMP_NUM_THREADS=1"]


@dataclass(frozen=True)
class PeerSpec:
    """What a peer process needs to know (passed as JSON on its command line)."""

    index: int
    peers: int
    ip: str
    numel: int
    rounds: int
    codecs: tuple[str, ...]
    bandwidth_mbps: float
    workdir: str
    min_wait: float = 0.5
    victim: int | None = None  # this peer SIGKILLs itself mid-round (after sending its first part)
    pace_mbps: float | None = None  # AveragingConfig.pace_mbps
    straggler_grace: float | None = None  # DeadlineConfig.straggler_grace (None: the default)


async def run_peer(spec: PeerSpec) -> None:
    """One peer: join the DHT, then for each codec run ``rounds`` synchronized steps."""
    from swarmnet.averaging import Averager, AveragingConfig, DeadlineConfig, MatchmakingConfig
    from swarmnet.identity import Identity
    from swarmnet.transport.hivemind_transport import HivemindConfig, HivemindTransport

    workdir = Path(spec.workdir)
    initial: tuple[str, ...] = ()
    if spec.index > 0:
        initial = tuple(json.loads(await async_wait_for(workdir / "maddrs.json", 120)))
    identity = Identity.generate()
    config = HivemindConfig(host_maddrs=(f"/ip4/{spec.ip}/tcp/0",), initial_peers=initial)
    transport = await HivemindTransport.create(identity, config)
    if spec.victim == spec.index:
        _die_after_first_part(transport)
    try:
        if spec.index == 0:
            write_atomic(workdir / "maddrs.json", json.dumps(await transport.visible_addresses()))
        matchmaking = MatchmakingConfig(
            target_group_size=spec.peers, min_group_size=spec.peers, min_wait=spec.min_wait, timeout=60.0
        )
        base = make_pattern(spec.numel)
        grace = {} if spec.straggler_grace is None else {"straggler_grace": spec.straggler_grace}
        for codec in spec.codecs:
            averager = Averager(
                transport,
                identity,
                AveragingConfig(
                    run=f"bench-{codec}",
                    codec=codec,
                    bandwidth_mbps=spec.bandwidth_mbps,
                    pace_mbps=spec.pace_mbps,
                    matchmaking=matchmaking,
                    deadlines=DeadlineConfig(**grace),
                ),
            )
            await averager.start()
            for r in range(spec.rounds):
                tensor = base + spec.index + 1 + r % 4
                (workdir / f"ready-{codec}-{r}-{spec.index}").touch()
                start = float(await async_wait_for(workdir / f"start-{codec}-{r}", 600))
                await asyncio.sleep(max(0.0, start - time.time()))
                t_step = time.time()
                outcome = await averager.step([tensor], round_id=r)
                t_done = time.time()
                result = {
                    "peer": spec.index, "peer_id": identity.peer_id, "members": outcome.members,
                    "start": start, "step": t_step, "done": t_done,
                    "formed": t_step + outcome.phase_seconds.get("matchmaking", 0.0),
                    "succeeded": outcome.succeeded, "reason": outcome.reason,
                    "contributors": len(outcome.contributors), "bytes_sent": outcome.total_bytes_sent,
                    "phases": outcome.phase_seconds, "failed": outcome.failed, "rejected": outcome.rejected,
                }  # fmt: skip
                write_atomic(workdir / f"result-{codec}-{r}-{spec.index}.json", json.dumps(result))
                await async_wait_for(workdir / f"over-{codec}-{r}", 600)  # see rounds.checks_after
                offsets = [i + 1 for i in range(spec.peers) if i != spec.victim]
                expected = base + sum(offsets) / len(offsets) + r % 4
                check = {
                    "max_abs_error": float((tensor - expected).abs().max()),
                    "rel_error": float((tensor - expected).norm() / expected.norm()),
                }
                write_atomic(workdir / f"check-{codec}-{r}-{spec.index}.json", json.dumps(check))
        await async_wait_for(workdir / "stop", 600)
    finally:
        await transport.shutdown()


def _die_after_first_part(transport: Any) -> None:
    """Make this process SIGKILL itself once its first data part is on the wire: a peer dying mid-round."""
    original = transport.call_stream

    async def dying(requests: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        async for request in requests:
            yield request
            if b'"kind":"part"' in request[:512]:
                os.kill(os.getpid(), signal.SIGKILL)

    def call_stream(peer: str, method: str, requests: AsyncIterable[bytes], *, timeout: float | None = None) -> Any:
        return original(peer, method, dying(requests), timeout=timeout)

    transport.call_stream = call_stream


def run_swarmnet(
    nodes: list[Any],
    numel: int,
    rounds: int,
    codecs: list[str],
    *,
    warmup_rounds: int = 1,
    rate_mbit: float = 100.0,
    victim: int | None = None,
    fresh_per_codec: bool = True,
    pace_mbps: float | None = None,
    straggler_grace: float | None = None,
) -> dict[str, dict[str, Any]]:
    """Run every codec for ``warmup_rounds + rounds`` rounds among ``nodes``; medians of the measured rounds.

    ``nodes`` are testbed nodes (with ``ip``, ``popen``, ``tx_bytes``). Returns per codec: ``seconds``
    (shared start to last peer done), ``data_seconds`` (first peer with a group to last peer done),
    ``matchmaking_seconds``, ``bytes_per_peer`` (veth tx), ``payload_bytes_per_peer`` (what the outcome
    counted), ``max_abs_error`` and ``rel_error`` against the exact average, and ``rounds`` (raw).
    With a ``victim``, that peer kills itself in the first round and the others must finish without it.

    ``fresh_per_codec``: each codec gets its own peer processes (new DHT, daemons and connections), as
    the hivemind baseline does. On peers that already ran one codec, rounds of the next run slower with
    identical settings, so sharing processes favours the first codec.
    ``pace_mbps``: each peer's ``AveragingConfig.pace_mbps`` (None: unpaced). ``straggler_grace``: the
    least time a reducer waits for a part (None: the default); tests on a busy loopback raise it, since
    a peer the OS does not schedule for a second is cut as a straggler.
    """
    grace = straggler_grace
    if fresh_per_codec:
        report: dict[str, dict[str, Any]] = {}
        for codec in codecs:
            report |= _run_codecs(nodes, numel, rounds, [codec], warmup_rounds, rate_mbit, victim, pace_mbps, grace)
        return report
    return _run_codecs(nodes, numel, rounds, codecs, warmup_rounds, rate_mbit, victim, pace_mbps, grace)


def _run_codecs(
    nodes: list[Any],
    numel: int,
    rounds: int,
    codecs: list[str],
    warmup_rounds: int,
    rate_mbit: float,
    victim: int | None,
    pace_mbps: float | None,
    straggler_grace: float | None = None,
) -> dict[str, dict[str, Any]]:
    """``run_swarmnet`` with one set of peer processes for all of ``codecs``, one after another."""
    total = warmup_rounds + rounds
    with tempfile.TemporaryDirectory(prefix="sw-avg-") as tmp:
        workdir = Path(tmp)
        procs = [
            _start_peer(
                node,
                PeerSpec(
                    i,
                    len(nodes),
                    node.ip,
                    numel,
                    total,
                    tuple(codecs),
                    rate_mbit,
                    tmp,
                    victim=victim,
                    pace_mbps=pace_mbps,
                    straggler_grace=straggler_grace,
                ),
            )
            for i, node in enumerate(nodes)
        ]
        try:
            report = {}
            for codec in codecs:
                raw = [_run_round(codec, r, nodes, procs, workdir, r < warmup_rounds, victim) for r in range(total)]
                report[codec] = _summarize(raw)
            (workdir / "stop").touch()
            for i, proc in enumerate(procs):
                if i != victim:
                    proc.wait(timeout=60)
            return report
        except Exception as e:
            tails = "\n".join(tail(workdir / f"peer-{i}.log", 30) for i in range(len(nodes)))
            raise RuntimeError(f"swarmnet averaging failed: {e}\n{tails}") from e
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()


def _start_peer(node: Any, spec: PeerSpec) -> subprocess.Popen[Any]:
    argv = ["env", *PEER_ENV, sys.executable, "-m", "scripts.bench.swarmnet_averaging", "peer"]
    argv.append(json.dumps(spec.__dict__))
    with (Path(spec.workdir) / f"peer-{spec.index}.log").open("w") as log:
        proc: subprocess.Popen[Any] = node.popen(
            argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        return proc


def _run_round(
    codec: str,
    r: int,
    nodes: list[Any],
    procs: list[subprocess.Popen[Any]],
    workdir: Path,
    warm: bool,
    victim: int | None,
) -> dict[str, Any]:
    deadline = time.monotonic() + 300
    alive = [i for i in range(len(nodes)) if i != victim]
    watched = [p for i, p in enumerate(procs) if i != victim]
    for i in alive if r > 0 else range(len(nodes)):
        wait_for(workdir / f"ready-{codec}-{r}-{i}", deadline, watched)
    tx_before = [node.tx_bytes() for node in nodes]
    start = time.time() + 0.25
    write_atomic(workdir / f"start-{codec}-{r}", repr(start))
    cpu_before = cpu_ticks()
    results = [json.loads(wait_for(workdir / f"result-{codec}-{r}-{i}.json", deadline, watched)) for i in alive]
    cpu_after = cpu_ticks()
    tx = [node.tx_bytes() - before for node, before in zip(nodes, tx_before, strict=True)]
    checks = checks_after(workdir, f"{codec}-{r}", alive, deadline, watched)
    results = [p | check for p, check in zip(results, checks, strict=True)]
    complete = all(p["succeeded"] and p["contributors"] == len(alive) for p in results)
    if not complete:  # recorded, not fatal: a benchmark reports what happened (and its error shows it)
        print(f"{codec} round {r}: not every peer contributed everywhere", file=sys.stderr)
    return {
        "complete": complete,
        "round": r, "warmup": warm, "seconds": max(p["done"] for p in results) - start,
        "matchmaking_seconds": max(p["formed"] for p in results) - start,
        "data_seconds": max(p["done"] for p in results) - min(p["formed"] for p in results),
        "tx_bytes": tx, "peers": results,
        # Share of the machine's CPU time busy from the shared start to the last result (whole machine).
        "cpu_busy": (cpu_after[0] - cpu_before[0]) / max(1, cpu_after[1] - cpu_before[1]),
    }  # fmt: skip


def _summarize(raw: list[dict[str, Any]]) -> dict[str, Any]:
    measured = [rd for rd in raw if not rd["warmup"]] or raw
    return {
        "seconds": statistics.median(rd["seconds"] for rd in measured),
        "data_seconds": statistics.median(rd["data_seconds"] for rd in measured),
        "matchmaking_seconds": statistics.median(rd["matchmaking_seconds"] for rd in measured),
        "cpu_busy": statistics.median(rd["cpu_busy"] for rd in measured),
        "incomplete_rounds": sum(not rd["complete"] for rd in measured),
        "bytes_per_peer": statistics.median(b for rd in measured for b in rd["tx_bytes"]),
        "payload_bytes_per_peer": statistics.median(p["bytes_sent"] for rd in measured for p in rd["peers"]),
        "max_abs_error": max(p["max_abs_error"] for rd in measured for p in rd["peers"]),
        "rel_error": max(p["rel_error"] for rd in measured for p in rd["peers"]),
        "rounds": raw,
    }


def main(argv: list[str] | None = None) -> int:
    """``peer SPEC_JSON``: run one peer (the runner starts these)."""
    args = argparse.ArgumentParser(prog="swarmnet_averaging")
    args.add_argument("role", choices=["peer"])
    args.add_argument("spec", type=json.loads)
    parsed = args.parse_args(argv)
    # SWARMNET_BENCH_LOG=INFO shows every failure and retry in the peers' logs (kept with a failed run's error).
    level = os.environ.get("SWARMNET_BENCH_LOG", "WARNING")
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(message)s")
    spec = PeerSpec(**{**parsed.spec, "codecs": tuple(parsed.spec["codecs"])})
    asyncio.run(run_peer(spec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
