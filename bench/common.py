"""What every benchmark script shares: paths, commands, its command line, statistics, machine
facts and /proc readings. The benchmarks assert nothing about time: each script prints one
JSON object on stdout (its figures) and logs on stderr; `bench/run.py` runs them all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CACHE = BENCH / ".cache"
PYTHON = sys.executable
SIM_CUSTOMERS = 100_000
SIM_RATE = 1_000


def rel(path: Path | str) -> str:
    """A path relative to the project root when it is under it."""
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def command(*argv: object) -> str:
    """The shell command for `argv`, the venv's python shown as `.venv/bin/python`."""
    parts = [".venv/bin/python" if str(a) == PYTHON else str(a) for a in argv]
    return shlex.join(rel(a) if a.startswith(str(ROOT) + "/") else a for a in parts)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_json(
    argv: list[str], *, timeout: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run a benchmark script in a fresh interpreter; the JSON it printed, with its command
    (`env`: variables set on top of this process's, shown before the command)."""
    shown = " ".join(f"{k}={rel(v) if v.startswith('/') else v}" for k, v in (env or {}).items())
    line = f"{shown} {command(*argv)}".strip()
    log("$ " + line)
    proc = subprocess.run(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        msg = f"{line} exited with {proc.returncode}"
        raise RuntimeError(msg)
    return {**json.loads(proc.stdout), "command": line}


def script_main(
    doc: str | None, commands: dict[str, tuple[Callable[..., Any], dict[str, Any]]]
) -> None:
    """`SCRIPT COMMAND [OPTIONS]`: runs the command's function (or coroutine function) on the
    parsed arguments and prints what it returns as JSON. Options are `{name: default}`: a
    name without `--` is positional, `...` required, False a flag, None a text; else the
    default's type."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, (func, options) in commands.items():
        p = sub.add_parser(name)
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
    from siyu_stream.kafka.jvm import find_java, jars_dir, kafka_version  # noqa: PLC0415

    def first(pattern: str, path: str) -> str:
        found = re.search(pattern, Path(path).read_text(), re.M)
        return found.group(1).strip() if found else "unknown"

    git = ["git", "rev-parse", "--short", "HEAD"]
    commit = subprocess.run(git, cwd=ROOT, capture_output=True, text=True, check=False).stdout
    packages = {p: version(p) for p in ("aiokafka", "orjson", "noida-db", "faust-streaming")}
    java = find_java()
    return {
        "nproc": len(os.sched_getaffinity(0)),  # what `nproc` prints
        "cpu_model": first(r"^model name\s*:\s*(.+)$", "/proc/cpuinfo"),
        "ram_gib": round(int(first(r"^MemTotal:\s*(\d+) kB", "/proc/meminfo")) / 2**20, 1),
        "python": sys.version.split()[0],
        "kafka": kafka_version(jars_dir()),
        "java": java[1].splitlines()[0] if java else "none",
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


def peak_rss_bytes(pid: int | str = "self") -> int:
    """The most resident memory the process has held (VmHWM), bytes; 0 if it is gone."""
    match = re.search(r"^VmHWM:\s*(\d+) kB", proc_file(pid, "status"), re.M)
    return int(match.group(1)) * 1024 if match else 0


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time a process has used so far (0 if it is gone or unknown)."""
    fields = proc_file(pid or 0, "stat").rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else 0.0
