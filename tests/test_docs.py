"""The README states what the code does: its settings table is generated from Settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from siyu_stream.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_settings_table_is_the_generated_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settings"]) == 0
    table = capsys.readouterr().out.strip()
    assert table.count("\n") >= 10
    assert table in README.read_text()
