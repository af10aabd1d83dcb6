"""Run mypy over the swarmnet package as it installs.

The top-level folders (peers/, compression/, ...) install as ``swarmnet.*`` subpackages through
setuptools' package-dir, which mypy cannot follow. So we mirror the installed layout as a tree
of symlinks under build/typecheck/ and check that, plus tests/ and scripts/.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_link_tree(dest: Path) -> Path:
    """Mirror each ``[tool.setuptools] package-dir`` entry under ``dest`` with symlinks."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    shutil.rmtree(dest, ignore_errors=True)
    for package, folder in sorted(config["package-dir"].items()):
        target = dest.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for entry in (ROOT / folder).iterdir():
            link = target / entry.name
            if entry.name != "__pycache__" and not link.exists():
                link.symlink_to(entry)
    return dest


def main() -> int:
    tree = build_link_tree(ROOT / "build" / "typecheck")
    targets = [str(tree / "swarmnet"), str(ROOT / "tests"), str(ROOT / "scripts")]
    return subprocess.call([sys.executable, "-m", "mypy", *targets], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
