"""Federated LoRA over the real stack: dense FedAvg vs compressed updates vs compressed + secure aggregation.

Each configuration starts a real gRPC coordinator (``BackgroundCoordinator``, port 0) and N
``FederatedClient``s in threads of this process, on a non-IID split of a real task, and runs R
rounds with every client in every round (cross-silo). After each round the global adapter is
evaluated on the held-out split. Reported per configuration: final accuracy, uplink bytes (all
clients, all rounds, as the coordinator received them) and the mean round time (from the clients'
first poll to the last one's reply). Configurations:

* ``dense``: FedAvg of full fp32 LoRA deltas (what FlowerTune and FedML clients send);
* ``compressed``: ``--codec`` with client-side error feedback: top-k (``--topk-ratio``) with int8
  values, or any registered codec (``sign1bit``: one bit per value and a scale per block);
* ``secagg``: secure aggregation (pairwise masks, dropout-tolerant) with error feedback on the
  client. ``--secagg-encoding scaled`` (the default): every coordinate as an integer in
  ``[-levels, levels]`` times a per-block scale the coordinator publishes for the round (from the
  magnitudes the last round summed), packed several to a 32-bit word; ``fixed``: a steered
  ``--secagg-density`` subset in a 16-bit fixed-point field clipped to ``--secagg-clip``.

Then ``overhead``: ``--overhead-clients`` (16) clients on the fast digits task, compressed with and
without secure aggregation, to time what the masking protocol itself costs per round.

    .venv/bin/python -m scripts.experiments.federated              # defaults: kjv, 8 clients
    .venv/bin/python -m scripts.experiments.federated --task digits --rounds 30
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch

if not __package__:  # run as a file: make ``scripts`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from scripts.experiments.federated_report import markdown, plot, targets
from scripts.experiments.federated_tasks import Task, make_task
from swarmnet.coordinator.config import CoordinatorConfig, RoundSettings, SecAggSettings
from swarmnet.coordinator.server import BackgroundCoordinator
from swarmnet.federated import ClientConfig, FederatedClient
from swarmnet.federated.local_training import LocalTrainer

OUT = Path("artifacts/experiments")
METHODS = ("dense", "compressed", "secagg")


@dataclass(frozen=True)
class Settings:
    """One experiment's knobs (written into the JSON beside the results)."""

    task: str = "kjv"
    clients: int = 8
    rounds: int = 20
    local_steps: int = 5
    batch_size: int = 16
    max_length: int = 32
    lr: float = 5e-3
    alpha: float = 0.5  # Dirichlet concentration of the label split: lower is more skewed
    # The compressed configuration's codec: a registered one, or "topk" (at topk_ratio, int8 values).
    # sign1bit by default: the AdamW deltas are close to sign vectors, so one bit each (and a scale
    # per block) with error feedback tracks dense, and top-k 5% lagged it (docs/performance.md has the figures).
    codec: str = "sign1bit"
    topk_ratio: float = 0.05
    # Secure aggregation's encoding: "scaled" (shared scales, every coordinate, levels per value) or
    # "fixed" (a steered density subset in a 16-bit field within clip).
    secagg_encoding: str = "scaled"
    secagg_levels: int = 7
    secagg_density: float = 0.1  # fixed only
    secagg_clip: float = 0.2  # fixed only: per-coordinate range (the EF residual can exceed one delta)
    seed: int = 0


def coordinator_config(settings: Settings, method: str, state_dir: Path, clients: int) -> CoordinatorConfig:
    """The coordinator for one configuration."""
    rounds = RoundSettings(
        clients_per_round=clients,
        min_clients=clients,
        min_participants=max(2, clients - clients // 3),
        round_timeout_s=600.0,
        phase_timeout_s=120.0,
        rounds=settings.rounds,
        local_steps=settings.local_steps,
        learning_rate=settings.lr,
        codec={"dense": "none", "secagg": "topk"}.get(method, settings.codec),  # secagg's subset is top-k shaped
        topk_ratio=settings.topk_ratio,
        secure_aggregation=method == "secagg",
    )
    encoding: Literal["scaled", "fixed"] = "scaled" if settings.secagg_encoding == "scaled" else "fixed"
    if settings.secagg_encoding != encoding:
        raise SystemExit(f"unknown --secagg-encoding {settings.secagg_encoding!r}: scaled or fixed")
    secagg = SecAggSettings(
        encoding=encoding, levels=settings.secagg_levels, bits=16, clip=settings.secagg_clip,
        density=settings.secagg_density if encoding == "fixed" else 1.0, max_clients=16,
    )  # fmt: skip
    return CoordinatorConfig(
        state_dir=state_dir, run=f"fed-{method}", rounds=rounds, secagg=secagg,
        insecure_deterministic_seed=settings.seed,  # the experiment repeats draw for draw; no DP here to lose
    )  # fmt: skip


def _client_config(address: str, index: int) -> ClientConfig:
    # Seeded stochastic rounding, so the experiment repeats exactly: insecure, and no DP to protect here.
    return ClientConfig(address=address, poll_s=5.0, insecure_deterministic_seed=index)


def run_config(task: Task, settings: Settings, name: str, method: str, workdir: Path) -> dict[str, Any]:
    """Run one configuration for ``settings.rounds`` rounds; return its result entry."""
    loaders = task.make_loaders()
    models = [task.make_model() for _ in loaders]
    evaluator = LocalTrainer(task.make_model(), [None])
    initial = evaluator.schema.unflatten(evaluator.vector())
    config = coordinator_config(settings, method, workdir / name, len(models))
    accuracy, uplink, seconds = [_evaluate(task, evaluator)], [0], []
    with BackgroundCoordinator(config, initial) as coordinator:
        clients = [
            FederatedClient(model, loader, _client_config(coordinator.address, i), samples=n)
            for i, (model, loader, n) in enumerate(zip(models, loaders, task.sizes, strict=True))
        ]
        try:
            for number in range(1, settings.rounds + 1):
                started = time.monotonic()
                _all(clients)
                seconds.append(time.monotonic() - started)
                state = _wait_round(coordinator, number)
                record = state.history[-1]
                if record.outcome != "completed":
                    raise RuntimeError(f"{name} round {number} failed: {record.reason}")
                evaluator.load(state.adapter)
                accuracy.append(_evaluate(task, evaluator))
                uplink.append(uplink[-1] + record.uplink_bytes)
                print(f"  {name} round {number}: acc {accuracy[-1]:.3f}, {record.uplink_bytes:,} B, "
                      f"{seconds[-1]:.1f} s, loss {record.train_loss:.3f}", flush=True)  # fmt: skip
        finally:
            for client in clients:
                client.close()
    return {
        "name": name,
        "method": method,
        "task": task.name,
        "clients": len(models),
        "rounds": settings.rounds,
        "final_accuracy": accuracy[-1],
        "uplink_bytes": uplink[-1],
        "round_seconds": statistics.mean(seconds),
        "accuracy_curve": accuracy,
        "uplink_curve": uplink,
        "adapter_params": evaluator.schema.numel,
    }


def _evaluate(task: Task, evaluator: LocalTrainer) -> float:
    """Held-out accuracy on every core: the clients are idle between rounds, so evaluation may use them all."""
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        return task.evaluate(evaluator.model)
    finally:
        torch.set_num_threads(threads)


def _all(clients: list[FederatedClient]) -> None:
    """One round: every client polls and trains in its own thread."""
    import threading

    errors: list[BaseException] = []

    def body(client: FederatedClient) -> None:
        try:
            client.run(max_rounds=1, timeout_s=900)
        except BaseException as error:  # re-raised in the main thread
            errors.append(error)

    threads = [threading.Thread(target=body, args=(c,), daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _wait_round(coordinator: BackgroundCoordinator, number: int, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        engine = coordinator.server.engine
        if engine is not None and len(engine.state.history) >= number:
            return engine.state
        time.sleep(0.05)  # polling the coordinator's state for the round to be saved
    raise RuntimeError(f"round {number} did not end within {timeout} s")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="output JSON (default artifacts/experiments/federated.json)")
    parser.add_argument(
        "--configs", default=",".join(METHODS), help="comma-separated subset of dense,compressed,secagg"
    )
    parser.add_argument("--overhead-clients", type=int, default=16, help="clients of the overhead timing (0: skip)")
    parser.add_argument("--overhead-rounds", type=int, default=5)
    parser.add_argument("--overhead-lr", type=float, default=2e-2, help="LoRA on the random digits MLP needs more")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the client threads share the cores)")
    parser.add_argument("--merge", action="store_true", help="keep the runs already in --json (replaced by name)")
    for field, default in asdict(Settings()).items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=type(default), default=default)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the configurations, then the overhead timing; write JSON, markdown and plot after each."""
    args = _arguments(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    settings = Settings(**{f: getattr(args, f) for f in asdict(Settings())})
    out = args.json or OUT / "federated.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="swarmnet-federated-") as workdir:  # coordinators' state dirs
        report = _run_all(args, settings, out, Path(workdir))
    print(markdown(report))
    return 0


def _run_all(args: argparse.Namespace, settings: Settings, out: Path, workdir: Path) -> dict[str, Any]:
    task = make_task(settings.task, clients=settings.clients, alpha=settings.alpha, batch_size=settings.batch_size,
                     max_length=settings.max_length, seed=settings.seed)  # fmt: skip
    report: dict[str, Any] = {"settings": asdict(settings), "runs": [], "overhead": []}
    if args.merge and out.exists():
        report = {**json.loads(out.read_text()), "settings": asdict(settings)}
    started = time.monotonic()
    for method in [m.strip() for m in args.configs.split(",") if m.strip()]:
        if method not in METHODS:
            raise SystemExit(f"unknown configuration {method!r}; expected {METHODS}")
        report["runs"] = _replaced(report["runs"], run_config(task, settings, method, method, workdir))
        _write(report, out, started)
    if args.overhead_clients:
        fast = replace(
            settings, task="digits", clients=args.overhead_clients, rounds=args.overhead_rounds, lr=args.overhead_lr
        )
        digits = make_task(
            "digits", clients=fast.clients, alpha=fast.alpha, batch_size=32, max_length=0, seed=fast.seed
        )
        for method in ("compressed", "secagg"):
            name = f"{method}_{fast.clients}"
            report["overhead"] = _replaced(report["overhead"], run_config(digits, fast, name, method, workdir))
            _write(report, out, started)
    return report


def _replaced(runs: list[dict[str, Any]], result: dict[str, Any]) -> list[dict[str, Any]]:
    """``runs`` with ``result`` in place of the one of the same name (appended if new)."""
    if all(r["name"] != result["name"] for r in runs):
        return [*runs, result]
    return [result if r["name"] == result["name"] else r for r in runs]


def _write(report: dict[str, Any], out: Path, started: float) -> None:
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    report["targets"] = targets(report)
    out.write_text(json.dumps(report, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    plot(report, out.with_suffix(".png"))


if __name__ == "__main__":
    sys.exit(main())
