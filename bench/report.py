"""bench/results.json -> Markdown: the README's Performance section and bench/results.md.

.venv/bin/python bench/report.py [RESULTS.json]   # re-render without re-measuring
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

TARGET_REPLAY = 200_000
TARGET_LIVE_RATIO = 0.5
TARGET_P99_MS = 50.0
TARGET_STATE_BYTES = 1024
TARGET_RESTORE_1M_S = 30.0

BASELINE = {
    "commit": "ffe10c5",
    "replay_events_per_s": 22_683,
    "processor_cpu_us_per_event": 76,
    "worker_events_per_s": {"at_least_once": 7_655, "exactly_once": 8_014},
    "worker_cpu_us_per_event": {"at_least_once": 112, "exactly_once": 107},
    "p99_ms_half_load": {"at_least_once": 218, "exactly_once": 579},
    "restore_1m_s": {"memory": 20.3, "rocksdb": 25.5},
    "warm_ready_1m_s": 16.0,
    "rss_per_customer_bytes": 3_643,
    "timer_heap_entries": 1_081_790,
}
"""The first full `make bench` (same machine, same commands), before the optimisations
listed under "What was changed": the figures the "since" column compares against."""

# What would remove what is left of the hotspots, from reading the code behind each
# function. A remedy is listed only when one of its functions is among the measured top
# functions, so that the text follows the code.
Remedy = tuple[str, frozenset[str], str]

REMEDIES: list[Remedy] = [
    (
        "action ids",
        frozenset({"action_id"}),
        "`action_id` joins its parts with `str()` and hashes them with blake2b for every "
        "action. The id must stay deterministic, but the per-step parts (customer, fact) "
        "can be encoded once per step and fed to one hasher copied per action "
        "(`hasher.copy()`).",
    ),
    (
        "state copies",
        frozenset({"clone"}),
        "The core copies the customer's state for every event (`CustomerState.clone`, now "
        "one constructor call: 1.1 µs against 4.3 µs for `copy.copy`). The engine holds the "
        "only reference to a state, so the core could change it in place and the adapters "
        "keep the old one only where they need it (the timer index and the gauges compare "
        "before and after): the copy and the immutability it buys would go.",
    ),
    (
        "input validation",
        frozenset({"from_dict@siyu_stream/events", "decode", "parse_rfc3339"}),
        "Each input is checked twice: the generated fastjsonschema code walks the dict, then "
        "`events.from_dict` reads and converts the same fields again (`parse_rfc3339` is a "
        "regex plus `datetime.fromisoformat`, the amount a `Decimal`). A decoder straight "
        "into typed events in C (msgspec structs), keeping the JSON Schema to word the "
        "dead-letter reason when it fails, would cut this share by over half.",
    ),
    (
        "step bookkeeping",
        frozenset({"__init__", "__new__", "finish@siyu_stream/step", "set@siyu_stream/step"}),
        "Every step builds `Ctx`, `Step`, `Why` and `Action` objects and a `because` text for "
        "each rule that might fire (the `__init__` in `<string>` is dataclass-generated). "
        "Building the texts only when an action is emitted is the next small win.",
    ),
    (
        "tier lookup",
        frozenset({"tier_of"}),
        "`tier_of` multiplies every yuan threshold by 100 and walks them all on each call; "
        "thresholds in fen computed once and a `bisect` make it a single C call.",
    ),
]


def matching(remedies: list[Remedy], *profiles: dict[str, Any]) -> list[Remedy]:
    """The remedies that concern a function in the top lists of `profiles`.

    A key `name` matches a function of that exact name; `name@path` only one defined in a
    file whose path starts with `path` (so that `get` is not any `dict.get`).
    """
    rows = [
        row
        for prof in profiles
        for row in [*prof.get("top_self", []), *prof.get("top_inclusive_project", [])]
    ]

    def hit(key: str) -> bool:
        name, _, path = key.partition("@")
        return any(row["function"] == name and row["where"].startswith(path) for row in rows)

    return [rem for rem in remedies if any(hit(k) for k in rem[1])]


def _get(data: Any, *path: str | int) -> Any:
    for key in path:
        if data is None:
            return None
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _biggest(rec: dict[str, Any] | None, at_least: int = 1) -> dict[str, Any] | None:
    """The recovery run with the most customers (at least `at_least`), if any."""
    runs = [x for x in (rec or {}).get("runs", []) if x["customers"] >= at_least]
    return max(runs, key=lambda x: x["customers"]) if runs else None


def _readiness(run: dict[str, Any], empty: dict[str, Any] | None) -> str:
    """How the worker of a recovery run came up (or did not), in words."""
    parts = []
    if "error" in run:
        parts.append(f"**{run['error']}** (log `{run['log']}`)")
    else:
        text = f"start→ready {run['start_to_ready_seconds']:,.1f} s"
        if empty is not None and "start_to_ready_seconds" in empty:
            text += f" (empty changelog: {empty['start_to_ready_seconds']:,.1f} s)"
        parts.append(text)
    if run.get("heartbeat_failures"):
        parts.append(
            f"the worker was dropped from its consumer group {run['heartbeat_failures']} "
            "time(s) while restoring (heartbeat failed) and had to rejoin"
        )
    if run.get("stop_exit_code") == -9:
        grace = run.get("stop_grace_seconds", 0)
        parts.append(f"it did not stop within {grace:.0f} s of SIGTERM and was killed")
    return "; ".join(parts)


def _rate(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f} events/s"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f} %"


def _code(text: str | None) -> str:
    return f"`{text}`" if text else "–"


def _verdict(ok: bool, detail: str) -> str:
    return f"{'meets' if ok else 'misses'} ({detail})"


def rows(r: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(figure, result, target, vs target, command) per figure."""
    out: list[tuple[str, str, str, str, str]] = []
    err = r.get("errors", {})

    def missing(figure: str, name: str, target: str = "") -> None:
        why = err.get(name, "not run")
        out.append((figure, f"not measured: {why}", target, "–", "–"))

    # 1. replay
    rep = r.get("replay")
    if rep:
        runs = ", ".join(f"{x:,.0f}" for x in rep["events_per_s_runs"])
        events = rep["runs"][0]["events"]
        value = (
            f"**{rep['events_per_s_median']:,.0f} events/s** (median of {len(rep['runs'])}: "
            f"{runs}; {events:,} events, {rep['runs'][0]['customers']:,} customers; "
            f"{rep['events_per_cpu_s_median']:,.0f} per CPU-second)"
        )
        ratio = rep["events_per_s_median"] / TARGET_REPLAY
        out.append(
            (
                "1. Replay throughput, one process",
                value,
                f"≥ {TARGET_REPLAY:,} events/s",
                _verdict(ratio >= 1, f"{_pct(ratio)} of target"),
                _code(rep["command"]),
            )
        )
    else:
        missing("1. Replay throughput", "replay", f"≥ {TARGET_REPLAY:,} events/s")

    # 2. live throughput
    live = _get(r, "live", "sim")
    if live:
        s = live["summary"]
        raw_alo = _get(s, "raw-1-at_least_once", "events_per_s_median")
        raw_eos = _get(s, "raw-1-exactly_once", "events_per_s_median")
        cmd = _code(live["command"])
        reps = len(_get(s, "worker-1-at_least_once", "events_per_s_runs") or [])
        out.append(
            (
                "2. Raw aiokafka consume→produce (physical limit)",
                f"at_least_once {_rate(raw_alo)}, exactly_once {_rate(raw_eos)} "
                f"(median of {reps}; {live['events']:,} records, 4 partitions)",
                "–",
                "–",
                cmd,
            )
        )
        for g in ("at_least_once", "exactly_once"):
            w = _get(s, f"worker-1-{g}", "events_per_s_median")
            base = raw_alo
            same = raw_eos if g == "exactly_once" else raw_alo
            ratio = w / base if w and base else None
            extra = (
                f"; {_pct(w / same)} of raw exactly_once"
                if g == "exactly_once" and w and same
                else ""
            )
            cpu = _get(s, f"worker-1-{g}", "process_cpu_us_per_event_median")
            out.append(
                (
                    f"2. Live worker throughput, {g}",
                    f"**{_rate(w)}** (median of {reps}; worker {cpu:,.0f} µs CPU/event)"
                    if w and cpu
                    else _rate(w),
                    f"≥ {_pct(TARGET_LIVE_RATIO)} of raw",
                    _verdict(
                        bool(ratio and ratio >= TARGET_LIVE_RATIO),
                        f"{_pct(ratio)} of raw at_least_once{extra}",
                    ),
                    cmd,
                )
            )
    else:
        missing("2. Live throughput", "live", f"≥ {_pct(TARGET_LIVE_RATIO)} of raw")
    proc = r.get("processor")
    if proc:
        worker_cpu = _get(
            live, "summary", "worker-1-at_least_once", "process_cpu_us_per_event_median"
        )
        raw_cpu = _get(live, "summary", "raw-1-at_least_once", "process_cpu_us_per_event_median")
        tail = (
            f"; the whole worker uses {worker_cpu:,.0f} µs CPU/event, the raw pipe {raw_cpu:,.0f}"
            if worker_cpu and raw_cpu
            else ""
        )
        out.append(
            (
                "2. Live adapter alone (PartitionTask, no Kafka client)",
                f"{proc['events_per_s']:,.0f} events/s, **{proc['cpu_us_per_event']:,.0f} µs "
                f"CPU/event** ({proc['events']:,} simulator events, batches of 2,000){tail}",
                "–",
                "–",
                _code(proc["command"]),
            )
        )

    idle = r.get("idle")
    if idle:
        out.append(
            (
                "2. Idle consumers against noida-db (testbed caveat)",
                f"a plain aiokafka consumer with nothing to read uses "
                f"**{idle['plain_consumer_cores']:.2f} cores** (broker "
                f"{idle['broker_cores_for_plain_consumer']:.2f}); an idle worker "
                f"**{idle['idle_worker_cores']:.2f} cores** (broker "
                f"{idle['broker_cores_for_idle_worker']:.2f}): noida-db answers empty fetches "
                "at once instead of holding them for fetch.max.wait.ms",
                "–",
                "–",
                _code(idle["command"]),
            )
        )

    # 3. latency
    lat = r.get("latency")
    if lat:
        for g, res in lat.items():
            for level, share in zip(res["levels"], ("25 %", "50 %", "75 %"), strict=False):
                value = (
                    f"p50 {level['p50_ms']:,.0f} / p95 {level['p95_ms']:,.0f} / "
                    f"**p99 {level['p99_ms']:,.0f} ms** at {level['achieved_send_rate']:,.0f} "
                    f"events/s ({level['measured']:,} events)"
                )
                half = share == "50 %"
                target = f"p99 ≤ {TARGET_P99_MS:.0f} ms" if half else "–"
                verdict = (
                    _verdict(level["p99_ms"] <= TARGET_P99_MS, f"{level['p99_ms']:,.0f} ms")
                    if half
                    else "–"
                )
                out.append(
                    (
                        f"3. Latency event→action, {g}, {share} load",
                        value,
                        target,
                        verdict,
                        _code(res["command"]),
                    )
                )
    else:
        missing("3. Latency", "latency", f"p99 ≤ {TARGET_P99_MS:.0f} ms at half load")

    # 4. memory
    mem = r.get("memory")
    if mem:
        main = mem["main"]
        sb = main["state_bytes"]
        out.append(
            (
                "4. Serialized state per customer (`state.dumps`)",
                f"**mean {sb['mean']:,.0f} B**, p50 {sb['p50']:,.0f} B, p99 {sb['p99']:,.0f} B, "
                f"max {sb['max']:,} B ({main['customers']:,} customers after "
                f"{main['events']:,} events)",
                f"≤ {TARGET_STATE_BYTES:,} B",
                _verdict(
                    sb["mean"] <= TARGET_STATE_BYTES and sb["p99"] <= TARGET_STATE_BYTES,
                    f"mean {sb['mean'] / TARGET_STATE_BYTES:.0%}, "
                    f"p99 {sb['p99'] / TARGET_STATE_BYTES:.0%} of 1 KiB",
                ),
                _code(main["command"]),
            )
        )
        for label, run in (("100k-customer stream", main), ("1M-customer stream", mem["big"])):
            rss = run["rss_per_customer_bytes"]
            note = ""
            if label.startswith("1M"):
                note = (
                    f"; only {run['customers']:,} of the 1,000,000 customers appear in "
                    f"{run['events']:,} events: extrapolated to 1M customers ≈ "
                    f"{rss * 1_000_000 / 2**30:,.1f} GiB"
                )
            out.append(
                (
                    f"4. Resident memory per customer, replay MemoryStore, {label}",
                    f"**{rss:,.0f} B** (RSS "
                    f"+{(run['rss_after_bytes'] - run['rss_before_bytes']) / 2**20:,.0f} MiB "
                    f"for {run['customers']:,} customers{note})",
                    "–",
                    "–",
                    _code(run["command"]),
                )
            )
        for store in ("memory", "rocksdb"):
            run = _biggest(_get(r, "recovery", store))
            if run is None or "rss_per_customer_bytes" not in run:
                continue
            out.append(
                (
                    f"4. Resident memory per customer, live worker, {store} store",
                    f"**{run['rss_per_customer_bytes']:,.0f} B** (worker RSS "
                    f"{run['worker_rss_bytes'] / 2**20:,.0f} MiB right after restoring "
                    f"{run['customers']:,} customers, minus the same with none)",
                    "–",
                    "–",
                    _code(r["recovery"][store]["command"]),
                )
            )
        if not _get(r, "recovery", "rocksdb"):
            out.append(
                (
                    "4. RocksDB store",
                    "not measured: " + r.get("errors", {}).get("recovery", "not run"),
                    "–",
                    "–",
                    "–",
                )
            )
    else:
        missing("4. Memory", "memory", f"≤ {TARGET_STATE_BYTES:,} B/customer")

    # 5. recovery
    for store in ("memory", "rocksdb"):
        rec = _get(r, "recovery", store)
        if not rec:
            missing(f"5. Restore, {store} store", f"recovery-{store}")
            continue
        empty = next((x for x in rec["runs"] if x["customers"] == 0), None)
        for run in rec["runs"]:
            n = run["customers"]
            if n == 0:
                continue
            restore = run["restore_seconds"]
            is_1m = n >= 1_000_000
            value = (
                f"**{restore:,.1f} s** ({run['records_restored']:,} records read and decoded, "
                f"{len(run['restore_seconds_per_partition'])} partitions one after the other); "
                + _readiness(run, empty)
            )
            warm = run.get("warm")
            if warm:
                if run.get("broker_restarted_before_warm"):
                    value += (
                        "; broker restarted before the warm restart (a killed worker never "
                        "leaves its group and noida-db holds the next rebalance for it)"
                    )
                value += (
                    f"; warm restart on the same data: {warm['records_restored']:,} records "
                    f"read, {warm['restore_seconds']:,.1f} s to rebuild the partitions' timers "
                    "and gauges, " + _readiness(warm, None)
                )
            out.append(
                (
                    f"5. Restore {n:,} customers from the changelog, {store} store",
                    value,
                    f"≤ {TARGET_RESTORE_1M_S:.0f} s" if is_1m else "–",
                    _verdict(restore <= TARGET_RESTORE_1M_S, f"{restore:,.1f} s") if is_1m else "–",
                    _code(rec["command"]),
                )
            )
    if not _biggest(_get(r, "recovery", "memory"), 1_000_000):
        missing("5. Restore 1,000,000 customers", "recovery", f"≤ {TARGET_RESTORE_1M_S:.0f} s")

    # 6. scaling
    if live:
        s = live["summary"]
        parts = []
        for g in ("at_least_once", "exactly_once"):
            one = _get(s, f"worker-1-{g}", "events_per_s_median")
            two = _get(s, f"worker-2-{g}", "events_per_s_median")
            if one and two:
                parts.append(
                    f"{g}: 1 worker {one:,.0f}/s, 2 workers {two:,.0f}/s (×{two / one:.2f})"
                )
        runs2 = len(_get(s, "worker-2-at_least_once", "events_per_s_runs") or [])
        out.append(
            (
                "6. Scaling, 1 vs 2 workers on 2 cores",
                "; ".join(parts)
                + f" (2-worker runs: {runs2} each; broker and both workers share 2 cores)",
                "–",
                "–",
                _code(live["command"]),
            )
        )
    return out


def table(r: dict[str, Any]) -> str:
    lines = [
        "| figure | result | target | vs target | command |",
        "|---|---|---|---|---|",
    ]
    for row in rows(r):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines)


def machine_line(r: dict[str, Any]) -> str:
    m = r["machine"]
    pk = m.get("packages", {})
    return (
        f"{m['nproc']} CPUs (`nproc`), {m['cpu_model']} (/proc/cpuinfo), {m['ram_gib']} GiB RAM, "
        f"Python {m['python']}, aiokafka {pk.get('aiokafka')}, orjson {pk.get('orjson')}, "
        f"noida-db {pk.get('noida-db')} as the broker; commit {m['git_commit']}; "
        f"load average {' '.join(m['loadavg'])} at start, "
        f"{' '.join(m.get('loadavg_end', ['?']))} at the end"
    )


NOISE = (
    "The machine was shared with other work while this ran (other sessions' test suites and "
    "workers), and the broker, the worker(s) and the load generator all share its 2 cores: "
    "treat every wall-clock figure as noisy (run-to-run spread is shown where a figure is a "
    "median). CPU-time figures (µs of CPU per event) are steadier than the rates."
)


CHANGES = [
    "**Cycle collector**: thresholds raised for every command (`siyu_stream.cli.tune_gc`): "
    "over 500k replayed events it found no garbage, and re-scanning the live customer "
    "states cost ~30 % of replay time.",
    "**State copy** per event by one constructor call instead of `copy.copy` (4.3 → 1.1 µs).",
    "**RFC 3339 formatting** by integer arithmetic and a cached date instead of `strftime` "
    "(every action's `occurred_at`, every reminder's `due_at`).",
    "**State codec**: field tables built once; `Timer` and `OrderRecord` as NamedTuples "
    "(a busy customer's state loads in 10 µs, was 22; dumps in 6, was 12).",
    "**Timer index**: a timer moved later keeps its heap entry, pushed again when it comes "
    "up, so the heap holds about one entry per live timer, not one per reschedule.",
    "**Amount schema** without `oneOf`: the validator raised and caught an exception for "
    "every order whose amount is a JSON number.",
    "**Worker batches**: at_least_once flushes once per poll (outputs, then changelog, then "
    "one offset commit) instead of three round trips per partition one after the other; "
    "exactly_once runs the per-partition transactions concurrently.",
    "**Worker bookkeeping**: population gauges move only when a customer's profile changes; "
    "murmur2 of keys cached for the ownership check and the producers.",
    "**Timeline as bytes**: the API's in-memory timeline (20 entries for up to 20,000 "
    "customers per partition) kept event and action objects: hundreds of thousands of "
    "long-lived objects that every pass of the cycle collector re-scanned, which made "
    "those passes the worker's longest pauses (p99 at half load 543 ms in a run before, "
    "46–64 ms after, at_least_once). It now keeps the records' JSON bytes, which the "
    "collector never looks at, and renders them when the API asks.",
    "**Restore**: indexing a restored store yields to the event loop every 10,000 states and "
    "stops on SIGTERM (a 1M-customer restore missed its heartbeats, was dropped from the "
    "group, and could not be stopped within 20 s).",
]


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def _since(r: dict[str, Any]) -> str:
    """Before (BASELINE) and now, for the figures the changes moved."""
    live = _get(r, "live", "sim", "summary") or {}
    lat = r.get("latency") or {}
    b = BASELINE

    def p99(g: str) -> float | None:
        levels = _get(lat, g, "levels")
        return levels[1]["p99_ms"] if levels and len(levels) > 1 else None

    def restore(store: str) -> float | None:
        run = _biggest(_get(r, "recovery", store), 1_000_000)
        return run.get("restore_seconds") if run else None

    rock = _biggest(_get(r, "recovery", "rocksdb"), 1_000_000)
    warm = _get(rock, "warm", "start_to_ready_seconds") if rock else None
    rows_ = [
        (
            "replay, events/s",
            b["replay_events_per_s"],
            _get(r, "replay", "events_per_s_median"),
            True,
        ),
        (
            "adapter alone (PartitionTask), µs CPU/event",
            b["processor_cpu_us_per_event"],
            _get(r, "processor", "cpu_us_per_event"),
            False,
        ),
    ]
    for g in ("at_least_once", "exactly_once"):
        now = _get(live, f"worker-1-{g}", "events_per_s_median")
        rows_.append((f"live worker {g}, events/s", b["worker_events_per_s"][g], now, True))
        cpu = _get(live, f"worker-1-{g}", "process_cpu_us_per_event_median")
        rows_.append(
            (f"live worker {g}, µs CPU/event", b["worker_cpu_us_per_event"][g], cpu, False)
        )
    for g in ("at_least_once", "exactly_once"):
        rows_.append((f"p99 at half load, {g}, ms", b["p99_ms_half_load"][g], p99(g), False))
    for store in ("memory", "rocksdb"):
        rows_.append(
            (f"restore 1M customers, {store}, s", b["restore_1m_s"][store], restore(store), False)
        )
    rows_.append(("warm RocksDB restart of 1M, start→ready s", b["warm_ready_1m_s"], warm, False))
    rows_.append(
        (
            "replay RSS per customer, B",
            b["rss_per_customer_bytes"],
            _get(r, "memory", "main", "rss_per_customer_bytes"),
            False,
        )
    )
    lines = [
        f"| figure | before (commit {b['commit']}) | now | better by |",
        "|---|---|---|---|",
    ]
    for name, before, now, higher in rows_:
        if now is None:
            continue
        factor = now / before if higher else before / now
        lines.append(f"| {name} | {_num(before)} | {_num(now)} | ×{factor:.2f} |")
    return "\n".join(lines)


def _changes(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            "## What was changed, and what it bought",
            "",
            f"The first full `make bench` ran at commit {BASELINE['commit']}; the profiles "
            "below pointed at these, all done since, with the rule output byte-identical "
            "(golden files):",
            "",
            *[f"- {c}" for c in CHANGES],
            "",
            _since(r),
            "",
        ]
    )


def render_markdown(r: dict[str, Any]) -> tuple[str, str]:
    """(README section, full results.md)."""
    minutes = r.get("wall_seconds", 0) / 60
    when = r.get("finished_at", "?")
    section = "\n".join(
        [
            "## Performance",
            "",
            f"Measured by `make bench` ({minutes:.0f} min, {when}) on {machine_line(r)}. "
            "It runs the scripts in [`bench/`](bench) (not part of the test suite), writes "
            "[`bench/results.json`](bench/results.json) and "
            "[`bench/results.md`](bench/results.md) (every run, the profile and its hotspots) "
            "and regenerates this section. Inputs come from "
            f"{_inputs(r)}.",
            "",
            NOISE,
            "",
            table(r),
            "",
            "Since the first run of the benchmarks (details and the changes in "
            "[`bench/results.md`](bench/results.md#what-was-changed-and-what-it-bought)):",
            "",
            _since(r),
            "",
            "How each figure is taken: see [`bench/results.md`](bench/results.md#method).",
            "",
        ]
    )
    full = "\n".join(
        [
            "# siyu-stream benchmark results",
            "",
            f"Generated by `make bench` (`.venv/bin/python bench/run.py`) in {minutes:.1f} min, "
            f"finished {when}.",
            "",
            f"**Machine:** {machine_line(r)}.",
            "",
            NOISE,
            "",
            "## Figures",
            "",
            table(r),
            "",
            _changes(r),
            _not_measured(r),
            _hotspots(r),
            _live_hotspots(r),
            _worker_profile(r),
            _method(r),
            _runs(r),
        ]
    )
    return section, full


def _inputs(r: dict[str, Any]) -> str:
    inputs = r.get("inputs", {})
    return ", ".join(f"`{i['command']}`" for i in inputs.values()) or "the simulator"


def _not_measured(r: dict[str, Any]) -> str:
    lines = ["## Caveats, and what was not measured or not as asked", ""]
    idle = r.get("idle")
    if idle:
        plain, worker = idle["plain_consumer_cores"], idle["idle_worker_cores"]
        head = (
            "- **The local broker makes idle consumers spin.** noida-db 0.2.3 answers a fetch "
            "with no data at once instead of holding it for `fetch.max.wait.ms`, so an "
            f"aiokafka consumer with nothing to read loops on fetch requests ({plain:.2f} "
            "cores for a plain consumer). "
        )
        if worker < 0.3:
            tail = (
                f"The worker avoids it ({worker:.2f} cores idle: `siyu_stream/polling.py` "
                "pauses idle partitions between short fetch windows, so a record that arrives "
                "during a pause waits up to 0.1 s longer). The latency load generator's output "
                "consumer does spin between batches and takes CPU from the worker on these 2 "
                "cores. Apache Kafka holds such fetches."
            )
        else:
            tail = (
                f"An idle worker uses {worker:.2f} cores. On 2 cores that steals CPU from every "
                "live figure. Apache Kafka holds such fetches; expect better live figures there."
            )
        lines.append(head + tail)
    if not _get(r, "recovery", "rocksdb"):
        lines.append("- **RocksDB**: not measured in this run.")
    big = _get(r, "memory", "big")
    main = _get(r, "memory", "main")
    if big and main:
        main_events_per_customer = main["events"] / main["customers"]
        main_mean = main["state_bytes"]["mean"]
        main_rss = main["rss_per_customer_bytes"]
        lines.append(
            f"- **1M customers in memory**: `simulate --customers 1000000 --events "
            f"{big['events']:,}` reaches only {big['customers']:,} distinct customers "
            "(customers arrive over 60 story days, and the number seen grows more slowly than "
            "the events): reaching all 1M would take several times more events, and minutes "
            "of simulation and replay that the 20-minute budget does not have. Resident "
            "memory per customer is measured at that "
            "population and extrapolated linearly to 1M; these customers have about "
            f"{big['events'] / big['customers']:.0f} events each against "
            f"{main_events_per_customer:.0f} in the 100k stream, so their states are smaller "
            f"(mean {big['state_bytes']['mean']:,.0f} B serialized against {main_mean:,.0f} B). "
            f"At the 100k stream's {main_rss:,.0f} B per customer, 1M customers would need "
            f"≈ {main_rss * 1e6 / 2**30:,.1f} GiB."
        )
    rec = _get(r, "recovery", "memory")
    if rec:
        lines.append(
            f"- **Recovery input**: the changelog is written by the benchmark, not by a worker: "
            f"the {rec['distinct_source_states']:,} real customer states left by the "
            f"1M-event replay (`state.dumps`, saved in `{rec['source_states']}`), each on "
            "the partition the worker would use, repeated under new customer ids to reach 1M "
            "records, so the size distribution is that of the 100k-customer stream. For the "
            "memory and RocksDB figures every time in the states is moved so that the latest "
            "is an hour ago (`--shift`): as replayed, their timers are months overdue on the "
            "wall clock (next caveat)."
        )
    rep = r.get("replay")
    if rep:
        run = rep["runs"][0]
        lines.append(
            f"- **Replay exercises no timer.** {run['events']:,} events at `--rate 1000` span "
            f"about {run['events'] / 1000 / 60:.0f} minutes of event time, so no timer comes "
            f"due (timers fired: {run['counts']['timers_fired']:,}); figure 1 measures event "
            "handling only. The timer index holds "
            f"{run['timer_heap_entries']:,} heap entries for {run['customers']:,} customers "
            "(a timer moved later keeps its entry until it comes up; before that change, "
            f"commit {BASELINE['commit']}, it held {BASELINE['timer_heap_entries']:,})."
        )
    overdue = _biggest(_get(r, "recovery", "overdue"))
    if overdue is not None and "start_to_ready_seconds" not in overdue:
        overdue = None
    empty = next(
        (x for x in (_get(r, "recovery", "overdue") or {}).get("runs", []) if x["customers"] == 0),
        None,
    )
    late = (
        overdue["start_to_ready_seconds"]
        - overdue["restore_seconds"]
        - (empty.get("start_to_ready_seconds", 0) if empty else 0)
        if overdue
        else 0
    )
    if overdue and late > 1.0:
        lines.append(
            "- **Ready after restore is not restored.** Restoring the states as replayed "
            "(January 2026 event times, so every timer is overdue on the wall clock) takes "
            f"{overdue['restore_seconds']:,.1f} s for {overdue['customers']:,} customers, but "
            f"the worker answers `/readyz` only {overdue['start_to_ready_seconds']:,.1f} s after "
            "start: its first timer sweep fires every overdue timer in one batch on the event "
            f"loop (`{r['recovery']['overdue']['command']}`). An earlier `make bench` "
            "(commit 02c7183) ran it with 1M customers: 73 s to ready against 20 s of restore. A "
            "worker that comes back after a long outage does the same: worth sweeping in "
            "slices."
        )
    lines.append(
        "- **Latency load generator** (producer and output consumer) runs in the bench "
        "process on the same 2 cores as the broker and the worker. Its output consumer "
        "fetches in 5 ms windows with 5 ms pauses: always fetching, it spun on noida-db's "
        "immediate answers and took 0.7 of a core from the worker and the broker; paced, "
        f"it took {_generator_cores(r)}. A measured latency can only grow by the pacing "
        "(at most 5 ms), never shrink."
    )
    for name, why in r.get("errors", {}).items():
        lines.append(f"- **{name}** failed in this run: {why}")
    return "\n".join(lines) + "\n"


def _generator_cores(r: dict[str, Any]) -> str:
    shares = [
        level["generator_cores"]
        for g in ("at_least_once", "exactly_once")
        for level in _get(r, "latency", g, "levels") or []
        if "generator_cores" in level
    ]
    if not shares:
        return "an unmeasured share"
    return f"{min(shares):.2f}–{max(shares):.2f} cores in this run"


def _hotspots(r: dict[str, Any]) -> str:
    prof = r.get("profile")
    if not prof:
        return (
            "## Replay hotspots\n\nnot measured: "
            + r.get("errors", {}).get("profile", "not run")
            + "\n"
        )
    lines = [
        "## Replay hotspots",
        "",
        f"{prof['profiler']} over `{prof['input']}` ({prof['events']:,} events, "
        f"{prof['seconds']:.1f} s under the profiler, which roughly halves the speed). "
        f"Command: `{prof['command']}`. Full call tree: `{prof['text_report']}` and "
        f"`{prof['html_report']}` (not committed).",
        "",
        "Top 10 functions by self time:",
        "",
        "| # | function | where | self | inclusive |",
        "|---|---|---|---|---|",
    ]
    for i, row in enumerate(prof["top_self"], start=1):
        lines.append(
            f"| {i} | `{row['function']}` | {row['where']} | {row['percent']:.1f} % | "
            f"{row['inclusive_percent']:.1f} % |"
        )
    lines += [
        "",
        "Where the time goes, by project function (inclusive):",
        "",
        "| function | where | inclusive | self |",
        "|---|---|---|---|",
    ]
    for row in prof["top_inclusive_project"]:
        lines.append(
            f"| `{row['function']}` | {row['where']} | {row['inclusive_percent']:.1f} % | "
            f"{row['percent']:.1f} % |"
        )
    lines += [
        "",
        "What is left, and what would remove it:",
        "",
    ]
    lines += [f"- **{name}**: {text}" for name, _, text in matching(REMEDIES, prof)]
    rep = r.get("replay")
    if rep:
        us = 1e6 / rep["events_per_cpu_s_median"]
        lines += [
            "",
            f"At {us:.0f} µs of CPU per event, the 200k events/s target (5 µs per event) is "
            "out of reach for tuning CPython code: no function above takes more than "
            f"{max(row['percent'] for row in prof['top_self']):.0f} % of the time, and the "
            "event costs about 140 Python-level calls (decode, validate, copy, rules, ids, "
            "JSON out). Compiling the core with mypyc (it is mypy-strict already) was tried: "
            "byte-identical output, 1.2× faster, not worth a C build in every install. The "
            "target needs decoding and state handling in compiled code, or replay sharded by "
            "customer over processes (the core is per customer, except referral credits).",
        ]
    return "\n".join(lines) + "\n"


ALWAYS = frozenset({"*"})

LIVE_REMEDIES: list[Remedy] = [
    (
        "exactly_once commit latency",
        ALWAYS,
        "A read_committed consumer sees a batch's records only when its transaction ends: "
        "AddPartitionsToTxn, the produce requests, AddOffsetsToTxn, TxnOffsetCommit and "
        "EndTxn, one after the other, for every partition's batch (the partitions' "
        "transactions run concurrently). On noida-db, a Python broker sharing the 2 cores, "
        "that is tens of milliseconds per batch, and the batches grow with the load: the "
        "p99 at half load stays above the at_least_once one. One transactional producer per "
        "worker instead of per partition (KIP-447 fencing by consumer group metadata) would "
        "halve the requests, but aiokafka 0.14 does not implement it.",
    ),
    (
        "state decoded per event",
        frozenset({"loads@siyu_stream/state", "get@siyu_stream/processor"}),
        "`PartitionTask.get` decodes the customer's bytes (`state.loads`, ~10 µs for a busy "
        "customer) for every event of a customer not already changed in the batch. A bounded "
        "cache of decoded states in front of the store removes it for active customers.",
    ),
    (
        "state serialization",
        frozenset({"to_dict", "dumps", "changelog"}),
        "Each changed customer is serialized once per batch (`state.dumps`, ~6 µs for a busy "
        "customer); raw bytes instead of base64 for the digests, in a binary format, would "
        "halve it, at the price of a state format version.",
    ),
    (
        "Kafka client CPU",
        ALWAYS,
        "aiokafka is pure Python: every record produced or consumed costs client CPU (the raw "
        "pipe's figure is for one record in and one out; `send()` alone creates futures and "
        "schedules callbacks per record), and the worker writes about two records per input "
        "(actions plus a changelog record per changed customer). Beyond that it needs a "
        "client in compiled code (confluent-kafka / librdkafka).",
    ),
]


def _live_hotspots(r: dict[str, Any]) -> str:
    proc = r.get("processor")
    if not proc or "top_self" not in proc:
        return ""
    lines = [
        "## Live worker: where the CPU goes",
        "",
        f"The worker's per-partition code run without Kafka (`{proc['command']}`): "
        f"{proc['cpu_us_per_event']:,.0f} µs CPU per event. pyinstrument, top 10 by self time "
        f"(full tree: `{proc['text_report']}`, not committed):",
        "",
        "| # | function | where | self | inclusive |",
        "|---|---|---|---|---|",
    ]
    for i, row in enumerate(proc["top_self"], start=1):
        lines.append(
            f"| {i} | `{row['function']}` | {row['where']} | {row['percent']:.1f} % | "
            f"{row['inclusive_percent']:.1f} % |"
        )
    lines += ["", "Project functions by inclusive time:", ""]
    lines += [
        f"- `{row['function']}` ({row['where']}): {row['inclusive_percent']:.1f} %"
        for row in proc["top_inclusive_project"][:10]
    ]
    live = _get(r, "live", "sim", "summary")
    runs = _get(r, "live", "sim", "runs") or []
    if live:
        w = _get(live, "worker-1-at_least_once", "process_cpu_us_per_event_median")
        raw = _get(live, "raw-1-at_least_once", "process_cpu_us_per_event_median")
        b = _get(live, "worker-1-at_least_once", "broker_cpu_us_per_event_median")
        busy = [
            x["process_cpu_seconds"] / (x["seconds"] + x["startup_seconds"])
            for x in runs
            if x["kind"] == "worker" and x["workers"] == 1
        ]
        if w and raw and b and busy:
            lines += [
                "",
                f"Budget per input event (at_least_once, medians): the worker process uses "
                f"{w:,.0f} µs CPU, of which about {proc['cpu_us_per_event']:,.0f} µs is the "
                "adapter and rule core above and the rest the Kafka client and the batch loop; "
                f"the raw pipe uses {raw:,.0f} µs for one record in and one out; the broker "
                f"uses {b:,.0f} µs per event while the worker runs. The single-threaded worker "
                f"process was on CPU {100 * min(busy):.0f}–{100 * max(busy):.0f} % of the wall "
                "time of its runs: it is CPU-bound, and the second core goes to the broker.",
            ]
    lines += ["", "What is left, and what would remove it:", ""]
    chosen = [rem for rem in LIVE_REMEDIES if rem[1] == ALWAYS] + matching(
        [rem for rem in LIVE_REMEDIES if rem[1] != ALWAYS], proc
    )
    chosen.sort(key=LIVE_REMEDIES.index)
    lines += [f"- **{name}**: {text}" for name, _, text in chosen]
    return "\n".join(lines) + "\n"


def _worker_profile(r: dict[str, Any]) -> str:
    prof = r.get("worker_profile")
    if not prof:
        return ""
    lines = [
        "## Live worker under cProfile",
        "",
        f"One worker process (`{prof['guarantee']}`) over {prof['events']:,} pre-produced "
        f"simulator events on the local broker, under {prof['profiler']}; "
        f"{prof['profiled_seconds']:.1f} s profiled, including the time it waits in `epoll` "
        f"(`.venv/bin/python bench/live_bench.py profile --events {prof['events']}`; the "
        f"profile is `{prof['profile_file']}`, not committed). Self time by area:",
        "",
        "| area | self time |",
        "|---|---|",
        *[
            f"| {area} | {pct:.1f} % |"
            for area, pct in sorted(prof["by_area_percent"].items(), key=lambda kv: -kv[1])
        ],
        "",
        "Top functions by self time:",
        "",
        "| function | where | calls | self |",
        "|---|---|---|---|",
        *[
            f"| `{row['function']}` | {row['where']} | {row['calls']:,} | {row['percent']:.1f} % |"
            for row in prof["top_self"]
        ],
    ]
    return "\n".join(lines) + "\n"


def _method(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            "## Method",
            "",
            "- **Replay**: `siyu_stream.replay.replay` over the simulator file, actions to a "
            "file in `bench/.cache/`, dead letters to another; each run in a fresh interpreter; "
            "events/s = all lines (ok, duplicate, rejected) / wall time of the `replay()` call.",
            "- **Live throughput**: one local broker (noida-db); the simulator's records "
            "(valid ones re-stamped to the send time like `siyu_stream.traffic.restamp`) are "
            "produced once into the input topics; then each consumer runs in a new consumer "
            "group over the same input, as a child process: `python -m siyu_stream.cli "
            "worker` (4 partitions, `SIYU_API_AUTH=false`) or `bench/raw_pipe.py` (raw "
            "aiokafka: consumer group, 2,000 records per poll like the worker, one output "
            "record per input, commit per batch; exactly_once as one transaction per poll). "
            "Time runs from ready (`/readyz` 200, or the raw pipe's assignment) until the "
            "group's committed offsets reach the end offsets of the input (and command) "
            "topics, polled every 50 ms. Modes are interleaved within each repetition.",
            "- **Latency**: one worker; a load generator in the bench process sends first "
            "paid purchases of new customers (each yields at least a layer change and an "
            "`invite_join` reminder) at a fixed rate, and a read_committed consumer on every "
            "output topic takes the first action per `cause_event_id`; latency = arrival − "
            "send time on one monotonic clock; the first 2 s of each level are warm-up and "
            "not counted. Levels are 25/50/75 % of the worker's measured throughput on this "
            "same first-purchase workload (`live.first_purchase` in results.json), which is "
            "heavier per event than the simulator mix (every event creates a customer, two "
            "actions and a changelog record).",
            "- **Memory**: after a replay, `state.dumps` of every customer in the MemoryStore "
            "(bytes per customer); RSS (VmRSS) before and after the `replay()` call, divided by "
            "the customers in the store (includes the timer heap and allocator overhead).",
            "- **Recovery**: N changelog records written straight to a new app's changelog; "
            "one worker started (at_least_once), with the memory or the RocksDB store "
            "(`SIYU_STORE`); for RocksDB, then a second worker on the same data directory "
            "(warm restart). Restore time = for each partition, from its "
            "changelog consumer's assignment (aiokafka's `Updating subscribed topics` log "
            "line) to the worker's `partition N assigned: K changelog records restored` line "
            "(reading the changelog and decoding every state to rebuild timers and gauges), "
            "summed over the partitions, which are restored one after the other; K is checked "
            "against N. Start→ready (process start to `/readyz` 200) is shown too.",
            "- **Scaling**: the live-throughput measurement with two worker processes in one "
            "group, timed from the first worker ready (it includes the rebalance when the "
            "second joins).",
            "",
        ]
    )


def _runs(r: dict[str, Any]) -> str:
    lines = ["## Every run", ""]
    rep = r.get("replay")
    if rep:
        lines.append("Replay:")
        lines.append("")
        for run in rep["runs"]:
            lines.append(
                f"- {run['events']:,} events in {run['seconds']:.1f} s = "
                f"{run['events_per_s']:,.0f}/s (CPU {run['cpu_seconds']:.1f} s); "
                f"{run['customers']:,} customers; timer heap {run['timer_heap_entries']:,} "
                f"entries; actions {run['counts']['actions']}"
            )
        lines.append("")
    for name in ("sim", "first_purchase"):
        live = _get(r, "live", name)
        if not live:
            continue
        lines.append(f"Live, {name} workload ({live['events']:,} records: {live['per_topic']}):")
        lines.append("")
        lines.append(
            "| consumer | guarantee | workers | ready after | seconds | events/s "
            "| consumer CPU s | broker CPU s |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
        for run in live["runs"]:
            lines.append(
                f"| {run['kind']} | {run['guarantee']} | {run['workers']} | "
                f"{run['startup_seconds']:.1f} s | {run['seconds']:.1f} | "
                f"{run['events_per_s']:,.0f} | {run['process_cpu_seconds']:.1f} | "
                f"{run['broker_cpu_seconds']:.1f} |"
            )
        lines.append("")
    lat = r.get("latency")
    if lat:
        lines.append("Latency levels:")
        lines.append("")
        lines.append(
            "| guarantee | target rate | sent/s | measured | p50 ms | p95 ms | p99 ms | max ms "
            "| unmatched |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for g, res in lat.items():
            for lv in res["levels"]:
                lines.append(
                    f"| {g} | {lv['target_rate']:,.0f} | {lv['achieved_send_rate']:,.0f} | "
                    f"{lv['measured']:,} | {lv['p50_ms']:,.1f} | {lv['p95_ms']:,.1f} | "
                    f"{lv['p99_ms']:,.1f} | {lv['max_ms']:,.1f} | {lv['unmatched_after_30s']} |"
                )
        lines.append("")
    for name, rec in (r.get("recovery") or {}).items():
        lines.append(f"Recovery, {name} (`{rec['command']}`):")
        lines.append("")
        for run in rec["runs"]:
            runs = [("cold", run)] + ([("warm", run["warm"])] if "warm" in run else [])
            for label, x in runs:
                if "error" in x:
                    lines.append(
                        f"- {run['customers']:,} customers, {label}: {x['error']}; "
                        f"{x['records_restored']:,} records restored in "
                        f"{x['restore_seconds']:.2f} s; log `{x['log']}`"
                    )
                    continue
                lines.append(
                    f"- {run['customers']:,} customers, {label}: {x['records_restored']:,} "
                    f"records restored in {x['restore_seconds']:.2f} s, start→ready "
                    f"{x['start_to_ready_seconds']:.2f} s, worker CPU "
                    f"{x['worker_cpu_seconds']:.1f} s, "
                    f"RSS {x['worker_rss_bytes'] / 2**20:,.0f} MiB, "
                    f"heartbeat failures {x.get('heartbeat_failures', 0)}, stopped in "
                    f"{x.get('stop_seconds', 0):.1f} s"
                )
        lines.append("")
    return "\n".join(lines)


def replace_readme_section(readme: Path, section: str) -> None:
    """Replace `## Performance` (up to the next `## ` heading) or append it at the end."""
    text = readme.read_text()
    match = re.search(r"^## Performance\n.*?(?=^## |\Z)", text, flags=re.M | re.S)
    body = section.rstrip("\n") + "\n"
    if match:
        rest = text[match.end() :]
        text = text[: match.start()] + body + ("\n" + rest if rest else "")
    else:
        text = text.rstrip("\n") + "\n\n" + body
    readme.write_text(text)


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results.json"
    results = json.loads(path.read_text())
    section, full = render_markdown(results)
    path.with_suffix(".md").write_text(full)
    print(section)
