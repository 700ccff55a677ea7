"""The compiled build: the hot modules compiled by mypyc from the same typed Python.

A wheel (`pip install .`, `pip wheel .`, `make compiled`) built where a C compiler and
mypyc work carries, beside every .py file, a C extension module for each module in
`COMPILED`; Python imports the extension first. Where there is no compiler, or the
compile fails, the wheel is the pure-Python one (a warning says why), and so is an
editable install (`pip install -e .`, what `make test` installs): the source stays what
runs while developing. SIYU_BUILD=interpreted makes a compiled install run the source
(`siyu_stream/__init__.py`); SIYU_COMPILE=0 builds the pure wheel on purpose.

`python hatch_build.py DIR` compiles into DIR (the extensions only, for a look).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
COMPILED = [
    # the pure rule core (errors.py stays Python: exception classes other modules subclass)
    "siyu_stream/core/actions.py",
    "siyu_stream/core/clock.py",
    "siyu_stream/core/deadletter.py",
    "siyu_stream/core/events.py",
    "siyu_stream/core/golive.py",
    "siyu_stream/core/jsonout.py",
    "siyu_stream/core/memo.py",
    "siyu_stream/core/policy.py",
    "siyu_stream/core/rules.py",
    "siyu_stream/core/ruleset.py",
    "siyu_stream/core/schemas.py",
    "siyu_stream/core/state.py",
    "siyu_stream/core/step.py",
    "siyu_stream/core/stored.py",
    "siyu_stream/core/timers.py",
    # event time: partitions, clocks, timers, the merge order
    "siyu_stream/eventtime/keys.py",
    "siyu_stream/eventtime/merge.py",
    "siyu_stream/eventtime/partition.py",
    # the replay merge loop and its output
    "siyu_stream/replay/engine.py",
    "siyu_stream/replay/jobloop.py",
    "siyu_stream/replay/jobs.py",
    "siyu_stream/replay/lines.py",
    "siyu_stream/replay/outputs.py",
    "siyu_stream/replay/parts.py",
    "siyu_stream/replay/run.py",
    "siyu_stream/replay/spill.py",
    # the live worker's per-record work: decoding on arrival, the partition task, its
    # state batch, and the observation of every step (its asyncio loop stays Python)
    "siyu_stream/live/arrival.py",
    "siyu_stream/live/batch.py",
    "siyu_stream/live/processor.py",
    "siyu_stream/live/records.py",
    "siyu_stream/observe/observer.py",
    "siyu_stream/observe/timeline.py",
    # backtest's per-action work: tallies and the diff of the two runs
    "siyu_stream/backtest/diff.py",
    "siyu_stream/backtest/tally.py",
]


def compiler() -> str | None:
    """The C compiler Python's extensions are built with, if it is installed."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(os.environ.get("CC", cc).split()[0])


def compile_to(out: Path, temp: Path) -> list[Path]:
    """Compile COMPILED into `out` (package layout); the extension files written."""
    from mypyc.build import mypycify  # noqa: PLC0415 - a build requirement of wheels only
    from setuptools import Distribution  # noqa: PLC0415

    here = Path.cwd()
    os.chdir(ROOT)  # mypyc names modules by their paths
    try:
        extensions = mypycify(COMPILED, opt_level="3", multi_file=True, target_dir=str(temp / "c"))
        dist = Distribution({"name": "siyu-stream-compiled", "ext_modules": extensions})
        command: Any = dist.get_command_obj("build_ext")
        command.build_lib, command.build_temp = str(out), str(temp / "o")
        command.parallel = os.cpu_count() or 1
        dist.run_command("build_ext")
    finally:
        os.chdir(here)
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    return sorted(out.rglob(f"*{suffix}"))


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # run as a script, outside a build
    BuildHookInterface = object  # type: ignore[assignment,misc]


class CompiledBuildHook(BuildHookInterface):  # type: ignore[misc,valid-type]
    """Adds the compiled modules to a standard wheel; leaves editable installs alone."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        if os.environ.get("SIYU_COMPILE") == "0":
            return
        if compiler() is None:
            self.app.display_warning("siyu-stream: no C compiler: the interpreted build")
            return
        temp = Path(tempfile.mkdtemp(prefix="siyu-mypyc-"))
        started = time.monotonic()
        try:
            built = compile_to(temp / "lib", temp)
        except Exception as exc:  # any failure: fall back to pure Python
            self.app.display_warning(f"siyu-stream: compile failed, interpreted build: {exc}")
            return
        for path in built:
            build_data["force_include"][str(path)] = str(path.relative_to(temp / "lib"))
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        seconds = time.monotonic() - started
        self.app.display_info(f"siyu-stream: {len(built)} modules compiled in {seconds:.0f} s")


if __name__ == "__main__":
    target = Path(sys.argv[1]).resolve()
    with tempfile.TemporaryDirectory(prefix="siyu-mypyc-") as tmp:
        for path in compile_to(target, Path(tmp)):
            print(path)
