"""The kit's examples run: every Python block of docs/testing.md and the one in the package docstring."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

import swarmnet.testing

DOC = Path(__file__).resolve().parents[3] / "docs" / "testing.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_the_page_has_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_every_python_block_of_the_testing_page_runs(index: int) -> None:
    exec(compile(BLOCKS[index], f"{DOC}:block{index}", "exec"), {"__name__": "docs_example"})


def test_the_package_docstring_example_runs() -> None:
    doc = swarmnet.testing.__doc__
    assert doc is not None
    example = textwrap.dedent(doc.split("Example (docs/testing.md has more)::\n", 1)[1])
    exec(compile(example, "swarmnet.testing.__doc__", "exec"), {"__name__": "docstring_example"})


def test_every_public_name_is_exported() -> None:
    for name in swarmnet.testing.__all__:
        assert getattr(swarmnet.testing, name) is not None, name
