"""Every relative link in README.md and docs/*.md points to a file that exists, and every ``#anchor`` to a heading.

The documentation is split over several files that link to each other and to the code; this keeps a moved
file or a renamed heading from leaving a dead link behind.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted([REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")])

FENCE = re.compile(r"^```.*?^```[^\n]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose(markdown: str) -> str:
    """The text outside fenced code blocks (links and headings inside them are examples, not links)."""
    return FENCE.sub("", markdown)


def links(markdown: str) -> list[str]:
    """Link and image targets of the prose, inline code spans left out."""
    return LINK.findall(INLINE_CODE.sub("", prose(markdown)))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading's anchor; a repeated heading gets ``-1``, ``-2``... as on GitHub."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for heading in HEADING.findall(prose(markdown)):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def dead_links(document: Path) -> list[str]:
    """The links of one document whose file or anchor does not exist, each with the reason."""
    problems = []
    for target in links(document.read_text()):
        if EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        linked = (document.parent / path_part).resolve() if path_part else document
        if not linked.exists():
            problems.append(f"{target}: no such file {linked}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
            problems.append(f"{target}: no heading with anchor #{anchor} in {linked.name}")
    return problems


def test_slug_follows_github() -> None:
    assert slug("Fine-tune one adapter across organisations (federated LoRA)") == (
        "fine-tune-one-adapter-across-organisations-federated-lora"
    )
    assert slug("`swarmnet status`") == "swarmnet-status"
    assert slug("Security: attacks tried") == "security-attacks-tried"


def test_links_in_code_are_examples_and_repeated_headings_are_numbered() -> None:
    markdown = "# A\n\n```md\n[x](missing.md)\n# B\n```\n\n`[y](gone.md)` [z](real.md#a-1)\n\n# A\n"
    assert links(markdown) == ["real.md#a-1"]
    assert anchors(markdown) == {"a", "a-1"}


def test_the_documents_are_found() -> None:
    names = {document.name for document in DOCUMENTS}
    assert {"README.md", "performance.md", "design.md", "security.md"} <= names


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda document: document.name)
def test_every_relative_link_resolves(document: Path) -> None:
    problems = dead_links(document)
    assert not problems, f"dead links in {document.relative_to(REPO_ROOT)}:\n" + "\n".join(problems)
