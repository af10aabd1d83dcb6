"""Benchmark: averaging a 100 MB state among 4 peers over 100 Mbit/s links, swarmnet vs hivemind.

Every peer is a separate process in its own network namespace (``scripts/testbed.py``), its link
shaped to ``--rate-mbit`` both ways with tbf. Same run, same testbed: hivemind's
``DecentralizedAverager`` with fp16 (the baseline, tuned as its docs advise; settings in the JSON),
then swarmnet's ``Averager`` with each codec. Per configuration: the whole round (shared start to the
last peer done, group formation included), the data phase alone, bytes sent per peer (veth counters)
and the bandwidth bound of its payload, ``2 (N-1)/N * payload / link rate``. Needs root.

    .venv/bin/python -m scripts.bench.averaging --json artifacts/bench/averaging.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run by path (python scripts/bench/x.py): the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.bench.hivemind_averaging import run_hivemind_baseline
from scripts.bench.swarmnet_averaging import run_swarmnet
from scripts.testbed import TestbedConfig, testbed, testbed_unavailable

CODECS = ["none", "fp16", "int8", "sign1bit", "topk1pct"]
NAMES = {"none": "none", "fp16": "fp16", "int8": "int8", "sign1bit": "sign1bit_ef", "topk1pct": "topk1pct_ef"}


def bound_seconds(codec: str, numel: int, peers: int, rate_mbit: float) -> float:
    """Seconds to move a butterfly all-reduce's share of ``codec``'s payload over one link."""
    from swarmnet.compression import get_codec

    payload = numel * 4 * (get_codec(codec).estimated_ratio(numel) if codec != "hivemind_fp16" else 0.5)
    return 2 * (peers - 1) / peers * payload * 8 / (rate_mbit * 1e6)


def targets(report: dict[str, Any]) -> list[tuple[str, bool]]:
    """The project's targets, each with whether this run met it."""
    c = report["configs"]
    checks = [(f"{n}: data phase <= 1.3x bound", c[n]["data_seconds"] <= 1.3 * c[n]["bound_seconds"]) for n in
              ("none", "fp16", "int8")]  # fmt: skip
    checks += [(f"{n}: data phase <= bound + 0.5 s", c[n]["data_seconds"] <= c[n]["bound_seconds"] + 0.5) for n in
               ("sign1bit_ef", "topk1pct_ef")]  # fmt: skip
    hm = c["hivemind_fp16"]["seconds"]
    checks.append(("fp16 whole round <= hivemind fp16", c["fp16"]["seconds"] <= hm))
    checks.append(("sign1bit_ef whole round >= 8x faster than hivemind fp16", c["sign1bit_ef"]["seconds"] * 8 <= hm))
    incomplete = sum(c[n]["incomplete_rounds"] for n in NAMES.values())
    checks.append((f"every measured round complete ({incomplete} incomplete)", incomplete == 0))
    slowest = max(c[n]["matchmaking_seconds"] for n in NAMES.values())
    checks.append((f"group formation < 1 s (slowest median {slowest:.2f} s)", slowest < 1.0))
    return checks


def _codecs(parser: argparse.ArgumentParser, names: str) -> list[str]:
    """The codecs named on the command line (a JSON name such as ``sign1bit_ef`` stands for its codec);
    an unknown one is a usage error now, not a peer that dies at startup after the testbed is up."""
    by_config = {config: codec for codec, config in NAMES.items()}
    codecs = [by_config.get(name, name) for name in names.split(",") if name]
    unknown = [name for name in codecs if name not in CODECS]
    if unknown or not codecs:
        parser.error(f"--codecs: unknown {', '.join(unknown) or '(none given)'}; known: {', '.join(CODECS)}")
    return codecs


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table and the targets; write JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--numel", type=int, default=25_000_000)
    parser.add_argument("--peers", type=int, default=4)
    parser.add_argument("--rate-mbit", type=float, default=100.0)
    parser.add_argument("--mtu", type=int, default=9000, help="link MTU (1500: the internet's; docs/performance.md)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per configuration (medians)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--codecs", default=",".join(CODECS), help=f"comma-separated, of {', '.join(CODECS)} (or their JSON names)"
    )
    parser.add_argument(
        "--pace", type=float, default=0.95, metavar="FRACTION",
        help="our peers send at most FRACTION x --rate-mbit (AveragingConfig.pace_mbps); 0: unpaced",
    )  # fmt: skip
    parser.add_argument("--skip-hivemind", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    codecs = _codecs(parser, args.codecs)
    if not 0 <= args.pace <= 1:
        parser.error(f"--pace must be in [0, 1], got {args.pace}")
    pace_mbps = args.pace * args.rate_mbit if args.pace else None
    if (reason := testbed_unavailable()) is not None:
        print(f"testbed unavailable: {reason}", file=sys.stderr)
        return 1
    configs: dict[str, dict[str, Any]] = {}
    # Jumbo frames need a tbf bucket of at least one frame: 160 kbit holds 20 KB.
    burst = max(TestbedConfig.burst_kbit, 160 if args.mtu > 1500 else 0)
    bed_config = TestbedConfig(
        peers=args.peers, rate_mbit=args.rate_mbit, prefix="avb", mtu=args.mtu, burst_kbit=burst
    )
    with testbed(bed_config) as bed:
        if not args.skip_hivemind:
            hm = run_hivemind_baseline(bed, args.numel, args.rounds, warmup_rounds=args.warmup)
            hm["matchmaking_seconds"] = _median_matchmaking(hm["rounds"])
            hm["cpu_busy"] = statistics.median(rd["cpu_busy"] for rd in hm["rounds"] if not rd["warmup"])
            configs["hivemind_fp16"] = hm
        ours = run_swarmnet(bed.nodes, args.numel, args.rounds, codecs, warmup_rounds=args.warmup,
                            rate_mbit=args.rate_mbit, pace_mbps=pace_mbps)  # fmt: skip
    configs |= {NAMES.get(codec, codec): result for codec, result in ours.items()}
    for name, result in configs.items():
        codec = next((c for c, n in NAMES.items() if n == name), name)
        result["bound_seconds"] = bound_seconds(codec, args.numel, args.peers, args.rate_mbit)
    report = {
        "link_mbit": args.rate_mbit, "peers": args.peers, "numel": args.numel, "mtu": args.mtu,
        "burst_kbit": burst, "pace_mbps": pace_mbps, "configs": configs,
    }  # fmt: skip
    _print(report)
    if {"hivemind_fp16", *NAMES.values()} <= configs.keys():
        for label, ok in targets(report):
            print(f"  {'PASS' if ok else 'FAIL'}  {label}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return 0


def _median_matchmaking(rounds: list[dict[str, Any]]) -> float:
    measured = sorted(rd["matchmaking_seconds"] for rd in rounds if not rd["warmup"])
    return measured[len(measured) // 2] if measured else float("nan")


def _print(report: dict[str, Any]) -> None:
    print(
        f"{report['peers']} peers, {report['numel'] * 4 / 1e6:.0f} MB fp32, {report['link_mbit']:.0f} Mbit/s links, "
        f"MTU {report['mtu']}"
    )
    header = (
        f"{'config':<15}{'round s':>9}{'group s':>9}{'data s':>8}{'bound s':>9}{'data/bound':>11}{'MB sent/peer':>14}"
        f"{'CPU busy':>10}"
    )
    print(header)
    for name, c in report["configs"].items():
        print(
            f"{name:<15}{c['seconds']:>9.2f}{c['matchmaking_seconds']:>9.2f}{c['data_seconds']:>8.2f}"
            f"{c['bound_seconds']:>9.2f}{c['data_seconds'] / c['bound_seconds']:>11.2f}"
            f"{c['bytes_per_peer'] / 1e6:>14.2f}{c['cpu_busy']:>10.0%}"
        )


if __name__ == "__main__":
    sys.exit(main())
