"""``swarmnet peer --role trainer`` flags, and the trainer's progress formatting."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmnet.cli.common import ExitCode
from swarmnet.cli.main import build_parser, main
from swarmnet.cli.peer import config_from_args
from swarmnet.peers.trainer_role import _trainer_config
from swarmnet.units import format_bytes


def test_trainer_flags_build_the_role_config(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["peer", "--role", "trainer", "--run", "kjv", "--preset", "tiny", "--inner-steps", "40", "--fragments", "4",
         "--overlap-steps", "2", "--mixing", "0.5", "--codec", "sign1bit", "--max-steps", "400",
         "--checkpoint-dir", str(tmp_path), "--checkpoint-every", "3", "--resume", "--shard", "2", "--shards", "5",
         "--pace-mbps", "95"]
    )  # fmt: skip
    config = config_from_args(args)
    config.validate()
    trainer = config.trainer
    assert trainer is not None
    assert config.roles == ("trainer",)
    assert (trainer.run, trainer.preset, trainer.shard, trainer.shards, trainer.resume) == ("kjv", "tiny", 2, 5, True)
    d = trainer.diloco
    assert (d.inner_steps, d.fragments, d.overlap_steps, d.mixing, d.codec) == (40, 4, 2, 0.5, "sign1bit")
    assert d.inner.total_steps == 400
    assert trainer.checkpoint is not None
    assert trainer.checkpoint.every_rounds == 3
    assert _trainer_config(trainer).averaging.pace_mbps == 95.0


def test_a_peer_without_the_role_trains_nothing() -> None:
    assert config_from_args(build_parser().parse_args(["peer"])).trainer is None


@pytest.mark.parametrize(
    "flags",
    [
        ["--fragments", "80"],
        ["--codec", "nope"],
        ["--resume"],
        ["--preset", "huge"],
        ["--shard", "9"],
        ["--pace-mbps", "0"],
    ],
)
def test_impossible_trainer_settings_exit_with_the_usage_code(flags: list[str], tmp_path: Path) -> None:
    argv = ["peer", "--role", "trainer", "--identity", str(tmp_path / "k.pem"), "--inner-steps", "50", *flags]
    assert main(argv) == ExitCode.USAGE


def test_bytes_are_shown_in_readable_units() -> None:
    assert [format_bytes(n) for n in (0, 999, 1500, 2_500_000, 7.2e9, 3e12)] == [
        "0 B", "999 B", "1.5 kB", "2.5 MB", "7.2 GB", "3000.0 GB"
    ]  # fmt: skip
