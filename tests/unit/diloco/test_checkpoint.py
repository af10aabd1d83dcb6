"""Checkpoints: bitwise round trips, pruning, corruption fallback, optimizer resume, and SIGKILL mid-save."""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from swarmnet.diloco import checkpoint as checkpoint_module
from swarmnet.diloco.checkpoint import (
    CheckpointConfig,
    flatten_state,
    load_latest,
    save_checkpoint,
    unflatten_state,
)
from swarmnet.errors import ConfigError
from tests.support import poll_until


def _config(tmp_path: Path, **overrides: Any) -> CheckpointConfig:
    return CheckpointConfig(directory=tmp_path / "ckpt", **overrides)


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.contiguous().reshape(-1).view(torch.uint8)


def _assert_bitwise(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    assert torch.equal(_bits(actual), _bits(expected))


def _assert_same_structure(actual: Any, expected: Any) -> None:
    """Equal values and equal container types (tuples stay tuples, int keys stay ints), tensors bitwise."""
    assert type(actual) is type(expected), (actual, expected)
    if isinstance(expected, torch.Tensor):
        _assert_bitwise(actual, expected)
    elif isinstance(expected, dict):
        assert list(actual) == list(expected)
        for key in expected:
            _assert_same_structure(actual[key], expected[key])
    elif isinstance(expected, list | tuple):
        assert len(actual) == len(expected)
        for got, want in zip(actual, expected, strict=True):
            _assert_same_structure(got, want)
    elif isinstance(expected, float) and expected != expected:
        assert actual != actual  # nan
    else:
        assert actual == expected


def _round_names(config: CheckpointConfig) -> list[str]:
    return sorted(path.name for path in config.directory.glob("round-*.safetensors"))


# ---- round trip ---------------------------------------------------------------------------------


def test_roundtrip_is_bitwise_for_every_dtype_and_keeps_metadata(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(6, 4, generator=generator)
    flat = torch.randn(12, generator=generator)
    tensors = {
        "fp32": torch.tensor([1.5, -0.0, float("nan"), float("inf"), -float("inf"), 1e-45]),
        "fp16": torch.randn(3, 5, generator=generator).half(),
        "bf16": torch.randn(7, generator=generator).bfloat16(),
        "int64": torch.tensor([-(2**63), 2**63 - 1, 0, 42]),
        "uint8": torch.arange(256, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.25),
        "empty": torch.zeros(0, 3),
        "transposed": base.t(),  # not contiguous
        "base": base,
        "view": base[1:3],  # overlaps "base": must be copied
        "tied": base,  # the same tensor under two names, like tied embeddings
        "head": flat[:5],  # disjoint views of one buffer, like FlatParameters' parameters
        "tail": flat[5:],
    }
    metadata = {"step": 7, "lr": 0.1, "name": "runé", "nested": {"a": [1, None, True, "x"]}, "none": None}
    config = _config(tmp_path)

    path = save_checkpoint(config, 7, tensors, metadata)

    assert path == config.directory / "round-000000007.safetensors"
    loaded = load_latest(config)
    assert loaded is not None
    assert loaded.round == 7
    assert loaded.path == path
    assert loaded.metadata == metadata
    assert sorted(loaded.tensors) == sorted(tensors)
    for name, tensor in tensors.items():
        _assert_bitwise(loaded.tensors[name], tensor.contiguous())


def test_no_checkpoint_gives_none(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert load_latest(config) is None  # directory does not exist
    config.directory.mkdir()
    (config.directory / "round-000000003.safetensors.123.tmp").write_bytes(b"partial")
    (config.directory / "notes.txt").write_text("not a checkpoint")
    assert load_latest(config) is None


def test_keep_deletes_older_checkpoints_and_stale_tmp_files(tmp_path: Path) -> None:
    config = _config(tmp_path, keep=2)
    save_checkpoint(config, 1, {"x": torch.zeros(1)}, {})
    stale = config.directory / "round-000000002.safetensors.999.tmp"
    stale.write_bytes(b"torn by a crash")
    for round_ in (2, 3, 4):
        save_checkpoint(config, round_, {"x": torch.full((1,), float(round_))}, {})

    assert _round_names(config) == ["round-000000003.safetensors", "round-000000004.safetensors"]
    assert not stale.exists()
    loaded = load_latest(config)
    assert loaded is not None
    assert loaded.round == 4


def test_prune_never_deletes_the_checkpoint_just_saved(tmp_path: Path) -> None:
    # Rounds 5 and 6 are left from an abandoned run; resuming from further back and saving round 2
    # must not delete round 2 just because it is the oldest by number.
    config = _config(tmp_path, keep=1)
    for round_ in (5, 6):
        save_checkpoint(config, round_, {"x": torch.zeros(1)}, {})
    save_checkpoint(config, 2, {"x": torch.zeros(1)}, {})
    assert _round_names(config) == ["round-000000002.safetensors", "round-000000006.safetensors"]


# ---- corruption ---------------------------------------------------------------------------------


def _truncate(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # the last byte belongs to the tensor data, after the header
    path.write_bytes(bytes(data))


def _rename_to_round_9(path: Path) -> None:
    path.rename(path.with_name("round-000000009.safetensors"))


@pytest.mark.parametrize("corrupt", [_truncate, _flip_last_byte, _rename_to_round_9])
def test_corrupt_newest_falls_back_to_older(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, corrupt: Callable[[Path], None]
) -> None:
    config = _config(tmp_path)
    save_checkpoint(config, 1, {"x": torch.full((1000,), 1.0)}, {"round": 1})
    newest = save_checkpoint(config, 2, {"x": torch.full((1000,), 2.0)}, {"round": 2})
    corrupt(newest)

    with caplog.at_level(logging.WARNING, logger=checkpoint_module.__name__):
        loaded = load_latest(config)

    assert loaded is not None
    assert loaded.round == 1
    assert loaded.metadata == {"round": 1}
    assert torch.equal(loaded.tensors["x"], torch.full((1000,), 1.0))
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "skipping" in warnings[0].getMessage()


def test_other_format_version_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path)
    save_checkpoint(config, 1, {"x": torch.zeros(2)}, {})
    monkeypatch.setattr(checkpoint_module, "_FORMAT_VERSION", 2)
    save_checkpoint(config, 2, {"x": torch.zeros(2)}, {})
    monkeypatch.undo()

    with caplog.at_level(logging.WARNING, logger=checkpoint_module.__name__):
        loaded = load_latest(config)

    assert loaded is not None
    assert loaded.round == 1
    assert "format version 2" in caplog.text


# ---- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tensors", "metadata", "error", "match"),
    [
        ({"x": [1.0, 2.0]}, {}, TypeError, "'x' is a list, not a torch.Tensor"),
        ({"x": torch.zeros(1)}, {"bad": object()}, TypeError, "not JSON-serializable"),
        ({"x": torch.zeros(1)}, {"bad": {1, 2}}, TypeError, "not JSON-serializable"),
        ({"x": torch.zeros(1)}, {"bad": float("nan")}, ValueError, "not JSON-serializable"),
        ({"x": torch.zeros(1)}, {"betas": (0.9, 0.99)}, ValueError, "would not load back equal"),
        ({"x": torch.zeros(1)}, {1: "int key"}, ValueError, "would not load back equal"),
    ],
)
def test_bad_input_is_rejected_before_writing(
    tmp_path: Path, tensors: dict[str, Any], metadata: dict[Any, Any], error: type[Exception], match: str
) -> None:
    config = _config(tmp_path)
    with pytest.raises(error, match=match):
        save_checkpoint(config, 1, tensors, metadata)
    assert not config.directory.exists()


def test_negative_round_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="non-negative"):
        save_checkpoint(_config(tmp_path), -1, {"x": torch.zeros(1)}, {})


@pytest.mark.parametrize("overrides", [{"every_rounds": 0}, {"keep": 0}])
def test_config_validate_rejects_impossible_settings(tmp_path: Path, overrides: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        _config(tmp_path, **overrides).validate()


# ---- flatten / unflatten ------------------------------------------------------------------------


def test_flatten_unflatten_rebuilds_an_equal_structure() -> None:
    state = {
        "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2, 2)}, 1: {}},
        "param_groups": [{"betas": (0.9, 0.999), "params": [0, 1], "foreach": None, "amsgrad": False}],
        "odd/key": torch.arange(3),
        "odd": {"key": torch.arange(4)},  # must not collide with "odd/key"
        "floats": [float("inf"), -float("inf"), float("nan"), 0.5, 2],
        "text": "tensor",
        "root_tuple": (torch.zeros(1), "x"),
    }
    tensors, skeleton = flatten_state(state, "optimizer")

    assert all(key.startswith("optimizer/") for key in tensors)
    assert "optimizer/state/0/exp_avg" in tensors
    stored = json.loads(json.dumps(skeleton, allow_nan=False))  # what a checkpoint's metadata gives back
    _assert_same_structure(unflatten_state(tensors, stored, "optimizer"), state)


def test_flatten_rejects_colliding_names_and_unknown_types() -> None:
    with pytest.raises(ValueError, match="map to the tensor name"):
        flatten_state({"state": {0: torch.zeros(1), "0": torch.zeros(1)}}, "p")
    with pytest.raises(TypeError, match="cannot checkpoint"):
        flatten_state({"dtype": torch.float32}, "p")


def test_unflatten_reports_a_missing_tensor() -> None:
    _, skeleton = flatten_state({"w": torch.zeros(1)}, "model")
    with pytest.raises(ValueError, match="no tensor 'model/w'"):
        unflatten_state({}, skeleton, "model")


# ---- optimizer resume ---------------------------------------------------------------------------


def _train(model: nn.Linear, optimizer: torch.optim.Optimizer, steps: int) -> None:
    generator = torch.Generator().manual_seed(123)  # the same batches wherever training resumes
    for _ in range(steps):
        inputs = torch.randn(8, 4, generator=generator)
        optimizer.zero_grad()
        loss = (model(inputs) - inputs[:, :3]).square().mean()
        loss.backward()
        optimizer.step()


def _model_and_optimizer(seed: int) -> tuple[nn.Linear, torch.optim.AdamW]:
    torch.manual_seed(seed)
    model = nn.Linear(4, 3)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95), weight_decay=0.1)


def test_adamw_resume_from_checkpoint_is_bitwise_equal(tmp_path: Path) -> None:
    config = _config(tmp_path)
    model, optimizer = _model_and_optimizer(seed=0)
    _train(model, optimizer, steps=3)
    model_tensors, model_skeleton = flatten_state(model.state_dict(), "model")
    optimizer_tensors, optimizer_skeleton = flatten_state(optimizer.state_dict(), "optimizer")
    save_checkpoint(
        config, 3, {**model_tensors, **optimizer_tensors}, {"model": model_skeleton, "optimizer": optimizer_skeleton}
    )
    _train(model, optimizer, steps=5)  # uninterrupted run

    resumed_model, resumed_optimizer = _model_and_optimizer(seed=1)
    loaded = load_latest(config)
    assert loaded is not None
    resumed_model.load_state_dict(unflatten_state(loaded.tensors, loaded.metadata["model"], "model"))
    resumed_optimizer.load_state_dict(unflatten_state(loaded.tensors, loaded.metadata["optimizer"], "optimizer"))
    _train(resumed_model, resumed_optimizer, steps=5)

    for name, tensor in model.state_dict().items():
        _assert_bitwise(resumed_model.state_dict()[name], tensor)
    _assert_same_structure(resumed_optimizer.state_dict(), optimizer.state_dict())


# ---- SIGKILL mid-save ---------------------------------------------------------------------------

_ELEMENTS = 5_000_000  # 20 MB of float32 per checkpoint, so a kill often lands mid-write

# Saves checkpoints forever (capped, in case it is ever orphaned); every element encodes the round.
_SAVER = textwrap.dedent(
    f"""
    import sys
    from pathlib import Path
    import torch
    from swarmnet.diloco.checkpoint import CheckpointConfig, save_checkpoint
    config = CheckpointConfig(directory=Path(sys.argv[1]), keep=2)
    for round_ in range(1, 10_000):
        value = torch.full(({_ELEMENTS},), float(round_))
        save_checkpoint(config, round_, {{"value": value, "round": torch.tensor(round_)}}, {{"round": round_}})
    """
)


def _assert_consistent(config: CheckpointConfig) -> int:
    loaded = load_latest(config)
    assert loaded is not None
    assert loaded.metadata == {"round": loaded.round}
    assert loaded.tensors["round"].item() == loaded.round
    value = loaded.tensors["value"]
    assert value.shape == (_ELEMENTS,)
    assert bool((value == float(loaded.round)).all())
    return loaded.round


def _has_checkpoint(config: CheckpointConfig) -> bool:
    return bool(_round_names(config))


def _has_save_in_flight(config: CheckpointConfig) -> bool:
    return any(config.directory.glob("*.tmp"))


def _wait_while_alive(
    saver: subprocess.Popen[bytes], condition: Callable[[], bool], *, timeout: float, interval: float, what: str
) -> None:
    def check() -> bool:
        if saver.poll() is not None:
            stderr = saver.stderr.read().decode(errors="replace") if saver.stderr else ""
            raise AssertionError(f"saver exited early with {saver.returncode}: {stderr[-2000:]}")
        return condition()

    poll_until(check, timeout=timeout, interval=interval, what=what)


def test_sigkill_during_saves_never_leaves_a_loadable_corrupt_checkpoint(tmp_path: Path) -> None:
    rng = random.Random(20240611)
    configs = [CheckpointConfig(directory=tmp_path / f"peer{index}", keep=2) for index in range(3)]
    # All savers start at once: their torch imports overlap, and each is killed a bit later than
    # the previous one, so the kills land after different numbers of rounds.
    savers = [
        subprocess.Popen([sys.executable, "-c", _SAVER, str(config.directory)], stderr=subprocess.PIPE)
        for config in configs
    ]
    try:
        for saver, config in zip(savers, configs, strict=True):
            _wait_while_alive(
                saver, functools.partial(_has_checkpoint, config), timeout=60, interval=0.005, what="a checkpoint"
            )
            # Wait until a save is in flight, then kill at a random moment of the write, fsync, rename
            # or prune. This sleep only picks the moment; nothing waits on it.
            _wait_while_alive(
                saver, functools.partial(_has_save_in_flight, config), timeout=30, interval=0.001, what="a save"
            )
            time.sleep(rng.uniform(0.0, 0.05))
            os.kill(saver.pid, signal.SIGKILL)
            assert saver.wait(timeout=10) == -signal.SIGKILL

            round_ = _assert_consistent(config)
            assert len(_round_names(config)) <= config.keep + 1  # a kill mid-prune leaves one extra
            # The next save in the same directory clears the torn temp file and becomes the latest.
            save_checkpoint(config, round_ + 1, {"value": torch.full((_ELEMENTS,), float(round_ + 1))}, {})
            assert not any(config.directory.glob("*.tmp"))
            resumed = load_latest(config)
            assert resumed is not None
            assert resumed.round == round_ + 1
    finally:
        for saver in savers:
            if saver.poll() is None:
                saver.kill()
            saver.wait(timeout=10)
            if saver.stderr is not None:
                saver.stderr.close()
