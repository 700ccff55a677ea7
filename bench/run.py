"""`make bench`: run every benchmark, write bench/results.json and bench/results.md, and
replace the README's `## Performance` section with a summary of them.

    .venv/bin/python bench/run.py                # everything (~30 min on 2 shared cores)
    .venv/bin/python bench/run.py --quick        # small sizes: bench/.cache/quick-results.*
    .venv/bin/python bench/run.py --only live,latency

The live figures are on Apache Kafka (1 node, bench/brokers.py), raw aiokafka, the worker,
the Faust peer and the Kafka Streams peer (bench/kstreams, a jar `make bench` builds) on the
same broker and input; a few are repeated on noida-db. Each figure comes from a script next
to this one in a fresh interpreter, its command recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import common
from common import BENCH, CACHE, PYTHON, ROOT, command, log, median, rel
from report import render, replace_readme_section

REPLAY, LIVE = [PYTHON, BENCH / "replay_bench.py"], [PYTHON, BENCH / "live_bench.py"]
RECOVERY = [PYTHON, BENCH / "recovery_bench.py", "restore"]
UNTIL = ("--until-days", 400)  # the history replayed as `--now END --until END+400 days`
SIZES = {  # (--quick, full)
    "events": (50_000, 300_000),
    "history_events": (20_000, 150_000),
    "replay_runs": (1, 3),
    "processor_events": (10_000, 100_000),
    # 100,000: at 30,000 the raw pipe ran ~1 s, its warm-up a large share (19,112 and
    # 43,431 events/s in one bench), and the worker ÷ raw ratio followed that spread
    "live_events": (10_000, 100_000),
    "live_repeat": (1, 2),
    "latency_seconds": (4, 12),
    "recovery_sizes": ("0,20000", "0,100000"),
    "restart_events": (4_000, 10_000),
    "restart_repeat": (1, 3),
}
STEPS = "replay,backtest,replay_jobs,baseline,processor,live,latency,recovery,restart,noida"
COMPILED = ROOT / ".compiled" / "site"
"""The compiled build `make bench` builds: every figure's, unless it says interpreted."""
INTERPRETED = {"SIYU_BUILD": "interpreted"}
"""The same install's Python source (siyu_stream/__init__.py): the figures to compare with."""
BASELINE = "527a0c3"
"""main before the compiled build and the speed work that came with it (replay of a
60-day history at 7,872 events/s then): how much faster the commands are since, measured
in the same run. Its interpreted source gained too, so compiled ÷ interpreted alone
understates it."""


def bench(
    *argv: object, timeout: float = 1800, env: dict[str, str] | None = None
) -> dict[str, Any]:
    return common.run_json([str(a) for a in argv], timeout=timeout, env=env)


def simulate(path: Path, *options: object) -> dict[str, Any]:
    """The input at `path`, written by `siyu-stream simulate` unless it is there already."""
    argv = [str(Path(PYTHON).parent / "siyu-stream"), "simulate", *map(str, options)]
    info = {"path": rel(path), "command": command(*argv, "--out", path)}
    if not path.exists():
        log("$ " + info["command"])
        subprocess.run([*argv, "--out", path.with_suffix(".partial")], cwd=ROOT, check=True)
        path.with_suffix(".partial").rename(path)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the bench")
    parser.add_argument("--only", help=f"comma separated, of: {STEPS}")
    args = parser.parse_args()
    only = set((args.only or STEPS).split(","))
    size = {k: v[0] if args.quick else v[1] for k, v in SIZES.items()}
    CACHE.mkdir(parents=True, exist_ok=True)
    # every script and process below imports the compiled build first (the worker through
    # its console script: `python -m` from the checkout would import the source)
    os.environ["PYTHONPATH"] = str(COMPILED)
    os.environ.setdefault("SIYU_KAFKA_LIB", str(ROOT / ".kafka" / "lib"))  # not beside it
    began = time.monotonic()
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **{"quick": args.quick, "sizes": size, "machine": common.machine(), "errors": {}},
    }

    def step(name: str, fn: Callable[[], Any]) -> Any:
        if name in only:
            try:
                results[name] = fn()
            except Exception as exc:  # one failed figure must not lose the others
                traceback.print_exc()
                results["errors"][name] = f"{type(exc).__name__}: {exc}"
        return results.get(name)

    k, h = size["events"] // 1000, size["history_events"] // 1000
    sim = ("--customers", common.SIM_CUSTOMERS, "--rate", common.SIM_RATE, "--events", k * 1000)
    history = ("--days", 365, "--events", h * 1000)
    results["inputs"] = {
        "main": simulate(CACHE / f"sim-{k}k-events-100k-customers.jsonl", *sim),
        "history": simulate(CACHE / f"history-{h}k-events.jsonl", *history),
    }
    path = {name: ROOT / x["path"] for name, x in results["inputs"].items()}
    states = CACHE / f"states-{path['main'].stem}.tsv"

    def in_turn(argvs: dict[str, tuple[Any, ...]], first: tuple[Any, ...] = ()) -> dict[str, Any]:
        """`size["replay_runs"]` runs of each command, in turn (a, b, a, b, ...): a change in
        the shared host's speed then meets every side of a ratio, not only the runs that
        happen to come later (in the bench at 8860384, run one build after the other, the
        history's compiled ÷ interpreted came out ×2.85 where instructions said ×2.34).
        `first`: options for the very first run only."""
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in argvs}
        lead = next(iter(argvs))
        for i in range(size["replay_runs"]):
            for name, (env, *argv) in argvs.items():
                extra = first if i == 0 and name == lead else ()
                runs[name].append(bench(*argv, *extra, env=env))
        return {name: medians(mine) for name, mine in runs.items()}

    def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
        keys = ("events_per_s", "pipe_ratio", "cpu_us_per_event")
        present = [x for x in keys if x in runs[0]]
        return {**{f"{x}_median": median([r[x] for r in runs]) for x in present}, "runs": runs}

    def replays() -> dict[str, Any]:
        """Each stream, the compiled and the interpreted build in turn."""
        out: dict[str, dict[str, Any]] = {"compiled": {}, "interpreted": {}}
        for name, flags in (("main", ()), ("history", UNTIL)):
            argv = (*REPLAY, "run", path[name], *flags)
            dump = ("--dump-states", states) if name == "main" else ()
            turn = in_turn({"compiled": (None, *argv), "interpreted": (INTERPRETED, *argv)}, dump)
            for build, result in turn.items():
                out[build][name] = result
        return out

    both = step("replay", replays)
    if both is not None:  # the two builds' figures, under the keys the report reads
        results["replay"], results["replay_interpreted"] = both["compiled"], both["interpreted"]

    def backtests() -> dict[str, Any]:
        argv = (*REPLAY, "backtest", path["history"], *UNTIL, "--jobs")
        return in_turn(
            {
                "compiled": (None, *argv, 1),
                "interpreted": (INTERPRETED, *argv, 1),
                "compiled_jobs_2": (None, *argv, 2),
            }
        )

    step("backtest", backtests)

    def replay_jobs() -> dict[str, Any]:
        """--jobs 2 against --jobs 1, both over 4 partitions, on the timer-heavy history."""
        argv = (*REPLAY, "run", path["history"], *UNTIL, "--partitions", 4, "--jobs")
        return in_turn({"jobs_1": (None, *argv, 1), "jobs_2": (None, *argv, 2)})

    step("replay_jobs", replay_jobs)

    def baseline() -> dict[str, Any]:
        """Both commands as `siyu-stream` runs them, BASELINE's and this build's, in turn."""
        out = {}
        for what in ("replay", "backtest"):
            argv = (*REPLAY, "cli", what, path["history"], *UNTIL)
            out[what] = in_turn({"then": (None, *argv, "--at", BASELINE), "now": (None, *argv)})
        return out

    step("baseline", baseline)
    step("processor", lambda: bench(*REPLAY, "processor", "--events", size["processor_events"]))
    throughput = (*LIVE, "throughput", "--events", size["live_events"])
    throughput += ("--repeat", size["live_repeat"])

    def live() -> dict[str, Any]:
        fp = ("--workload", "first-purchase", "--modes", "worker1")
        sim = bench(*throughput, "--modes", "raw1,worker1,worker2,faust1,kstreams1")
        return {"sim": sim, "first_purchase": bench(*throughput, *fp)}

    lived = step("live", live)

    def latency(guarantee: str) -> dict[str, Any]:
        """At 25, 50 and 75 % of the worker's rate on first purchases, measured above."""
        summary = lived["first_purchase"]["summary"] if lived else {}
        top = summary.get(f"worker-1-{guarantee}", {}).get("events_per_s_median") or 2000.0
        rates = ",".join(f"{top * f:.0f}" for f in (0.25, 0.5, 0.75))
        argv = [*LIVE, "latency", "--guarantee", guarantee, "--rates", rates]
        return {**bench(*argv, "--seconds", size["latency_seconds"]), "max_events_per_s": top}

    step("latency", lambda: {g: latency(g) for g in ("at_least_once", "exactly_once")})

    def recovery() -> dict[str, Any]:
        if not states.exists():
            bench(*REPLAY, "run", path["main"], "--dump-states", states)
        base = [*RECOVERY, "--states", states, "--sizes", size["recovery_sizes"]]
        return {  # shifted: states last seen an hour ago; overdue: every timer fires at once
            "memory": bench(*base, "--shift"),
            "rocksdb": bench(*base, "--store", "rocksdb", "--shift", "--warm"),
            "overdue": bench(*base),
        }

    step("recovery", recovery)
    restart = ("--events", size["restart_events"], "--repeat", size["restart_repeat"])
    step("restart", lambda: bench(*LIVE, "restart", *restart))
    step("noida", lambda: bench(*throughput, "--modes", "raw1,worker1", "--broker", "noida-db"))
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["wall_seconds"] = time.monotonic() - began
    results["machine"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    stem = CACHE / "quick-results" if args.quick else BENCH / "results"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    section, full = render(results)
    stem.with_suffix(".md").write_text(full)
    log(f"wrote {rel(stem)}.json and .md ({results['wall_seconds'] / 60:.1f} min)")
    if not args.quick and args.only is None:
        replace_readme_section(ROOT / "README.md", section)
    if results["errors"]:
        log(f"figures that failed: {results['errors']}")
        sys.exit(1)


if __name__ == "__main__":
    main()
