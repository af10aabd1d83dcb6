"""Every benchmark script answers ``--help`` when run by path, as a user first tries it (and as a module)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPTS = sorted(p for p in (ROOT / "scripts" / "bench").glob("*.py") if 'if __name__ == "__main__"' in p.read_text())


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_help_by_path(script: Path, tmp_path: Path) -> None:
    # Run from elsewhere: the script, not the working directory, must make the repository importable.
    done = subprocess.run(
        [sys.executable, str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_help_as_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "scripts.bench.codecs", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "--load" in done.stdout
