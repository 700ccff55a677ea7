"""The bench's own tools, where a wrong parse would put a wrong figure in the design."""

from __future__ import annotations

import importlib
import importlib.util
import json
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


@pytest.fixture
def report_targets(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # its modules import each other
    return importlib.import_module("report_targets")


def _results(worker: float, jobs_2: float) -> dict[str, object]:
    """The figures the targets read, each a ratio to 1,000 events/s."""

    def rate(x: float) -> dict[str, float]:
        return {"events_per_s_median": 1000 * x}

    return {
        "live": {
            "sim": {
                "summary": {"worker-1-at_least_once": rate(worker), "raw-1-at_least_once": rate(1)}
            }
        },
        "replay": {
            "main": {"pipe_ratio_median": 0.15, **rate(4)},
            "history": {"pipe_ratio_median": 0.059, **rate(4)},
        },
        "replay_interpreted": {"history": rate(1)},
        "replay_jobs": {"jobs_1": rate(1), "jobs_2": rate(jobs_2)},
        "backtest": {"compiled": rate(2.99), "interpreted": rate(1)},
    }


def test_a_target_is_met_at_its_figure_and_not_below(report_targets: ModuleType) -> None:
    section = report_targets.targets(_results(worker=0.5, jobs_2=1.59))
    verdicts = [row.rsplit(" | ", 1)[1] for row in section.rows]
    # worker ×0.5 and simulator ×0.15 exactly, compiled ×4 exactly: met; the others below
    assert verdicts == ["**yes**", "no", "**yes**", "no", "**yes**", "no"]
    assert section.note.startswith("3 of 6 met in this run.")


def test_a_step_that_did_not_run_is_no_verdict(report_targets: ModuleType) -> None:
    results = _results(worker=0.6, jobs_2=2)
    del results["live"]
    section = report_targets.targets(results)
    assert section.rows[0].endswith("| not run | ")
    assert section.note.startswith("3 of 6 met in this run (1 not run).")


def test_each_targets_figure_is_the_one_its_own_section_shows(
    report_targets: ModuleType,
) -> None:
    # the committed run: the targets' table may not compute a figure otherwise than the
    # section that reports it
    report = importlib.import_module("report")
    results = json.loads((ROOT / "bench/results.json").read_text())
    _, full = report.render(results)
    targets, rest = full.split("\n## Live throughput", 1)
    for row in report_targets.targets(results).rows:
        shown = row.split(" | ")[2]
        assert shown in targets
        assert f"**{shown}" in rest or f"{shown} of raw" in rest, shown
