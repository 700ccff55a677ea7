"""The README states what the code does: its settings table is generated from Settings, it
stays short enough to read in ten minutes, and the documents cite only what exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from siyu_stream.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]
# The README is the front door; detail belongs in docs/. 20 KB read as 20,000 bytes, the
# stricter of the two readings.
README_MAX_BYTES = 20_000
# [text](target) and ![alt](target), with an optional "title"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
# a code span that is nothing but a path into the repository, e.g. `siyu_stream/core/state.py`
CITED_PATH = re.compile(r"`((?:siyu_stream|tests|bench|deploy|topics|docs)/[\w./-]*)`")


def test_readme_settings_table_is_the_generated_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settings"]) == 0
    table = capsys.readouterr().out.strip()
    assert table.count("\n") >= 10
    assert table in README.read_text()


def test_readme_stays_small() -> None:
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size:,} bytes: move detail to docs/"


def _relative_links(document: Path) -> list[str]:
    """The link targets of a Markdown file that point into the repository: web and mail
    links and same-page anchors are skipped, an anchor after a path is dropped."""
    targets = []
    for target in LINK.findall(document.read_text()):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        targets.append(target.partition("#")[0])
    return targets


def test_link_reader_sees_links_and_skips_the_web(tmp_path: Path) -> None:
    # the check below rests on _relative_links: it must find each form, skip what it should
    page = tmp_path / "page.md"
    page.write_text(
        "[a](docs/a.md) ![b](img.png) [c](../c.md#part) [d](https://x.org/d.md)\n"
        '[e](#here) [f](mailto:x@y.z) [g](deploy) [i](i.md "title")\n'
    )
    assert _relative_links(page) == ["docs/a.md", "img.png", "../c.md", "deploy", "i.md"]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(document: Path) -> None:
    for target in _relative_links(document):
        path = (document.parent / target).resolve()
        assert path.is_relative_to(ROOT), f"{document.name} links outside the repo: {target}"
        assert path.exists(), f"{document.name} links to {target}, which does not exist"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_cited_paths_exist(document: Path) -> None:
    # a module path in a code span goes stale when modules move, as a link does
    for cited in CITED_PATH.findall(document.read_text()):
        assert (ROOT / cited).exists(), f"{document.name} cites {cited}, which does not exist"


def test_readme_maps_every_package() -> None:
    text = README.read_text()
    packages = sorted(p.parent.name for p in (ROOT / "siyu_stream").glob("*/__init__.py"))
    missing = [name for name in packages if f"| `{name}/` |" not in text]
    assert not missing, f"the README's package table has no row for {missing}"
