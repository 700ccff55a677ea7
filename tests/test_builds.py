"""The compiled build (mypyc, `make compiled`) and the interpreted one write the same bytes.

Both run from the same install of a wheel built by hatch_build.py: as installed (the
extension modules) and with SIYU_BUILD=interpreted (the .py files beside them), each in a
subprocess, over simulator streams (replay, `--jobs 2` too, and backtest) and over the
property tests' random histories (tests/builds_histories.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from scenario import histories

from siyu_stream.build import build as running_build

ROOT = Path(__file__).resolve().parent.parent
COMPILED = Path(os.environ.get("SIYU_COMPILED", ROOT / ".compiled" / "site"))
"""Where `make compiled` installs the wheel (`make test` names it in SIYU_COMPILED)."""
BUILDS = ("compiled", "interpreted")
NOW = "2027-06-01T00:00:00Z"

pytestmark = pytest.mark.skipif(
    "SIYU_COMPILED" not in os.environ and not (COMPILED / "siyu_stream").is_dir(),
    reason="no compiled build: `make compiled` (make test builds it)",
)


def _expected() -> str:
    """What the compiled install holds: extensions, unless no compiler could build them."""
    compiled = any((COMPILED / "siyu_stream").rglob("*.so"))
    assert compiled or shutil.which("cc") is None, f"{COMPILED} holds no compiled module"
    return "compiled" if compiled else "interpreted"


def _run(build: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(COMPILED), str(ROOT / "tests")])}
    env.pop("SIYU_BUILD", None)
    if build == "interpreted":
        env["SIYU_BUILD"] = "interpreted"
    result = subprocess.run(
        [sys.executable, *args], env=env, cwd=COMPILED, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    return result


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    here = tmp_path_factory.mktemp("streams")
    found = {}
    for name, extra in {"fast": [], "history": ["--days", "365"]}.items():
        found[name] = here / f"{name}.jsonl"
        simulate = ["-m", "siyu_stream.cli", "simulate", "--events", "4000", "--seed", "5"]
        _run("interpreted", *simulate, *extra, "--out", str(found[name]))
    return found


def test_the_suite_runs_the_build_make_test_put_first() -> None:
    """`make test` runs the suite on the compiled build: .compiled/site first on the path,
    and PYTHONSAFEPATH so that `python -m` does not put the checkout's source before it."""
    if str(COMPILED) not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        pytest.skip("the suite runs the editable install (PYTHONPATH does not name the build)")
    assert os.environ.get("PYTHONSAFEPATH"), "python -m from the checkout would run its source"
    assert running_build() == _expected()
    # and a process the tests start in the checkout (as the integration tests start workers)
    code = "from siyu_stream.build import build; print(build())"
    ran = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, check=True)
    assert ran.stdout.decode().strip() == _expected()


@pytest.mark.slow
@pytest.mark.parametrize("stream", ["fast", "history"])
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_replay_writes_the_same_bytes_in_both_builds(
    streams: dict[str, Path], stream: str, jobs: str, tmp_path: Path
) -> None:
    written = {}
    for build in BUILDS:
        out, dead = tmp_path / f"{build}.jsonl", tmp_path / f"{build}.dead"
        replay = ["-m", "siyu_stream.cli", "replay", str(streams[stream]), "--now", NOW]
        result = _run(build, *replay, "--jobs", jobs, "--out", str(out), "--deadletter", str(dead))
        summary = result.stderr.decode().splitlines()[-2]
        expected = _expected() if build == "compiled" else "interpreted"
        assert summary.endswith(f", {expected} build"), summary
        written[build] = (out.read_bytes(), dead.read_bytes())
    assert written["compiled"][0], "no actions: nothing compared"
    assert written["compiled"] == written["interpreted"]


@pytest.mark.slow
def test_backtest_writes_the_same_bytes_in_both_builds(
    streams: dict[str, Path], tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text("[silence]\nstreak = 3\n[dormant]\ndays = 60\n")
    written = {}
    for build in BUILDS:
        out = tmp_path / build
        backtest = ["-m", "siyu_stream.cli", "backtest", str(streams["history"]), "--now", NOW]
        _run(build, *backtest, "--rules", str(rules), "--out", str(out))
        written[build] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert written["compiled"]["diff.jsonl"], "no differences: nothing compared"
    assert written["compiled"] == written["interpreted"]


@pytest.mark.slow
def test_random_histories_give_the_same_bytes_in_both_builds(tmp_path: Path) -> None:
    drawn: list[list[dict[str, Any]]] = []

    @settings(max_examples=300, derandomize=True, database=None, deadline=None)
    @given(histories())
    def draw(events: list[dict[str, Any]]) -> None:
        drawn.append(events)

    draw()
    path = tmp_path / "histories.jsonl"
    path.write_bytes(b"".join(orjson.dumps(events) + b"\n" for events in drawn))
    dumped = {}
    for build in BUILDS:
        result = _run(build, str(ROOT / "tests" / "builds_histories.py"), str(path))
        expected = _expected() if build == "compiled" else "interpreted"
        assert result.stderr.decode().startswith(f"{expected} build"), result.stderr
        dumped[build] = result.stdout
    assert dumped["compiled"].count(b"history\n") == len(drawn) == 300
    assert dumped["compiled"] == dumped["interpreted"]


@pytest.mark.slow
def test_without_a_c_compiler_the_wheel_is_pure_python_and_writes_the_same_bytes(
    tmp_path: Path,
) -> None:
    """A machine without a C compiler still installs and runs the project (hatch_build.py
    falls back to the interpreted build); CC naming no program stands for it."""
    env = {**os.environ, "CC": str(tmp_path / "no-cc")}
    env.pop("PYTHONPATH", None)
    wheel = ["-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(ROOT)]
    subprocess.run([sys.executable, *wheel], env=env, capture_output=True, check=True)
    (built,) = (tmp_path / "dist").glob("*.whl")
    assert built.name.endswith("-py3-none-any.whl"), built.name
    site = tmp_path / "site"
    install = ["-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(built)]
    subprocess.run([sys.executable, *install], capture_output=True, check=True)
    assert not list(site.rglob("*.so"))
    written = {}
    for where in (site, COMPILED):
        out = tmp_path / f"{where.name}.jsonl"
        argv = ["-m", "siyu_stream.cli", "replay", str(ROOT / "tests/data/lifecycle.jsonl")]
        argv += ["--now", NOW, "--out", str(out), "--deadletter", os.devnull]
        result = subprocess.run(
            [sys.executable, *argv],
            env={**env, "PYTHONPATH": str(where)},
            cwd=tmp_path,
            capture_output=True,
            check=True,
        )
        written[where] = (result.stderr.decode().splitlines()[-2], out.read_bytes())
    assert written[site][0].endswith(", interpreted build"), written[site][0]
    assert written[COMPILED][0].endswith(f", {_expected()} build"), written[COMPILED][0]
    assert written[site][1], "no actions: nothing compared"
    assert written[site][1] == written[COMPILED][1]


def test_compiled_records_refuse_assignment() -> None:
    """Events, lines, timers, order records and actions declare their fields `Final`:
    mypy refuses an assignment to one, and the compiled build makes them read-only."""
    code = (
        "from siyu_stream.core.actions import Action\n"
        "from siyu_stream.core.events import Order\n"
        "from siyu_stream.core.state import OrderRecord, Timer\n"
        "from siyu_stream.replay.lines import Line\n"
        "records = [\n"
        "    (Order('e', 'c', 1, 'o', 'paid', 100, 'tmall', False), 'amount_fen'),\n"
        "    (Line('f', 1, b'', None, None), 'event'),\n"
        "    (Timer(1, 'e', ''), 'due'),\n"
        "    (OrderRecord(b'k', 100, False), 'remaining_fen'),\n"
        "    (Action('i', 'gift', 'r', 'c', 1, 'e', {}, 'b', 'v'), 'detail'),\n"
        "]\n"
        "for record, field in records:\n"
        "    try:\n"
        "        setattr(record, field, None)\n"
        "    except AttributeError:\n"
        "        print('refused')\n"
        "    else:\n"
        "        print('assigned')\n"
    )
    ran = _run("compiled", "-c", code).stdout.decode().split()
    assert ran == ["refused" if _expected() == "compiled" else "assigned"] * 5
