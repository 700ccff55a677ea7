"""Shared helpers for the benchmarks: paths, machine facts, processes, statistics.

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
import signal
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


def sim_path(customers: int, events: int) -> Path:
    def short(n: int) -> str:
        if n % 1_000_000 == 0:
            return f"{n // 1_000_000}m"
        return f"{n // 1_000}k" if n % 1_000 == 0 else str(n)

    return CACHE / f"sim-{short(events)}-events-{short(customers)}-customers.jsonl"


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


def emit(result: dict[str, Any]) -> None:
    """A benchmark script's result: one JSON object on stdout."""
    sys.stdout.write(json.dumps(result, indent=1) + "\n")
    sys.stdout.flush()


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


def script_main(
    doc: str | None, commands: dict[str, tuple[Callable[..., Any], dict[str, Any]]]
) -> None:
    """`SCRIPT COMMAND [OPTIONS]`: one function (or coroutine function) per command, given
    the parsed arguments; emits what it returns. Options are `{name: default}`: a name
    without `--` is positional, False a flag, None a text; else the default's type."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, (func, options) in commands.items():
        p = sub.add_parser(name)
        for flag, default in options.items():
            if not flag.startswith("--"):
                p.add_argument(flag)
            elif default is False:
                p.add_argument(flag, action="store_true")
            else:
                p.add_argument(flag, default=default, type=type(default) if default else None)
        p.set_defaults(func=func)
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    result = args.func(args)
    emit(asyncio.run(result) if asyncio.iscoroutine(result) else result)


# ------------------------------------------------------------------ statistics


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return float(sorted_values[rank - 1])


# ------------------------------------------------------------------ machine


def machine() -> dict[str, Any]:
    model = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    total = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    git = ["git", "rev-parse", "--short", "HEAD"]
    commit = subprocess.run(git, cwd=ROOT, capture_output=True, text=True, check=False).stdout
    packages = {}
    for name in ("aiokafka", "orjson", "noida-db", "fastjsonschema", "pyinstrument"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = "not installed"
    return {
        "nproc": int(nproc) if nproc.isdigit() else os.cpu_count(),
        "cpu_model": model.group(1).strip() if model else platform.processor() or "unknown",
        "ram_gib": round(int(total.group(1)) / 1024 / 1024, 1) if total else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "packages": packages,
        "git_commit": commit.strip() or "unknown",
    }


# ------------------------------------------------------------------ processes


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size now (VmRSS), bytes; 0 if the process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    match = re.search(r"^VmRSS:\s*(\d+) kB", status, re.M)
    return int(match.group(1)) * 1024 if match else 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_process(proc: subprocess.Popen[Any], grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; always reaped."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()
