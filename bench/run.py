"""`make bench`: run every benchmark, write bench/results.json and bench/results.md, and
replace the README's `## Performance` section with a short summary of them.

    .venv/bin/python bench/run.py            # everything (~40 minutes on 2 shared cores)
    .venv/bin/python bench/run.py --quick    # a smoke run with small sizes; writes only
                                             # bench/.cache/quick-results.{json,md}

Each figure is produced by one of the scripts next to this one, run in a fresh interpreter;
the command is recorded with the figure. Inputs are generated once into bench/.cache/.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import (
    BENCH,
    CACHE,
    PYTHON,
    ROOT,
    SIM_CUSTOMERS,
    SIM_RATE,
    command,
    log,
    machine,
    median,
    rel,
    run_json,
    sim_path,
)
from report import render, replace_readme_section

REPLAY = [PYTHON, str(BENCH / "replay_bench.py")]
LIVE = [PYTHON, str(BENCH / "live_bench.py")]
HISTORY_DAYS = 365
UNTIL_DAYS = 400  # replay the history as `--now END --until END+400 days`: its timers fire


def bench(*argv: object, timeout: float = 900) -> dict[str, Any]:
    return run_json([str(a) for a in argv], timeout=timeout)


def simulate(path: Path, *options: object) -> dict[str, Any]:
    argv = [str(Path(PYTHON).parent / "siyu-stream"), "simulate", *map(str, options)]
    argv += ["--out", str(path)]
    info: dict[str, Any] = {"path": rel(path), "command": command(*argv)}
    if path.exists():
        info["cached"] = True
        return info
    log("$ " + info["command"])
    started = time.monotonic()
    argv[-1] = str(path.with_suffix(".partial"))
    subprocess.run(argv, cwd=ROOT, check=True)
    Path(argv[-1]).rename(path)
    info["seconds"] = time.monotonic() - started
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for checking the bench")
    parser.add_argument(
        "--only",
        help="comma separated: replay,replay_jobs,profile,profile_history,processor,memory,"
        "idle,live,worker_profile,latency,recovery,faust",
    )
    args = parser.parse_args()
    quick = args.quick
    only = set(args.only.split(",")) if args.only else None
    CACHE.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    if importlib.util.find_spec("pyinstrument") is None:
        log("installing pyinstrument into the venv (profiling only; not a project dependency)")
        subprocess.run([PYTHON, "-m", "pip", "install", "-q", "pyinstrument"], check=True)
    if (only is None or "faust" in only) and importlib.util.find_spec("faust") is None:
        log("installing the extra `bench` (faust-streaming, the peer of the `faust` step)")
        pip = [PYTHON, "-m", "pip", "install", "-q", "-e", f"{ROOT}[bench]"]
        subprocess.run(pip, check=True)
    size = {
        "events": 100_000 if quick else 500_000,
        "history_events": 20_000 if quick else 200_000,
        "big_customers": 200_000 if quick else 1_000_000,
        "profile_events": 20_000 if quick else 200_000,
        "processor_events": 10_000 if quick else 100_000,
        "replay_runs": 1 if quick else 3,
        "live_events": 20_000 if quick else 60_000,
        "live_repeat": 1 if quick else 2,
        "worker_profile_events": 10_000 if quick else 60_000,
        "fp_events": 10_000 if quick else 40_000,
        "latency_seconds": 4 if quick else 12,
        "recovery_sizes": "0,20000" if quick else "0,100000",
        "overdue_sizes": "0,20000" if quick else "0,100000",
        "faust_events": 5_000 if quick else 20_000,
        "faust_restart_events": 5_000 if quick else 10_000,
        "faust_repeat": 1 if quick else 3,
    }
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "sizes": size,
        "machine": machine(),
        "errors": {},
    }

    def step(name: str, fn: Callable[[], Any]) -> Any:
        if only is not None and name not in only:
            return None
        try:
            results[name] = fn()
        except Exception as exc:  # one failed figure must not lose the others
            traceback.print_exc()
            results["errors"][name] = f"{type(exc).__name__}: {exc}"
        return results.get(name)

    def steady(customers: int) -> dict[str, Any]:
        n = size["events"]
        flags = ("--customers", customers, "--rate", SIM_RATE, "--events", n)
        return simulate(sim_path(customers, n), *flags)

    n = size["history_events"]
    history_path = CACHE / f"history-{n // 1000}k-events-{HISTORY_DAYS}-days.jsonl"
    inputs = {
        "main": steady(SIM_CUSTOMERS),
        "history": simulate(history_path, "--days", HISTORY_DAYS, "--events", n),
    }
    main_input = str(ROOT / inputs["main"]["path"])
    if only is None or "memory" in only:
        inputs["big"] = steady(size["big_customers"])
    results["inputs"] = inputs
    states = CACHE / f"states-{Path(main_input).stem}.tsv"
    first_run = ("--sizes", "--dump-states", states)

    def replay_runs(name: str, *flags: object) -> dict[str, Any]:
        argv = [*REPLAY, "run", ROOT / inputs[name]["path"], *flags]
        runs = [
            bench(*argv, *(first_run if i == 0 and name == "main" else ()))
            for i in range(size["replay_runs"])
        ]
        return {
            "events_per_s_median": median([r["events_per_s"] for r in runs]),
            "events_per_s_runs": [r["events_per_s"] for r in runs],
            "pipe_ratio_median": median([r["pipe_ratio"] for r in runs]),
            "cpu_us_per_event_median": median([r["cpu_us_per_event"] for r in runs]),
            "command": command(*argv),
            "runs": runs,
        }

    replayed = step(
        "replay",
        lambda: {
            "main": replay_runs("main"),
            "history": replay_runs("history", "--until-days", UNTIL_DAYS),
        },
    )

    def replay_jobs() -> dict[str, Any]:
        """`replay --jobs 2` against `--jobs 1`, both over 4 partitions, on the timer-heavy
        history: the same bytes out, in about half the time on 2 cores."""
        # both measured here: the replay step's runs are over replay_bench's 1 partition
        flags = ("--until-days", UNTIL_DAYS, "--partitions", 4)
        one, two = (replay_runs("history", *flags, "--jobs", jobs) for jobs in (1, 2))
        speedup = two["events_per_s_median"] / one["events_per_s_median"]
        log(f"replay --jobs 2: ×{speedup:.2f} of --jobs 1 (medians)")
        return {"jobs_1": one, "jobs_2": two, "speedup": speedup}

    step("replay_jobs", replay_jobs)
    step(
        "profile", lambda: bench(*REPLAY, "profile", main_input, "--events", size["profile_events"])
    )
    history_input = ROOT / inputs["history"]["path"]
    step(
        "profile_history",
        lambda: bench(*REPLAY, "profile", history_input, "--events", n, "--until-days", UNTIL_DAYS),
    )
    step(
        "processor",
        lambda: bench(*REPLAY, "processor", "--events", size["processor_events"], "--profile"),
    )
    step(
        "memory",
        lambda: {
            "main": replayed["main"]["runs"][0]
            if replayed
            else bench(*REPLAY, "run", main_input, *first_run),
            "big": bench(*REPLAY, "run", ROOT / inputs["big"]["path"], "--sizes"),
        },
    )
    step("idle", lambda: bench(*LIVE, "idle", timeout=300))

    def live(workload: str, events: int, *modes: str) -> dict[str, Any]:
        argv = [*LIVE, "throughput", "--workload", workload, *modes, "--events", events]
        return bench(*argv, "--repeat", size["live_repeat"], timeout=1800)

    lived = step(
        "live",
        lambda: {
            "sim": live("sim", size["live_events"]),
            "first_purchase": live("first-purchase", size["fp_events"], "--modes", "worker1"),
        },
    )
    step(
        "worker_profile",
        lambda: bench(*LIVE, "profile", "--events", size["worker_profile_events"]),
    )

    def latency(guarantee: str) -> dict[str, Any]:
        # 25, 50 and 75 % of the worker's throughput on the same workload, measured above
        summary = lived["first_purchase"]["summary"] if lived else {}
        top = summary.get(f"worker-1-{guarantee}", {}).get("events_per_s_median", 4000.0)
        rates = ",".join(f"{top * f:.0f}" for f in (0.25, 0.5, 0.75))
        argv = [*LIVE, "latency", "--guarantee", guarantee, "--rates", rates]
        return {**bench(*argv, "--seconds", size["latency_seconds"]), "max_events_per_s": top}

    step("latency", lambda: {g: latency(g) for g in ("at_least_once", "exactly_once")})

    def recovery() -> dict[str, Any]:
        if not states.exists():
            bench(*REPLAY, "run", main_input, "--dump-states", states)
        base = [PYTHON, BENCH / "recovery_bench.py", "--states", states, "--sizes"]
        sizes = size["recovery_sizes"]
        runs = {
            # states moved to an hour ago: restore and ready without months-overdue timers
            "memory": [*base, sizes, "--shift"],
            "rocksdb": [*base, sizes, "--store", "rocksdb", "--shift", "--warm"],
            # as replayed (January 2026): every timer overdue, fired in the first sweep
            "overdue": [*base, size["overdue_sizes"]],
        }
        out = {}
        for name, argv in runs.items():
            try:
                out[name] = bench(*argv, timeout=1200)
            except Exception as exc:  # keep the other recovery figures
                results["errors"][f"recovery-{name}"] = f"{type(exc).__name__}: {exc}"
        return out

    step("recovery", recovery)

    def faust() -> dict[str, Any]:
        """The peer: faust-streaming with the same rule core, beside the worker and the raw
        pipe on one broker (throughput), and both apps across SIGTERM restarts."""
        argv = [PYTHON, BENCH / "faust_bench.py"]
        repeat = ("--repeat", size["faust_repeat"])
        return {
            "throughput": bench(
                *argv, "throughput", "--events", size["faust_events"], *repeat, timeout=1800
            ),
            "restart": bench(
                *argv, "restart", "--events", size["faust_restart_events"], *repeat, timeout=1800
            ),
        }

    step("faust", faust)

    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["wall_seconds"] = time.monotonic() - began
    results["machine"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    stem = CACHE / "quick-results" if quick else BENCH / "results"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    section, full = render(results)
    stem.with_suffix(".md").write_text(full)
    log(f"wrote {rel(stem)}.json and .md ({results['wall_seconds'] / 60:.1f} min)")
    if not quick and only is None:
        replace_readme_section(ROOT / "README.md", section)
        log("replaced the README's ## Performance section (summary)")
    if results["errors"]:
        log(f"figures that failed: {results['errors']}")
        sys.exit(1)


if __name__ == "__main__":
    main()
