"""Flags of ``swarmnet peer --role trainer``: what to train and how the swarm syncs it."""

from __future__ import annotations

import argparse
from pathlib import Path

from swarmnet.diloco import DiLoCoConfig, InnerConfig, OuterConfig
from swarmnet.diloco.checkpoint import CheckpointConfig
from swarmnet.peers.trainer_role import TrainerRoleConfig

__all__ = ["add_trainer_flags", "trainer_config"]


def add_trainer_flags(parser: argparse.ArgumentParser) -> None:
    """Add the trainer role's flags (used only with ``--role trainer``)."""
    g = parser.add_argument_group("trainer role (--role trainer)")
    d, inner, outer, role = DiLoCoConfig(), InnerConfig(), OuterConfig(), TrainerRoleConfig()
    g.add_argument("--run", dest="run_name", default=role.run, help="training run to join (default %(default)s)")
    g.add_argument(
        "--preset", default=role.preset, help="model preset: tiny, debug, demo, small (default %(default)s)"
    )
    g.add_argument("--corpus", default=role.corpus, help="text corpus shipped in a package (default %(default)s)")
    g.add_argument("--batch-size", type=int, default=role.batch_size, help="sequences per inner step")
    g.add_argument("--shards", type=int, default=role.shards, help="data shards in the run (default %(default)s)")
    g.add_argument("--shard", type=int, default=None, help="this peer's shard (default: from its peer id)")
    g.add_argument("--seed", type=int, default=role.seed, help="initial-weights seed shared by the run")
    g.add_argument(
        "--inner-steps", type=int, default=d.inner_steps, help="H: inner steps per sync (default %(default)s)"
    )
    g.add_argument("--inner-lr", type=float, default=inner.lr, help="inner AdamW peak lr (default %(default)s)")
    g.add_argument("--warmup-steps", type=int, default=inner.warmup_steps, help="inner lr warm-up steps")
    g.add_argument("--outer-lr", type=float, default=outer.lr, help="outer Nesterov lr (default %(default)s)")
    g.add_argument("--outer-momentum", type=float, default=outer.momentum, help="outer momentum (default %(default)s)")
    g.add_argument("--codec", default="int4", help="wire codec of pseudo-gradients (default %(default)s)")
    g.add_argument("--fragments", type=int, default=d.fragments, help="Streaming DiLoCo fragments (1: DiLoCo)")
    g.add_argument("--overlap-steps", type=int, default=d.overlap_steps, help="inner steps overlapping an exchange")
    g.add_argument("--mixing", type=float, default=d.mixing, help="share of the local fragment kept on merge")
    g.add_argument("--max-steps", type=int, default=None, help="stop after this many inner steps")
    g.add_argument(
        "--schedule-steps",
        type=int,
        default=None,
        help="length of the inner lr cosine (default: --max-steps or 10000)",
    )
    g.add_argument("--group-wait", type=float, default=role.group_wait, help="seconds a group waits for trainers")
    g.add_argument(
        "--pace-mbps", type=float, default=None,
        help="cap on the sending rate while syncing, Mbit/s: about 95%% of your upload speed keeps your link's "
        "queue short, so your downloads do not stall behind your uploads (default: no cap)",
    )  # fmt: skip
    g.add_argument("--eval-every", type=int, default=role.eval_every, help="validate every N syncs (0: start/end)")
    g.add_argument("--checkpoint-dir", type=Path, default=None, help="save checkpoints here")
    g.add_argument("--checkpoint-every", type=int, default=10, help="syncs between checkpoints (default %(default)s)")
    g.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --checkpoint-dir")
    g.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    g.add_argument(
        "--progress", default="auto", choices=["auto", "bar", "log", "json", "none"], help="progress output"
    )
    g.add_argument("--summary", type=Path, default=None, help="write a JSON summary here when training stops")


def trainer_config(args: argparse.Namespace) -> TrainerRoleConfig:
    """The role config from parsed flags."""
    total = args.schedule_steps or args.max_steps or 10_000
    inner = InnerConfig(lr=args.inner_lr, warmup_steps=args.warmup_steps, total_steps=total)
    diloco = DiLoCoConfig(
        inner_steps=args.inner_steps, fragments=args.fragments, overlap_steps=args.overlap_steps, mixing=args.mixing,
        codec=args.codec, inner=inner, outer=OuterConfig(lr=args.outer_lr, momentum=args.outer_momentum),
    )  # fmt: skip
    checkpoint = None
    if args.checkpoint_dir is not None:
        checkpoint = CheckpointConfig(directory=args.checkpoint_dir, every_rounds=args.checkpoint_every)
    return TrainerRoleConfig(
        run=args.run_name, preset=args.preset, corpus=args.corpus, batch_size=args.batch_size, shards=args.shards,
        shard=args.shard, seed=args.seed, diloco=diloco, max_steps=args.max_steps, group_wait=args.group_wait,
        pace_mbps=args.pace_mbps, eval_every=args.eval_every, checkpoint=checkpoint, resume=args.resume,
        threads=args.threads, progress=args.progress, summary_path=args.summary,
    )  # fmt: skip
