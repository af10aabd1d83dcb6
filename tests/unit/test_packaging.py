"""Packaging: every subpackage is declared, and a regular (non-editable) wheel has the mapped layout.

The top-level folders peers/, compression/, kernels/, coordinator/ install as ``swarmnet.*``
subpackages through ``[tool.setuptools] package-dir``; setuptools only ships the packages listed
explicitly, so a forgotten entry would work in the editable checkout and break in a real install.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PYPROJECT: dict[str, Any] = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
SETUPTOOLS: dict[str, Any] = PYPROJECT["tool"]["setuptools"]
PACKAGE_DIR: dict[str, str] = SETUPTOOLS["package-dir"]

# Top-level folders with an __init__.py that are deliberately not installed.
NOT_INSTALLED = {"tests", "scripts"}  # packages only so tools can name their modules; never shipped
# What the build needs from the checkout; the rest (virtualenv, caches, old build output) stays behind.
BUILD_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".*_cache", ".hypothesis", "artifacts"
)


def _packages_on_disk() -> dict[str, Path]:
    """Every folder with an ``__init__.py`` under a package-dir root, by the name it installs as."""
    found: dict[str, Path] = {}
    for package, folder in PACKAGE_DIR.items():
        root = REPO_ROOT / folder
        for init in root.rglob("__init__.py"):
            relative = init.parent.relative_to(root)
            if "__pycache__" in relative.parts:
                continue
            found[".".join((package, *relative.parts))] = init.parent
    return found


def test_package_dir_maps_the_top_level_folders() -> None:
    assert PACKAGE_DIR == {
        "swarmnet": "swarmnet",
        "swarmnet.peers": "peers",
        "swarmnet.compression": "compression",
        "swarmnet.kernels": "kernels",
        "swarmnet.coordinator": "coordinator",
    }


def test_every_subpackage_on_disk_is_declared() -> None:
    on_disk = _packages_on_disk()
    declared = set(SETUPTOOLS["packages"])
    missing = sorted(set(on_disk) - declared)
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"
    stale = sorted(declared - set(on_disk))
    assert not stale, f"declared in pyproject.toml but no folder with an __init__.py: {stale}"
    assert len(SETUPTOOLS["packages"]) == len(declared), "a package is listed twice"


def test_every_top_level_package_folder_is_mapped() -> None:
    folders = {init.parent.name for init in REPO_ROOT.glob("*/__init__.py")}
    unmapped = sorted(folders - set(PACKAGE_DIR.values()) - NOT_INSTALLED)
    assert not unmapped, f"top-level packages missing from [tool.setuptools] package-dir: {unmapped}"


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
        "swarmnet/peers/probe.py",
        "swarmnet/compression/__init__.py",
        "swarmnet/kernels/__init__.py",
        "swarmnet/coordinator/__init__.py",
        "swarmnet/transport/hivemind_transport.py",
        "swarmnet/py.typed",
    ):
        assert expected in names, f"{expected} is missing from the wheel"
    for package in SETUPTOOLS["packages"]:
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
        "import swarmnet, swarmnet.peers.probe, swarmnet.compression, swarmnet.kernels, swarmnet.coordinator\n"
        "import swarmnet.peers.daemon, swarmnet.cli.main\n"
        "for module in (swarmnet, swarmnet.peers.probe, swarmnet.compression, swarmnet.kernels,\n"
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
    assert files[1] == site / "swarmnet" / "peers" / "probe.py"
