"""The bench's own tools, where a wrong parse would put a wrong figure in the design."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _by_library() -> ModuleType:
    """bench/ holds scripts, not a package: loaded from its file."""
    spec = importlib.util.spec_from_file_location("by_library", ROOT / "bench/by_library.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# callgrind's format: names compressed to "(n)" after their first use, a call's inclusive
# cost on the line after "calls=" (the callee's work, already counted as its own)
PROFILE = """\
version: 1
events: Ir
ob=(1) /usr/lib/libpython3.11.so.1.0
fl=(1) ???
fn=(1) _Py_dict_lookup
0 40
ob=(2) /site/8b00__mypyc.cpython-311-x86_64-linux-gnu.so
fn=(2) CPyDef_step
0 100
cob=(1)
cfn=(1)
calls=3 0
0 {called}
+1 7
ob=(1)
fn=(3) PyObject_Malloc
0 {malloc}
"""


def test_each_library_counts_its_own_code_and_not_its_calls(tmp_path: Path) -> None:
    by_library = _by_library()
    path = tmp_path / "profile.out"
    path.write_text(PROFILE.format(called=5000, malloc=9))
    counts = by_library.own_instructions(path)
    assert counts == {"libpython3.11.so.1.0": 49, "siyu_stream, compiled": 107}


def test_the_split_is_the_difference_per_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    by_library = _by_library()
    (tmp_path / "short").write_text(PROFILE.format(called=1, malloc=9))
    (tmp_path / "long").write_text(PROFILE.format(called=1, malloc=9 + 400))
    by_library.main([str(tmp_path / "short"), str(tmp_path / "long"), "100"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["4", "100.0", "%", "all"]
    assert lines[1].split()[:3] == ["4", "100.0", "%"]
    assert lines[1].endswith("libpython3.11.so.1.0")
