"""bench/results.json -> bench/results.md (a table per figure group, each figure with its
command and machine) and the README's `## Performance` section (a few of those rows).

    .venv/bin/python bench/report.py               # re-render results.md and the README's
                                                   # section from bench/results.json
    .venv/bin/python bench/report.py RESULTS.json  # RESULTS.md only

Ratios are of figures measured in the same run (replay to a raw JSON pipe over the same file,
worker to raw aiokafka on the same broker, two workers to one, RocksDB to memory, warm to
cold); nothing is compared to fixed numbers.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

Row = tuple[str, str, str | None]
"""figure, value, command; no command: a line of the figure above (a profile's functions)."""


def get(data: Any, *path: str) -> Any:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def n(x: float) -> str:
    return f"{x:,.0f}"


def mib(b: float) -> str:
    return f"{b / 2**20:,.0f} MiB"


def ratio(a: float | None, b: float | None) -> str:
    return f"×{a / b:.2f}" if a and b else "–"


def span(seconds: float) -> str:
    return f"{seconds / 86400:,.0f} days" if seconds >= 2 * 86400 else f"{seconds / 60:,.0f} min"


STREAMS = {"main": "simulator stream", "history": "purchase history (`simulate --days`)"}


def replay_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for name, rep in (get(r, "replay") or {}).items():
        if not isinstance(rep, dict):  # results written before there were two streams
            continue
        first = rep["runs"][0]
        stream = f"{STREAMS.get(name, name)}, {first['events']:,} events over "
        stream += span(first["event_time_span_s"])
        if first["until_days_after_end"]:
            stream += f", timers fired to {first['until_days_after_end']:.0f} days past its end"
        value = f"**{n(rep['events_per_s_median'])} events/s** ("
        value += ", ".join(n(x) for x in rep["events_per_s_runs"]) + "), "
        value += f"**×{rep['pipe_ratio_median']:.3f} of a raw JSON pipe** over the same file; "
        value += f"{rep['cpu_us_per_event_median']:.0f} µs CPU/event; "
        value += f"{first['actions_per_event']:.2f} actions, {first['timers_per_event']:.2f} "
        value += "timers fired per event"
        rows.append((f"{stream}: throughput, median", value, rep["command"]))
        for i, run in enumerate(rep["runs"], start=1):
            counts, pipe = run["counts"], run["pipe"]
            actions = ", ".join(f"{k} {v:,}" for k, v in counts["actions"].items())
            value = (
                f"{run['events']:,} events in {run['seconds']:.1f} s, CPU {run['cpu_seconds']:.1f} "
                f"s; raw JSON pipe {n(pipe['events_per_s'])} events/s, "
                f"{pipe['cpu_us_per_event']:.1f} µs CPU/event; {run['customers']:,} customers; "
                f"timer heap {run['timer_heap_entries']:,} entries, {counts['timers_fired']:,} "
                f"fired; actions {actions}"
            )
            rows.append((f"{STREAMS.get(name, name)}, run {i}", value, run["command"]))
    return rows


def jobs_rows(r: dict[str, Any]) -> list[Row]:
    """`replay --jobs 2` against `--jobs 1` on the history (same partitions, same bytes)."""
    jobs = get(r, "replay_jobs")
    if not jobs:
        return []
    rows: list[Row] = []
    for name in ("jobs_1", "jobs_2"):
        rep = jobs[name]
        value = f"**{n(rep['events_per_s_median'])} events/s** ("
        value += ", ".join(f"{x['seconds']:.1f} s" for x in rep["runs"]) + "); CPU "
        value += ", ".join(f"{x['cpu_seconds']:.1f} s" for x in rep["runs"])
        rows.append((f"history, 4 partitions, `--{name.replace('_', ' ')}`", value, rep["command"]))
    one, two = jobs["jobs_1"], jobs["jobs_2"]
    value = f"**×{jobs['speedup']:.2f}** ({n(two['events_per_s_median'])} ÷ "
    value += f"{n(one['events_per_s_median'])} events/s, medians); CPU in all ×"
    cpu_one, cpu_two = (statistics.median(x["cpu_seconds"] for x in j["runs"]) for j in (one, two))
    value += f"{cpu_two / cpu_one:.2f}"
    rows.append(("`--jobs 2` speedup over `--jobs 1`", value, two["command"]))
    return rows


def memory_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for label in ("main", "big"):
        run = get(r, "memory", label)
        if not run:
            continue
        sb, cmd = run["state_bytes"], run["command"]
        value = f"**mean {n(sb['mean'])} B**, p50 {n(sb['p50'])}, p99 {n(sb['p99'])}, max "
        value += f"{n(sb['max'])} ({run['customers']:,} customers, {run['events']:,} events)"
        rows.append((f"serialized state per customer (`state.dumps`), {label} stream", value, cmd))
        value = f"**{n(run['rss_per_customer_bytes'])} B** (RSS "
        value += f"+{mib(run['rss_after_bytes'] - run['rss_before_bytes'])})"
        rows.append((f"RSS per customer, replay MemoryStore, {label} stream", value, cmd))
    for store in ("memory", "rocksdb"):
        runs = [x for x in get(r, "recovery", store, "runs") or [] if "rss_per_customer_bytes" in x]
        if runs:
            run = max(runs, key=lambda x: x["customers"])
            value = f"**{n(run['rss_per_customer_bytes'])} B** (worker RSS "
            value += f"{mib(run['worker_rss_bytes'])} with {run['customers']:,} customers, "
            value += "minus the same with none)"
            figure = f"RSS per customer, live worker after restoring, {store} store"
            rows.append((figure, value, r["recovery"][store]["command"]))
    return rows


MODES = ("worker-1", "raw-1", "worker-2")


def live_rows(r: dict[str, Any], workload: str) -> list[Row]:
    live = get(r, "live", workload)
    if not live:
        return []
    s, cmd = live["summary"], live["command"]
    rows: list[Row] = []
    for key, x in s.items():
        kind, workers, guarantee = key.split("-", 2)
        who = "raw aiokafka consume→produce" if kind == "raw" else f"{workers} worker"
        who += "s" if workers != "1" else ""
        value = f"**{n(x['events_per_s_median'])} events/s** ("
        value += ", ".join(n(v) for v in x["events_per_s_runs"])
        value += f"); {n(x['process_cpu_us_per_event_median'])} µs CPU/event, broker "
        value += f"{n(x['broker_cpu_us_per_event_median'])}; ready after "
        value += f"{x['startup_seconds_median']:.1f} s"
        rows.append((f"{who}, {guarantee}", value, cmd))
    for g in ("at_least_once", "exactly_once"):
        one, raw, two = (get(s, f"{k}-{g}", "events_per_s_median") for k in MODES)
        if one and raw:
            value = f"{ratio(one, raw)} ({n(one)} ÷ {n(raw)} events/s)"
            rows.append((f"1 worker ÷ raw aiokafka, {g}", value, cmd))
        if one and two:
            value = f"{ratio(two, one)} ({n(two)} ÷ {n(one)} events/s)"
            rows.append((f"scaling: 2 workers ÷ 1 worker, {g}", value, cmd))
    proc = r.get("processor")
    if workload == "sim" and proc:
        worker = get(s, "worker-1-at_least_once", "process_cpu_us_per_event_median")
        value = f"{n(proc['events_per_s'])} events/s, **{n(proc['cpu_us_per_event'])} µs "
        value += f"CPU/event** ({proc['events']:,} events, batches of 2,000); "
        value += (
            f"{ratio(proc['cpu_us_per_event'], worker)} of the worker's CPU/event (at_least_once)"
        )
        rows.append(("adapter alone (PartitionTask, no Kafka client)", value, proc["command"]))
    return rows


def latency_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for g, res in (r.get("latency") or {}).items():
        for x in res["levels"]:
            share = x["target_rate"] / res["max_events_per_s"]
            value = f"p50 {n(x['p50_ms'])} / p95 {n(x['p95_ms'])} / **p99 {n(x['p99_ms'])} ms**"
            value += f" / max {n(x['max_ms'])} ms at {n(x['achieved_send_rate'])} events/s "
            value += f"({x['measured']:,} measured, {x['unmatched_after_30s']} unmatched; load "
            value += f"generator {x.get('generator_cores', 0):.2f} cores)"
            rows.append((f"{g}, {share:.0%} of the measured maximum", value, res["command"]))
    return rows


def idle_rows(r: dict[str, Any]) -> list[Row]:
    idle = r.get("idle")
    if not idle:
        return []
    rows: list[Row] = []
    for who, key in (("plain aiokafka consumer", "plain_consumer"), ("worker", "idle_worker")):
        value = f"**{idle[f'{key}_cores']:.2f} cores** (broker "
        value += f"{idle[f'broker_cores_for_{key}']:.2f}) over {idle['seconds']:.0f} s"
        rows.append((f"{who} with nothing to read", value, idle["command"]))
    return rows


def restart(x: dict[str, Any]) -> str:
    """One worker start of a recovery run, in figures."""
    spans = ", ".join(f"{p:.1f}" for p in x["restore_seconds_per_partition"])
    value = f"**{x['restore_seconds']:.1f} s** to restore {x['records_restored']:,} records "
    value += f"({spans} s per partition); "
    if "error" in x:
        value += f"{x['error']} (log `{x['log']}`)"
    else:
        value += f"start→ready {x['start_to_ready_seconds']:.1f} s, CPU "
        value += f"{x['worker_cpu_seconds']:.1f} s, RSS {mib(x['worker_rss_bytes'])}"
    value += f"; heartbeat failures {x.get('heartbeat_failures', 0)}, stopped in "
    return value + f"{x.get('stop_seconds', 0):.1f} s (exit {x.get('stop_exit_code')})"


def recovery_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    rec = r.get("recovery") or {}
    for store, res in rec.items():
        label = f"{store} store"
        if store == "overdue":
            label = "memory store, states as replayed (timers overdue)"
        for run in res["runs"]:
            figure = f"{label}, {run['customers']:,} customers"
            rows.append((f"{figure}, cold", restart(run), res["command"]))
            if "warm" in run:
                rows.append((f"{figure}, warm", restart(run["warm"]), res["command"]))
            if "warm" in run and run["customers"]:
                value = ratio(run["warm"]["restore_seconds"], run["restore_seconds"])
                rows.append((f"{figure}, warm ÷ cold restore", value, res["command"]))
    memory = {x["customers"]: x for x in get(rec, "memory", "runs") or []}
    for x in get(rec, "rocksdb", "runs") or []:
        if x["customers"] and x["customers"] in memory:
            value = ratio(x["restore_seconds"], memory[x["customers"]]["restore_seconds"])
            cmd = f"{rec['rocksdb']['command']}` and `{rec['memory']['command']}"
            rows.append((f"RocksDB ÷ memory restore, {x['customers']:,} customers", value, cmd))
    return rows


PEERS = {
    "raw": "raw aiokafka consume→produce",
    "worker": "1 siyu-stream worker",
    "faust": "Faust peer (faust-streaming agent + table, same rule core)",
}


def faust_rows(r: dict[str, Any]) -> list[Row]:
    """bench/faust_bench.py: throughput of the three side by side, then restarts."""
    rows: list[Row] = []
    tp = get(r, "faust", "throughput")
    if tp:
        s, cmd = tp["summary"], tp["command"]
        for kind, who in PEERS.items():
            x = s.get(f"{kind}-1-at_least_once")
            if not x:
                continue
            rates = ", ".join(n(v) if v else "stalled" for v in x["events_per_s_runs"])
            best = x["events_per_s_median"]
            value = f"**{n(best) if best else '–'} events/s** ({rates}); "
            value += f"{n(x['process_cpu_us_per_event_median'])} µs CPU/event, broker "
            value += f"{n(x['broker_cpu_us_per_event_median'])}; ready after "
            value += f"{x['startup_seconds_median']:.1f} s"
            rows.append((f"{who}, at_least_once, {tp['events']:,} simulator events", value, cmd))
        rate = {k: get(s, f"{k}-1-at_least_once", "events_per_s_median") for k in PEERS}
        cpu = {k: get(s, f"{k}-1-at_least_once", "process_cpu_us_per_event_median") for k in PEERS}
        value = f"**{ratio(rate['worker'], rate['faust'])}** ({n(rate['worker'] or 0)} ÷ "
        value += f"{n(rate['faust'] or 0)} events/s); CPU per event ×"
        value += f"{(cpu['faust'] or 0) / (cpu['worker'] or 1):.1f} in Faust"
        rows.append(("1 worker ÷ Faust peer, at_least_once", value, cmd))
        for kind in ("worker", "faust"):
            value = f"{ratio(rate[kind], rate['raw'])} ({n(rate[kind] or 0)} ÷ "
            value += f"{n(rate['raw'] or 0)} events/s)"
            rows.append((f"{PEERS[kind].split(' (')[0]} ÷ raw aiokafka", value, cmd))
    rs = get(r, "faust", "restart")
    for kind, res in (get(rs, "apps") or {}).items():
        runs, cmd = res["runs"], rs["command"]
        clean = res["clean"]
        figure = f"SIGTERM restart, {PEERS[kind].split(' (')[0]}: events lost, per restart"
        value = f"**lost {', '.join(str(x['events_lost']) for x in runs)}** of "
        value += f"{clean['events_applied']:,} events; action ids doubled "
        value += ", ".join(str(x["actions_doubled"]) for x in runs)
        value += f" (of {clean['distinct_actions']:,}); stopped after "
        value += f"{rs['stop_at']:.0%} of the clean run's output; "
        value += "; ".join(
            f"run {i}: {x['events_lost_actions_never_sent']} lost events' actions never sent, "
            f"{x.get('events_silenced', 0)} applied events' actions never sent, "
            f"{x['ended']}"
            + (f" ({x['lag']:,} behind)" if x["lag"] else "")
            + f" (action ids {x['actions_missing']} missing / {x['actions_unexpected']} new vs "
            "the clean run: order-dependent rules, not loss)"
            for i, x in enumerate(runs, start=1)
        )
        rows.append((figure, value, cmd))
        for x in res.get("controls", []):
            value = f"lost {x['events_lost']}, {x['events_silenced']} applied events' actions "
            value += f"never sent, action ids {x['actions_missing']} missing / "
            value += f"{x['actions_unexpected']} new, doubled {x['actions_doubled']}"
            figure = f"control: {PEERS[kind].split(' (')[0]} run again without SIGTERM"
            rows.append((figure, value, cmd))
    return rows


def profile_rows(prof: dict[str, Any] | None, key: str) -> list[Row]:
    """A profile's head line (with its command), then one row per function or area."""
    if not prof:
        return []
    tree = prof.get("text_report") or prof.get("profile_file")
    value = f"{prof['events']:,} events, {prof['profiled_seconds']:.1f} s profiled; `{tree}`"
    rows: list[Row] = [("profiled", value, prof["command"])]
    if key == "by_area_percent":
        areas = sorted(prof[key].items(), key=lambda kv: -kv[1])
        return rows + [(area, f"self {pct:.1f} %", None) for area, pct in areas]
    for x in prof[key]:
        value = f"self {x['percent']:.1f} %"
        value += f", inclusive {x['inclusive_percent']:.1f} %" if "inclusive_percent" in x else ""
        value += f", {x['calls']:,} calls" if "calls" in x else ""
        rows.append((f"`{x['function']}` {x['where']}", value, None))
    return rows


def area_rows(r: dict[str, Any]) -> list[Row]:
    """Where replay's CPU goes, per area of the path, on both streams: the share of the
    profile, and that share of the median CPU per event of the replay step."""
    rows: list[Row] = []
    replayed = get(r, "replay") or {}
    for name, key in (("main", "profile"), ("history", "profile_history")):
        prof = get(r, key)
        if not prof or "percent_by_area" not in prof:
            continue
        cpu = (replayed.get(name) or {}).get("cpu_us_per_event_median")
        for area, pct in prof["percent_by_area"].items():
            value = f"{pct:.1f} %" + (f" = {pct * cpu / 100:.0f} µs/event" if cpu else "")
            rows.append((f"{STREAMS.get(name, name)}: {area}", value, prof["command"]))
    return rows


def groups(r: dict[str, Any]) -> dict[str, list[Row]]:
    return {
        "Replay, one process": replay_rows(r),
        "Replay, parallel jobs": jobs_rows(r),
        "State size and memory": memory_rows(r),
        "Live throughput, simulator mix, against raw aiokafka": live_rows(r, "sim"),
        "Live throughput, first purchases (the latency workload)": live_rows(r, "first_purchase"),
        "Latency event→action, one worker, first purchases": latency_rows(r),
        "Idle CPU on the local broker": idle_rows(r),
        "Recovery from the changelog": recovery_rows(r),
        "The peer: faust-streaming on the same broker, rule core and workload": faust_rows(r),
        "Replay CPU by area (pyinstrument self time; µs from the replay medians)": area_rows(r),
        "Replay profile (pyinstrument), by self time": profile_rows(r.get("profile"), "top_self"),
        "Replay profile of the history, by self time": profile_rows(
            r.get("profile_history"), "top_self"
        ),
        "Replay profile, project functions by inclusive time": profile_rows(
            r.get("profile"), "top_inclusive_project"
        ),
        "Adapter profile (PartitionTask, pyinstrument), by self time": profile_rows(
            r.get("processor"), "top_self"
        ),
        "Worker profile (cProfile), self time by area": profile_rows(
            r.get("worker_profile"), "by_area_percent"
        ),
        "Worker profile, by self time": profile_rows(r.get("worker_profile"), "top_self"),
    }


def table(rows: list[Row], machine: str | None) -> str:
    """One row per figure with its command, and its machine unless the caller names the
    machine once above the table."""
    head = ("figure", "value", "command", *(("machine",) if machine else ()))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for figure, value, cmd in rows:
        cells = [figure, value, f"`{cmd}`" if cmd else ""]
        if machine:
            cells.append(machine if cmd else "")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


SUMMARY = (
    ("replay", "Replay, one process", "throughput, median"),
    ("replay --jobs", "Replay, parallel jobs", "speedup"),
    ("live", "Live throughput, simulator mix, against raw aiokafka", "1 worker ÷ raw aiokafka"),
    ("latency", "Latency event→action, one worker, first purchases", "50%"),
    ("peer", "The peer: faust-streaming on the same broker, rule core and workload", "÷ Faust"),
    ("peer", "The peer: faust-streaming on the same broker, rule core and workload", "SIGTERM"),
)
"""The README's rows: (label, group, part of the figure's name)."""


def render(r: dict[str, Any]) -> tuple[str, str]:
    """(README section, full results.md)."""
    m = r["machine"]
    machine = f"{m['nproc']} CPUs {m['cpu_model']}, {m['ram_gib']} GiB, Python {m['python']}, "
    machine += f"noida-db {m['packages'].get('noida-db')}, commit {m['git_commit']}"
    every = groups(r)
    inputs = ", ".join(f"`{i['command']}`" for i in r.get("inputs", {}).values())
    lines = [
        "# siyu-stream benchmark results",
        "",
        f"`make bench` (`.venv/bin/python bench/run.py{' --quick' if r['quick'] else ''}`), "
        f"{r.get('wall_seconds', 0) / 60:.1f} min, finished {r.get('finished_at', '?')}.",
        f"Machine: {machine}; {m['platform']}; packages {m['packages']}; load average "
        f"{' '.join(m['loadavg'])} at start, {' '.join(m.get('loadavg_end', ['?']))} at end. "
        "Broker, workers and load generator share these CPUs.",
        f"Inputs: {inputs}.",
        "",
    ]
    for title, rows in every.items():
        lines += [f"## {title}", "", table(rows, machine) if rows else "not measured", ""]
    if r["errors"]:
        lines += ["## Errors", "", *[f"- {k}: {v}" for k, v in r["errors"].items()], ""]
    picked = [
        (f"{label}: {figure}", value, cmd)
        for label, title, part in SUMMARY
        for figure, value, cmd in every[title]
        if part in figure
    ]
    section = [
        "## Performance",
        "",
        f"Generated by `make bench` ({str(r.get('finished_at'))[:10]}) from "
        "[`bench/results.json`](bench/results.json); every figure, profile and run: "
        f"[`bench/results.md`](bench/results.md). Every row: {machine}.",
        "",
        table(picked, None),
        "",
    ]
    return "\n".join(section), "\n".join(lines)


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
    bench = Path(__file__).resolve().parent
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else bench / "results.json"
    section, full = render(json.loads(path.read_text()))
    path.with_suffix(".md").write_text(full)
    if len(sys.argv) == 1:
        replace_readme_section(bench.parent / "README.md", section)
