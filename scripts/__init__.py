"""Project scripts (a package so that type checkers give them unique module names).

Importing it moves the repository root behind the installed packages on ``sys.path``. ``python -m
scripts...`` and pytest put the root first, where the top-level source folders would shadow PyPI
packages of the same name: ``kernels/`` (``swarmnet.kernels``) hid Hugging Face's ``kernels``, which
transformers >= 5.25 imports, and every import of peft or transformers failed.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def demote_repo_root() -> None:
    """Move the repository root (and ``""`` when the working directory is the root) to the end of ``sys.path``."""
    kept = [entry for entry in sys.path if Path(entry or ".").resolve() != ROOT]
    if len(kept) != len(sys.path):
        sys.path[:] = [*kept, str(ROOT)]


demote_repo_root()
