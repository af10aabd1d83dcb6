"""README's federated client code is the quickstart's excerpt between its ``readme`` markers, verbatim."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
QUICKSTART = REPO_ROOT / "swarmnet" / "federated" / "quickstart.py"
SECTION = "## Fine-tune one adapter across organisations (federated LoRA)"


def excerpt(source: str) -> str:
    """The lines strictly between ``# readme-start`` and ``# readme-end``, trailing blanks dropped."""
    lines = source.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "# readme-start"]
    ends = [i for i, line in enumerate(lines) if line.strip() == "# readme-end"]
    assert len(starts) == 1, "one # readme-start line"
    assert len(ends) == 1, "one # readme-end line"
    assert starts[0] < ends[0], "# readme-start comes first"
    return "\n".join(lines[starts[0] + 1 : ends[0]]).rstrip()


def readme_client_block(readme: str) -> str:
    """The first python code block of README's federated section."""
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    found = re.search(r"^```python\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert found is not None, "README's federated section has no python block"
    return found.group(1).rstrip()


def test_excerpt_takes_what_lies_between_the_markers() -> None:
    source = "a = 1\n# readme-start\nimport x\n\ndef f():\n    return x\n    # readme-end\nb = 2\n"
    assert excerpt(source) == "import x\n\ndef f():\n    return x"


def test_readme_client_code_is_the_runnable_quickstart() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert SECTION in readme, "README lost its federated section"
    expected = excerpt(QUICKSTART.read_text())
    actual = readme_client_block(readme)
    assert actual == expected, (
        "README's federated client block differs from swarmnet/federated/quickstart.py between its readme "
        "markers; paste the excerpt into README (or change the quickstart, which a test runs end to end)"
    )
