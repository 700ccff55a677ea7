"""Shared helpers for the benchmarks: paths, machine facts, processes, statistics.

The benchmarks are not tests: they assert nothing about time. Each script prints one JSON
object on stdout (its figures) and logs progress on stderr; `bench/run.py` runs them all.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CACHE = BENCH / ".cache"
PYTHON = sys.executable

SIM_CUSTOMERS = 100_000
SIM_RATE = 1_000
SIM_EVENTS = 1_000_000
PROFILE_EVENTS = 200_000


def sim_path(customers: int, events: int) -> Path:
    return CACHE / f"sim-{_short(events)}-events-{_short(customers)}-customers.jsonl"


def _short(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def rel(path: Path | str) -> str:
    """A path as the README should show it: relative to the project root when possible."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


def command(*argv: object) -> str:
    """The shell command for `argv`, with the venv's python shown as `.venv/bin/python`."""
    parts = [".venv/bin/python" if str(a) == PYTHON else str(a) for a in argv]
    parts = [rel(a) if a.startswith(str(ROOT) + "/") else a for a in parts]
    return shlex.join(parts)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> None:
    """A benchmark script's result: one JSON object on stdout."""
    sys.stdout.write(json.dumps(result, indent=1) + "\n")
    sys.stdout.flush()


def run_json(argv: list[str], *, timeout: float) -> dict[str, Any]:
    """Run a benchmark script in a fresh interpreter; return the JSON it printed."""
    log("$ " + command(*argv))
    proc = subprocess.run(
        argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=None, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        msg = f"{command(*argv)} exited with {proc.returncode}"
        raise RuntimeError(msg)
    result: dict[str, Any] = json.loads(proc.stdout)
    result.setdefault("command", command(*argv))
    return result


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
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    meminfo = Path("/proc/meminfo").read_text()
    total = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.M)
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    return {
        "nproc": int(nproc) if nproc.isdigit() else os.cpu_count(),
        "cpu_model": model.group(1).strip() if model else platform.processor() or "unknown",
        "ram_gib": round(int(total.group(1)) / 1024 / 1024, 1) if total else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "packages": _versions("aiokafka", "orjson", "noida-db", "fastjsonschema", "pyinstrument"),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
    }


def _versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return proc.stdout.strip() or "unknown"


# ------------------------------------------------------------------ processes


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size now (VmRSS), bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s*(\d+) kB", status, re.M)
    return int(match.group(1)) * 1024 if match else 0


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = stat.rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def stop_process(proc: subprocess.Popen[Any], grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; always reaped."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()
