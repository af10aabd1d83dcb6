"""Regenerate the monitor pictures in ``artifacts/monitor/`` (the README shows them).

    .venv/bin/python -m scripts.monitor_screenshots              # into artifacts/monitor/
    .venv/bin/python -m scripts.monitor_screenshots --out DIR    # anywhere else

Runs the monitor's browser tests (``tests/e2e/test_monitor_browser.py``: a real swarm of a DHT, two
peers and ``swarmnet monitor``; 200 simulated peers; runs whose peers all left) and copies the
screenshots they take and check into ``--out``: ``screenshot.png``, ``simulated-200.png`` and
``runs-ended.png``. The test suite itself writes them only to temporary folders. Needs the system
Chromium at ``/usr/bin/chromium`` and Python playwright, as the tests do.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from scripts import ROOT

TEST = "tests/e2e/test_monitor_browser.py"
ENV = "SWARMNET_MONITOR_SCREENSHOTS"  # read by the test: where to copy its screenshots
PICTURES = ("screenshot.png", "simulated-200.png", "runs-ended.png")


def main(argv: list[str] | None = None) -> int:
    """Run the browser tests with the copy folder set; 0 when every picture was written."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "monitor", help="folder for the pictures")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if not Path("/usr/bin/chromium").exists():
        print("no Chromium at /usr/bin/chromium (apt-get install chromium): nothing regenerated", file=sys.stderr)
        return 1
    before = {name: _mtime(out / name) for name in PICTURES}
    command = [sys.executable, "-m", "pytest", TEST, "-q", "-s", "-p", "no:cacheprovider"]
    result = subprocess.run(command, cwd=ROOT, env={**os.environ, ENV: str(out)}, check=False)
    written = [name for name in PICTURES if _mtime(out / name) != before[name]]
    for name in written:
        print(f"wrote {out / name}")
    missing = sorted(set(PICTURES) - set(written))
    if result.returncode != 0 or missing:
        print(f"the browser tests exited {result.returncode}; not written: {', '.join(missing) or 'none'}")
        return 1
    return 0


def _mtime(path: Path) -> int | None:
    return path.stat().st_mtime_ns if path.exists() else None


if __name__ == "__main__":
    sys.exit(main())
