"""Imports point down: kernels <- compression <- swarmnet core <- peers, coordinator <- cli.

Every module of the installed package is parsed (not imported), and every ``import`` in it counts,
including those inside functions and under ``TYPE_CHECKING``: a lazy import is still an edge.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "swarmnet"

# Core modules that import nothing of the project: the bottom layers may use them.
LEAVES = frozenset({"swarmnet.errors", "swarmnet.buffers", "swarmnet.version"})
# Layer of a module, by the first part of its name below ``swarmnet``; anything else is core.
UPPER = frozenset({"kernels", "compression", "peers", "coordinator", "cli"})
# What each layer may import besides itself.
ALLOWED = {
    "leaf": frozenset(),
    "kernels": frozenset({"leaf"}),
    "compression": frozenset({"leaf", "kernels"}),
    "core": frozenset({"leaf", "kernels", "compression"}),
    "peers": frozenset({"leaf", "kernels", "compression", "core"}),
    "coordinator": frozenset({"leaf", "kernels", "compression", "core"}),
    "cli": frozenset({"leaf", "kernels", "compression", "core", "peers", "coordinator"}),
}


def layer_of(module: str) -> str:
    """The layer a ``swarmnet...`` module belongs to."""
    if module in LEAVES:
        return "leaf"
    if module == "swarmnet.__main__":  # ``python -m swarmnet``: an entry point like the CLI it calls
        return "cli"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in UPPER else "core"


def modules() -> Iterator[tuple[str, Path]]:
    """Every module of the package by its import name, through the links to the top-level folders."""
    paths = [Path(folder, name) for folder, _, names in os.walk(PACKAGE, followlinks=True) for name in names]
    for path in sorted(p for p in paths if p.suffix == ".py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
        yield ".".join(parts), path


def imported(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """``(imported swarmnet module, line)`` for every import statement in ``path``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            names = [f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base for alias in node.names]
        else:
            continue
        for name in names:
            if name == "swarmnet" or name.startswith("swarmnet."):
                yield name, node.lineno


def _is_module(name: str) -> bool:
    """Whether ``name`` is a module or package of ours (``from pkg import module`` imports the module)."""
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def violations() -> list[str]:
    """Every edge against the layer order, as ``file:line: a (layer) imports b (layer)``."""
    found = []
    for module, path in modules():
        source = layer_of(module)
        for target, line in imported(module, path):
            destination = layer_of(target)
            if destination != source and destination not in ALLOWED[source]:
                where = path.relative_to(PACKAGE.parent)
                found.append(f"{where}:{line}: {module} ({source}) imports {target} ({destination})")
    return found


def test_imports_point_down_the_layers() -> None:
    wrong = violations()
    assert not wrong, "imports against the layer order (see ARCHITECTURE.md):\n" + "\n".join(wrong)


def test_the_package_is_parsed_through_its_links() -> None:
    layers = {layer_of(module) for module, _ in modules()}
    assert layers == set(ALLOWED), layers  # a layer that is never seen would pass vacuously


@pytest.mark.parametrize(
    ("source", "line", "expected"),
    [
        ("swarmnet.federated.client", "from swarmnet.coordinator.service import Service", "core -> coordinator"),
        ("swarmnet.compression.topk", "import swarmnet.transport.base", "compression -> core"),
        ("swarmnet.kernels.sign", "from swarmnet.compression import bitpack", "kernels -> compression"),
        ("swarmnet.peers.daemon", "from swarmnet.coordinator import rounds", "peers -> coordinator"),
        ("swarmnet.coordinator.rpc", "from swarmnet.cli.main import main", "coordinator -> cli"),
        ("swarmnet.averaging.group", "def f():\n    from swarmnet.peers import daemon", "core -> peers"),
    ],
)
def test_a_wrong_edge_is_reported(tmp_path: Path, source: str, line: str, expected: str) -> None:
    path = tmp_path / "module.py"
    path.write_text(line + "\n")
    edges = [(layer_of(source), layer_of(target)) for target, _ in imported(source, path)]
    wrong = [f"{a} -> {b}" for a, b in edges if b != a and b not in ALLOWED[a]]
    assert wrong == [expected]
