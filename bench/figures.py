"""The results table: one row per figure, with its target, verdict and command."""

from __future__ import annotations

from typing import Any

TARGET_REPLAY = 200_000
TARGET_LIVE_RATIO = 0.5
TARGET_P99_MS = 50.0
TARGET_STATE_BYTES = 1024
TARGET_RESTORE_1M_S = 30.0


def lookup(data: Any, *path: str | int) -> Any:
    for key in path:
        if data is None:
            return None
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def largest_run(rec: dict[str, Any] | None, at_least: int = 1) -> dict[str, Any] | None:
    """The recovery run with the most customers (at least `at_least`), if any."""
    runs = [x for x in (rec or {}).get("runs", []) if x["customers"] >= at_least]
    return max(runs, key=lambda x: x["customers"]) if runs else None


def readiness(run: dict[str, Any], empty: dict[str, Any] | None) -> str:
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


def fmt_rate(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f} events/s"


def fmt_pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f} %"


def code_span(text: str | None) -> str:
    return f"`{text}`" if text else "–"


def verdict_text(ok: bool, detail: str) -> str:
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
                verdict_text(ratio >= 1, f"{fmt_pct(ratio)} of target"),
                code_span(rep["command"]),
            )
        )
    else:
        missing("1. Replay throughput", "replay", f"≥ {TARGET_REPLAY:,} events/s")

    # 2. live throughput
    live = lookup(r, "live", "sim")
    if live:
        s = live["summary"]
        raw_alo = lookup(s, "raw-1-at_least_once", "events_per_s_median")
        raw_eos = lookup(s, "raw-1-exactly_once", "events_per_s_median")
        cmd = code_span(live["command"])
        reps = len(lookup(s, "worker-1-at_least_once", "events_per_s_runs") or [])
        out.append(
            (
                "2. Raw aiokafka consume→produce (physical limit)",
                f"at_least_once {fmt_rate(raw_alo)}, exactly_once {fmt_rate(raw_eos)} "
                f"(median of {reps}; {live['events']:,} records, 4 partitions)",
                "–",
                "–",
                cmd,
            )
        )
        for g in ("at_least_once", "exactly_once"):
            w = lookup(s, f"worker-1-{g}", "events_per_s_median")
            base = raw_alo
            same = raw_eos if g == "exactly_once" else raw_alo
            ratio = w / base if w and base else None
            extra = (
                f"; {fmt_pct(w / same)} of raw exactly_once"
                if g == "exactly_once" and w and same
                else ""
            )
            cpu = lookup(s, f"worker-1-{g}", "process_cpu_us_per_event_median")
            out.append(
                (
                    f"2. Live worker throughput, {g}",
                    f"**{fmt_rate(w)}** (median of {reps}; worker {cpu:,.0f} µs CPU/event)"
                    if w and cpu
                    else fmt_rate(w),
                    f"≥ {fmt_pct(TARGET_LIVE_RATIO)} of raw",
                    verdict_text(
                        bool(ratio and ratio >= TARGET_LIVE_RATIO),
                        f"{fmt_pct(ratio)} of raw at_least_once{extra}",
                    ),
                    cmd,
                )
            )
    else:
        missing("2. Live throughput", "live", f"≥ {fmt_pct(TARGET_LIVE_RATIO)} of raw")
    proc = r.get("processor")
    if proc:
        worker_cpu = lookup(
            live, "summary", "worker-1-at_least_once", "process_cpu_us_per_event_median"
        )
        raw_cpu = lookup(live, "summary", "raw-1-at_least_once", "process_cpu_us_per_event_median")
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
                code_span(proc["command"]),
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
                code_span(idle["command"]),
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
                    verdict_text(level["p99_ms"] <= TARGET_P99_MS, f"{level['p99_ms']:,.0f} ms")
                    if half
                    else "–"
                )
                out.append(
                    (
                        f"3. Latency event→action, {g}, {share} load",
                        value,
                        target,
                        verdict,
                        code_span(res["command"]),
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
                verdict_text(
                    sb["mean"] <= TARGET_STATE_BYTES and sb["p99"] <= TARGET_STATE_BYTES,
                    f"mean {sb['mean'] / TARGET_STATE_BYTES:.0%}, "
                    f"p99 {sb['p99'] / TARGET_STATE_BYTES:.0%} of 1 KiB",
                ),
                code_span(main["command"]),
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
                    code_span(run["command"]),
                )
            )
        for store in ("memory", "rocksdb"):
            run = largest_run(lookup(r, "recovery", store))
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
                    code_span(r["recovery"][store]["command"]),
                )
            )
        if not lookup(r, "recovery", "rocksdb"):
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
        rec = lookup(r, "recovery", store)
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
                + readiness(run, empty)
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
                    "and gauges, " + readiness(warm, None)
                )
            out.append(
                (
                    f"5. Restore {n:,} customers from the changelog, {store} store",
                    value,
                    f"≤ {TARGET_RESTORE_1M_S:.0f} s" if is_1m else "–",
                    verdict_text(restore <= TARGET_RESTORE_1M_S, f"{restore:,.1f} s")
                    if is_1m
                    else "–",
                    code_span(rec["command"]),
                )
            )
    if not largest_run(lookup(r, "recovery", "memory"), 1_000_000):
        missing("5. Restore 1,000,000 customers", "recovery", f"≤ {TARGET_RESTORE_1M_S:.0f} s")

    # 6. scaling
    if live:
        s = live["summary"]
        parts = []
        for g in ("at_least_once", "exactly_once"):
            one = lookup(s, f"worker-1-{g}", "events_per_s_median")
            two = lookup(s, f"worker-2-{g}", "events_per_s_median")
            if one and two:
                parts.append(
                    f"{g}: 1 worker {one:,.0f}/s, 2 workers {two:,.0f}/s (×{two / one:.2f})"
                )
        runs2 = len(lookup(s, "worker-2-at_least_once", "events_per_s_runs") or [])
        out.append(
            (
                "6. Scaling, 1 vs 2 workers on 2 cores",
                "; ".join(parts)
                + f" (2-worker runs: {runs2} each; broker and both workers share 2 cores)",
                "–",
                "–",
                code_span(live["command"]),
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
