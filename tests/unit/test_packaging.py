"""Packaging: one import root, and a regular (non-editable) wheel has that layout.

The top-level folders peers/, compression/, kernels/, coordinator/ install as ``swarmnet.*``
subpackages because ``swarmnet/`` holds a relative symlink to each; setuptools finds every package
under ``swarmnet/`` by itself. A folder without its link would work nowhere, so these tests say which.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = REPO_ROOT / "swarmnet"
LINKED = ("compression", "coordinator", "kernels", "peers")
# Top-level folders with an __init__.py that are deliberately not installed.
NOT_INSTALLED = {"tests", "scripts", "swarmnet"}  # packages only so tools can name their modules; never shipped
# What the build needs from the checkout; the rest (virtualenv, caches, old build output) stays behind.
BUILD_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".*_cache", ".hypothesis", "artifacts"
)


def _packages_on_disk() -> set[str]:
    """Every folder with an ``__init__.py`` under ``swarmnet/`` (through its links), by its import name."""
    found = set()
    for folder, dirs, files in os.walk(PACKAGE, followlinks=True):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        if "__init__.py" in files:
            found.add(".".join(Path(folder).relative_to(REPO_ROOT).parts))
    return found


@pytest.mark.parametrize("folder", LINKED)
def test_each_top_level_folder_is_linked_into_the_package(folder: str) -> None:
    link = PACKAGE / folder
    assert link.is_symlink(), f"swarmnet/{folder} must be a symlink to ../{folder}"
    assert os.readlink(link) == f"../{folder}", "a relative link survives a move or a fresh clone"
    assert link.resolve() == (REPO_ROOT / folder).resolve()


def test_every_top_level_package_folder_is_linked() -> None:
    folders = {init.parent.name for init in REPO_ROOT.glob("*/__init__.py")}
    assert sorted(folders - NOT_INSTALLED) == sorted(LINKED), "link a new top-level package from swarmnet/"


def test_the_subpackages_reach_past_the_links() -> None:
    packages = _packages_on_disk()
    assert {"swarmnet.kernels", "swarmnet.coordinator.monitor", "swarmnet.proto", "swarmnet.peers"} <= packages


# --------------------------------------------------------------------------- a real wheel


def _cannot_build_wheels() -> str | None:
    if importlib.util.find_spec("setuptools") is None:
        return "setuptools is not installed in this environment, so `pip wheel --no-build-isolation` cannot build"
    has_bdist_wheel = importlib.util.find_spec("setuptools.command.bdist_wheel") is not None  # setuptools >= 70.1
    if not has_bdist_wheel and importlib.util.find_spec("wheel") is None:
        return "neither the `wheel` package nor a setuptools with bdist_wheel (>= 70.1) is installed"
    return None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the checkout (an in-tree build would reuse and race on ./build)."""
    reason = _cannot_build_wheels()
    if reason is not None:
        pytest.skip(reason)
    source = tmp_path_factory.mktemp("source") / "swarmnet"
    shutil.copytree(REPO_ROOT, source, ignore=BUILD_IGNORE, symlinks=True)
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [
            sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
            "--disable-pip-version-check", "--no-cache-dir", "-w", str(out), str(source),
        ],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PIP_NO_INPUT": "1"},
    )  # fmt: skip
    assert result.returncode == 0, f"pip wheel failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    wheels = list(out.glob("swarmnet-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_has_the_mapped_layout(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for expected in (
        "swarmnet/__init__.py",
        "swarmnet/__main__.py",
        "swarmnet/cli/main.py",
        "swarmnet/peers/__init__.py",
        "swarmnet/peers/daemon.py",
        "swarmnet/peers/trainer_role.py",
        "swarmnet/compression/__init__.py",
        "swarmnet/kernels/__init__.py",
        "swarmnet/coordinator/__init__.py",
        "swarmnet/transport/hivemind_transport.py",
        "swarmnet/py.typed",
    ):
        assert expected in names, f"{expected} is missing from the wheel"
    for package in _packages_on_disk():
        assert f"{package.replace('.', '/')}/__init__.py" in names
    top_level = {name.split("/", 1)[0] for name in names}
    extra = top_level - {"swarmnet"}
    assert len(extra) == 1, f"unexpected top-level entries in the wheel: {sorted(top_level)}"
    assert extra.pop().endswith(".dist-info")
    for stray in ("peers", "compression", "kernels", "coordinator", "tests", "scripts"):
        assert not any(name.startswith(f"{stray}/") for name in names), f"{stray}/ leaked into the wheel"
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)


def test_wheel_declares_the_console_script(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (entry_points_name,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
        entry_points = archive.read(entry_points_name).decode()
    lines = [line.strip() for line in entry_points.splitlines()]
    section = lines[lines.index("[console_scripts]") + 1 :]
    scripts = {}
    for line in section:
        if not line or line.startswith("["):
            break
        name, _, target = line.partition("=")
        scripts[name.strip()] = target.strip()
    assert scripts == {"swarmnet": "swarmnet.cli.main:main"}


def test_unpacked_wheel_imports_without_the_checkout(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    code = (
        "import swarmnet, swarmnet.peers.daemon, swarmnet.compression, swarmnet.kernels, swarmnet.coordinator\n"
        "import swarmnet.peers.daemon, swarmnet.cli.main\n"
        "for module in (swarmnet, swarmnet.peers.daemon, swarmnet.compression, swarmnet.kernels,\n"
        "               swarmnet.coordinator, swarmnet.cli.main):\n"
        "    print(module.__file__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=site,
        env={**os.environ, "PYTHONSAFEPATH": "1", "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    files = [Path(line) for line in result.stdout.splitlines()]
    assert len(files) == 6
    for file in files:
        assert file.resolve().is_relative_to(site.resolve()), f"{file} was imported from outside the wheel"
    assert files[1] == site / "swarmnet" / "peers" / "daemon.py"
