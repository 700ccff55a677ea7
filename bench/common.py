"""What every benchmark script shares: paths, commands, its command line, statistics, machine
facts and /proc readings.

The benchmarks are not tests: they assert nothing about time. Each script prints one JSON
object on stdout (its figures) and logs progress on stderr; `bench/run.py` runs them all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CACHE = BENCH / ".cache"
PYTHON = sys.executable
SIM_CUSTOMERS = 100_000
SIM_RATE = 1_000


def rel(path: Path | str) -> str:
    """A path as the README should show it: relative to the project root when possible."""
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def command(*argv: object) -> str:
    """The shell command for `argv`, with the venv's python shown as `.venv/bin/python`."""
    parts = [".venv/bin/python" if str(a) == PYTHON else str(a) for a in argv]
    return shlex.join(rel(a) if a.startswith(str(ROOT) + "/") else a for a in parts)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_json(argv: list[str], *, timeout: float) -> dict[str, Any]:
    """Run a benchmark script in a fresh interpreter; return the JSON it printed."""
    log("$ " + command(*argv))
    proc = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, timeout=timeout, check=False)
    if proc.returncode != 0:
        msg = f"{command(*argv)} exited with {proc.returncode}"
        raise RuntimeError(msg)
    result: dict[str, Any] = json.loads(proc.stdout)
    result.setdefault("command", command(*argv))
    return result


Commands = dict[str, tuple[Callable[..., Any], dict[str, Any]]]
"""A script's commands: name -> (function or coroutine function, its options)."""


def script_main(doc: str | None, commands: Commands) -> None:
    """`SCRIPT COMMAND [OPTIONS]`: runs the command's function on the parsed arguments and
    prints what it returns as JSON. Options are `{name: default}`: a name without `--` is
    positional, `...` a required text, False a flag, None a text; else the default's type.
    A script with one command names it ""."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    if list(commands) == [""]:  # a script with one command: no name to give
        parsers = {"": parser}
    else:
        sub = parser.add_subparsers(dest="cmd", required=True)
        parsers = {name: sub.add_parser(name) for name in commands}
    for name, (func, options) in commands.items():
        p = parsers[name]
        for flag, default in options.items():
            if not flag.startswith("--"):
                p.add_argument(flag)
            elif default is ...:
                p.add_argument(flag, required=True)
            elif default is False:
                p.add_argument(flag, action="store_true")
            else:
                p.add_argument(flag, default=default, type=type(default) if default else None)
        p.set_defaults(func=func)
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    result = args.func(args)
    result = asyncio.run(result) if asyncio.iscoroutine(result) else result
    sys.stdout.write(json.dumps(result, indent=1) + "\n")


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return float(sorted_values[rank - 1])


def machine() -> dict[str, Any]:
    model = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    total = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    git = ["git", "rev-parse", "--short", "HEAD"]
    commit = subprocess.run(git, cwd=ROOT, capture_output=True, text=True, check=False).stdout
    packages = {}
    for name in ("aiokafka", "orjson", "noida-db", "fastjsonschema", "pyinstrument"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = "not installed"
    return {
        "nproc": len(os.sched_getaffinity(0)),  # what `nproc` prints
        "cpu_model": model.group(1).strip() if model else platform.processor() or "unknown",
        "ram_gib": round(int(total.group(1)) / 1024 / 1024, 1) if total else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "packages": packages,
        "git_commit": commit.strip() or "unknown",
    }


def proc_file(pid: int | str, name: str) -> str:
    """/proc/PID/NAME, or "" once the process is gone."""
    try:
        return Path(f"/proc/{pid}/{name}").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size now (VmRSS), bytes; 0 if the process is gone."""
    match = re.search(r"^VmRSS:\s*(\d+) kB", proc_file(pid, "status"), re.M)
    return int(match.group(1)) * 1024 if match else 0


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time a process has used so far (0 if it is gone or unknown)."""
    fields = proc_file(pid or 0, "stat").rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else 0.0
