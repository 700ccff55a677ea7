"""bench/results.json -> bench/results.md (a section per figure group: the machine and its
commands once, then one table) and the README's `## Performance` section (ten of those
figures, each linking to its section).

    .venv/bin/python bench/report.py               # results.md and the README's section
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Results = dict[str, Any]


@dataclass
class Section:
    """A group of figures: the commands that measured them, one table (header and rows are
    cells joined by " | "), a note under it, and the figures the README shows."""

    title: str
    header: str
    commands: list[tuple[str, str]] = field(default_factory=list)
    rows: list[str] = field(default_factory=list)
    note: str = ""
    readme: list[tuple[str, str]] = field(default_factory=list)


def n(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f}"


def f1(x: float) -> str:
    return f"{x:.1f}"


def mib(b: float) -> str:
    return f"{b / 2**20:,.0f} MiB"


def ratio(a: float | None, b: float | None, of: str = "") -> str:
    """`a` as a multiple of `b` (`of`: what `b` is); nothing where either is missing."""
    return f"×{a / b:.2f}{f' of {of}' if of else ''}" if a and b else ""


def listed(values: list[Any], fmt: Callable[[Any], str] = n) -> str:
    return ", ".join(fmt(v) for v in values)


def med(values: list[float]) -> float:
    return float(statistics.median(values))


STREAMS = {"main": "simulator stream", "history": "purchase history"}


def replay(r: Results) -> Section:
    s = Section(
        "Replay, one process",
        "stream | events/s, median (runs) | ÷ raw JSON pipe (pipe events/s) | µs CPU/event "
        "(pipe) | s / CPU s per run | actions, timers fired per event | customers; timer heap "
        "| actions",
    )
    for name, rep in r["replay"].items():
        runs, x = rep["runs"], rep["runs"][0]
        days = x["event_time_span_s"] / 86400
        label = f"{STREAMS[name]}, {x['events']:,} events over "
        label += f"{days:,.0f} days" if days >= 2 else f"{days * 1440:,.0f} min"
        if x["until_days_after_end"]:
            label += f", timers fired to {x['until_days_after_end']:.0f} days past its end"
        if x["command"] != rep["command"]:
            label += f" (run 1 adds `{x['command'].removeprefix(rep['command']).strip()}`)"
        s.commands.append((label, rep["command"]))
        pipes = [x["pipe"] for x in runs]
        rate, cpu, pipe = (
            rep[f"{k}_median"] for k in ("events_per_s", "cpu_us_per_event", "pipe_ratio")
        )
        s.rows.append(
            f"{STREAMS[name]} | **{n(rate)}** ({listed(rep['events_per_s_runs'])}) | "
            f"**×{pipe:.3f}** ({listed([p['events_per_s'] for p in pipes])}) | {cpu:.0f} "
            f"({med([p['cpu_us_per_event'] for p in pipes]):.1f}) | "
            + ", ".join(f"{x['seconds']:.1f} / {x['cpu_seconds']:.1f}" for x in runs)
            + f" | {x['actions_per_event']:.2f}, {x['timers_per_event']:.2f} | "
            f"{x['customers']:,}; {x['timer_heap_entries']:,} | "
            + ", ".join(f"{k} {v:,}" for k, v in x["counts"]["actions"].items())
        )
        what = "365-day history, timers" if name == "history" else STREAMS[name]
        value = f"**{n(rate)} events/s**, {cpu:.0f} µs CPU/event (×{pipe:.3f} of a raw JSON pipe)"
        s.readme.append((f"replay, {what}", value))
    return s


def jobs(r: Results) -> Section:
    s = Section(
        "Replay, parallel jobs",
        "replay of the history | partitions | events/s, median | s per run | CPU s per run",
    )
    j, parts, cpu = r["replay_jobs"], [], []
    for key in ("jobs_1", "jobs_2"):
        runs = j[key]["runs"]
        label = f"`--jobs {runs[0].get('jobs', 1)}`"
        parts.append(runs[0].get("partitions", 1))  # not recorded: replay_bench's default, 1
        cpu.append(med([x["cpu_seconds"] for x in runs]))
        s.commands.append((label, j[key]["command"]))
        times = " | ".join(listed([x[k] for x in runs], f1) for k in ("seconds", "cpu_seconds"))
        s.rows.append(f"{label} | {parts[-1]} | **{n(j[key]['events_per_s_median'])}** | {times}")
    speedup = f"**×{j['speedup']:.2f}**"
    s.rows.append(f"`--jobs 2` ÷ `--jobs 1` |  | {speedup} |  | ×{cpu[1] / cpu[0]:.2f}")
    rates = f"{n(j['jobs_2']['events_per_s_median'])} ÷ {n(j['jobs_1']['events_per_s_median'])}"
    value = f"{speedup} ({rates} events/s)"
    if parts[0] != parts[1]:
        s.note = "The two ran over different partitions: the speedup includes that difference."
        value += f", over {parts[0]} and {parts[1]} partitions"
    s.readme.append(("replay `--jobs 2` ÷ `--jobs 1`", value))
    return s


def memory(r: Results) -> Section:
    s = Section(
        "State size and memory",
        "figure | customers | `state.dumps` bytes: mean, p50, p99, max | RSS per customer",
        note="Worker: its RSS once restored, minus the same with no customers, per customer.",
    )
    per_customer = {}
    for label, x in r["memory"].items():
        sb, grew = x["state_bytes"], x["rss_after_bytes"] - x["rss_before_bytes"]
        s.commands.append((f"replay, {label} stream", x["command"]))
        s.rows.append(
            f"replay, {label} stream | {x['customers']:,} | **{n(sb['mean'])}**, "
            f"{listed([sb['p50'], sb['p99'], sb['max']])} | "
            f"**{n(x['rss_per_customer_bytes'])} B** (RSS +{mib(grew)})"
        )
    for store in ("memory", "rocksdb"):
        res = r.get("recovery", {}).get(store, {})
        if runs := [x for x in res.get("runs", []) if "rss_per_customer_bytes" in x]:
            x, per_customer[store] = runs[-1], runs[-1]["rss_per_customer_bytes"]
            s.commands.append((f"live worker, {store} store", res["command"]))
            s.rows.append(
                f"live worker, {store} store | {x['customers']:,} | – | "
                f"**{n(per_customer[store])} B** (RSS {mib(x['worker_rss_bytes'])})"
            )
    if "main" in r["memory"] and "memory" in per_customer:
        main = r["memory"]["main"]
        value = f"{n(main['state_bytes']['mean'])} B serialized; RSS "
        value += f"{n(main['rss_per_customer_bytes'])} B in replay, "
        s.readme.append(
            ("state per customer", value + f"{n(per_customer['memory'])} B in a worker")
        )
    return s


MODES = {"raw-1": "raw aiokafka consume→produce", "worker-1": "1 worker", "worker-2": "2 workers"}
GUARANTEES = ("at_least_once", "exactly_once")


def rates(x: dict[str, Any]) -> str:
    """Events/s, CPU per event and start-up of a live or peer consumer: medians (runs)."""
    runs = listed(x["events_per_s_runs"], lambda v: n(v) if v else "stalled")
    return (
        f"**{n(x['events_per_s_median'])}** ({runs}) | {n(x['process_cpu_us_per_event_median'])}"
        f"; {n(x['broker_cpu_us_per_event_median'])} | {x['startup_seconds_median']:.1f}"
    )


def live(r: Results) -> Section:
    s = Section(
        "Live throughput",
        "workload | consumer | guarantee | events/s, median (runs) | µs CPU/event: process; "
        "broker | ready after s | ratio",
    )
    for workload, what in (("sim", "simulator mix"), ("first_purchase", "first purchases")):
        if not (res := r.get("live", {}).get(workload)):
            continue
        s.commands.append((f"{what}, {res['events']:,} events", res["command"]))
        rate = {k: x["events_per_s_median"] for k, x in res["summary"].items()}
        versus = {
            f"{mode}-{g}": ratio(rate.get(f"{mode}-{g}"), rate.get(f"{base}-{g}"), who)
            for mode, base, who in (
                ("worker-1", "raw-1", "raw"),
                ("worker-2", "worker-1", "1 worker"),
            )
            for g in GUARANTEES
        }
        for (mode, who), g in ((m, g) for m in MODES.items() for g in GUARANTEES):
            if x := res["summary"].get(key := f"{mode}-{g}"):
                s.rows.append(f"{what} | {who} | {g} | {rates(x)} | {versus.get(key, '')}")
        if workload == "sim" and len(rate) == len(MODES) * len(GUARANTEES):
            one = [
                f"**{n(rate[f'worker-1-{g}'])}** ({versus[f'worker-1-{g}']} aiokafka)"
                for g in GUARANTEES
            ]
            s.readme.append(
                (f"live, 1 worker, events/s: {' / '.join(GUARANTEES)}", " / ".join(one))
            )
            two = [versus[f"worker-2-{g}"].removesuffix(" of 1 worker") for g in GUARANTEES]
            s.readme.append(("live, 2 workers ÷ 1 worker", " / ".join(two)))
    if x := r.get("processor"):
        worker = (
            r.get("live", {}).get("sim", {}).get("summary", {}).get("worker-1-at_least_once", {})
        )
        cpu = ratio(x["cpu_us_per_event"], worker.get("process_cpu_us_per_event_median"))
        s.commands.append(("adapter alone, batches of 2,000", x["command"]))
        s.rows.append(
            f"simulator mix | adapter alone (PartitionTask, no Kafka client) | – | "
            f"{n(x['events_per_s'])} ({x['events']:,} events) | **{n(x['cpu_us_per_event'])}** "
            f"| – | CPU/event {cpu} of 1 worker's"
        )
    return s


def latency(r: Results) -> Section:
    s = Section(
        "Latency event→action",
        "guarantee | load: share of the maximum | sent events/s | p50 ms | p95 ms | p99 ms | "
        "max ms | measured | unmatched after 30 s | load generator cores",
        note="One worker, first purchases at a fixed rate; the maximum: its rate above.",
    )
    half = []
    for g, res in r["latency"].items():
        s.commands.append((g, res["command"]))
        top = res["max_events_per_s"]
        for x in res["levels"]:
            s.rows.append(
                f"{g} | {x['target_rate'] / top:.0%} of {n(top)} | {n(x['achieved_send_rate'])} "
                f"| {n(x['p50_ms'])} | {n(x['p95_ms'])} | **{n(x['p99_ms'])}** | "
                f"{n(x['max_ms'])} | {x['measured']:,} | {x['unmatched_after_30s']} | "
                f"{x.get('generator_cores', 0):.2f}"
            )
        x = min(res["levels"], key=lambda x: abs(x["target_rate"] / top - 0.5))
        half.append(f"**{n(x['p99_ms'])} ms** at {n(x['achieved_send_rate'])}/s")
    s.readme.append((f"p99 event→action, half load: {' / '.join(r['latency'])}", " / ".join(half)))
    return s


def idle(r: Results) -> Section:
    s = Section("Idle CPU", "with nothing to read | cores | broker cores")
    s.commands.append((f"over {r['idle']['seconds']:.0f} s", r["idle"]["command"]))
    for who, key in (("plain aiokafka consumer", "plain_consumer"), ("worker", "idle_worker")):
        cores, broker = r["idle"][f"{key}_cores"], r["idle"][f"broker_cores_for_{key}"]
        s.rows.append(f"{who} | **{cores:.2f}** | {broker:.2f}")
    return s


STATES = {"memory": "memory store", "rocksdb": "rocksdb store", "overdue": "memory, overdue"}


def recovery(r: Results) -> Section:
    s = Section(
        "Recovery from the changelog",
        "states | customers | start | restore s (per partition) | records restored | "
        "start→ready s | CPU s | RSS | heartbeat failures | stopped in s (exit)",
    )
    rec, notes, restored = r["recovery"], [], []
    for store, res in rec.items():
        s.commands.append((STATES[store], res["command"]))
        for x in res["runs"]:
            starts = [("cold", x), *([("warm", x["warm"])] if "warm" in x else [])]
            s.rows += [
                f"{STATES[store]} | {x['customers']:,} | {a} | {restart(y)}" for a, y in starts
            ]
            if "warm" in x and x["customers"]:
                warm = ratio(x["warm"]["restore_seconds"], x["restore_seconds"])
                notes.append(f"warm ÷ cold restore, {store}, {x['customers']:,} customers: {warm}")
        if store != "overdue" and (x := res["runs"][-1])["customers"]:
            warm = f" ({x['warm']['restore_seconds']:.1f} s warm)" if "warm" in x else ""
            restored.append(f"**{x['restore_seconds']:.1f} s** {store}{warm}")
    memory_runs = {x["customers"]: x for x in rec.get("memory", {}).get("runs", [])}
    for x in rec.get("rocksdb", {}).get("runs", []):
        if x["customers"] and x["customers"] in memory_runs:
            rocks = ratio(x["restore_seconds"], memory_runs[x["customers"]]["restore_seconds"])
            notes.append(f"RocksDB ÷ memory restore, {x['customers']:,} customers: {rocks}")
    s.note = "; ".join(notes) + ". Overdue: states as replayed, every timer fires at once."
    if restored:
        customers = max(x["runs"][-1]["customers"] for x in rec.values())
        s.readme.append((f"restore {customers:,} customers", ", ".join(restored)))
    return s


def restart(x: dict[str, Any]) -> str:
    """One worker start of a recovery run, in cells."""
    ready = f1(x["start_to_ready_seconds"]) if "error" not in x else f"{x['error']} (`{x['log']}`)"
    return (
        f"**{x['restore_seconds']:.1f}** ({listed(x['restore_seconds_per_partition'], f1)}) | "
        f"{x['records_restored']:,} | {ready} | {x.get('worker_cpu_seconds', 0):.1f} | "
        f"{mib(x.get('worker_rss_bytes', 0))} | {x.get('heartbeat_failures', 0)} | "
        f"{x.get('stop_seconds', 0):.1f} ({x.get('stop_exit_code')})"
    )


PEERS = {"raw": "raw aiokafka consume→produce", "worker": "1 worker", "faust": "Faust peer"}


def peer_throughput(r: Results) -> Section:
    s = Section(
        "Faust peer: throughput",
        "app | events/s, median (runs) | µs CPU/event: process; broker | ready after s | ratio",
        note="Faust peer: bench/faust_peer.py, the same rule core in a faust-streaming app.",
    )
    tp = r["faust"]["throughput"]
    s.commands.append((f"{tp['events']:,} simulator events, at_least_once", tp["command"]))
    x = {k: tp["summary"].get(f"{k}-1-at_least_once") or {} for k in PEERS}
    rate = {k: x[k].get("events_per_s_median") for k in PEERS}
    cpu = {k: x[k].get("process_cpu_us_per_event_median") for k in PEERS}
    versus = {
        "worker": f"{ratio(rate['worker'], rate['raw'], 'raw')}; "
        f"**{ratio(rate['worker'], rate['faust'], 'Faust')}**",
        "faust": f"{ratio(rate['faust'], rate['raw'], 'raw')}; CPU/event "
        f"{ratio(cpu['faust'], cpu['worker'], 'the worker')}",
    }
    s.rows = [f"{who} | {rates(x[k])} | {versus.get(k, '')}" for k, who in PEERS.items() if x[k]]
    value = f"**{ratio(rate['worker'], rate['faust'])}** "
    value += f"({n(rate['worker'])} ÷ {n(rate['faust'])} events/s)"
    s.readme.append(("1 worker ÷ Faust peer, throughput", value))
    return s


def peer_restart(r: Results) -> Section:
    s = Section(
        "Faust peer: SIGTERM restarts",
        "app | run | events lost | of them, actions never sent | applied, actions never sent "
        "| action ids doubled | action ids missing / new | ended",
    )
    rs, clean, lost = r["faust"]["restart"], [], []
    s.commands.append((f"{rs['events']:,} simulator events, at_least_once", rs["command"]))
    for kind, res in rs["apps"].items():
        runs = [(str(i), x) for i, x in enumerate(res["runs"], start=1)]
        for run, x in runs + [("control, no SIGTERM", x) for x in res.get("controls", [])]:
            s.rows.append(
                f"{PEERS[kind]} | {run} | **{x['events_lost']}** | "
                f"{x['events_lost_actions_never_sent']} | {x.get('events_silenced', 0)} | "
                f"{x['actions_doubled']} | {x['actions_missing']} / {x['actions_unexpected']} | "
                + x["ended"]
                + (f" ({x['lag']:,} behind)" if x["lag"] else "")
            )
        c = res["clean"]
        clean.append(f"{PEERS[kind]} {c['events_applied']:,} events, {c['distinct_actions']:,}")
        lost.append(f"{PEERS[kind]} **{listed([x['events_lost'] for x in res['runs']])}**")
    s.note = (
        f"Each run stopped after {rs['stop_at']:.0%} of the clean run's output, restarted in "
        f"the same group and left to finish. Clean runs (events applied, action ids): "
        f"{'; '.join(clean)}. Action ids missing or new against the clean run come from "
        "order-dependent rules, not loss: the control shows their noise floor."
    )
    s.readme.append(("events lost per SIGTERM restart", "; ".join(lost)))
    return s


def profiled(prof: dict[str, Any], what: str) -> str:
    return f"{what}, {prof['events']:,} events, {prof['profiled_seconds']:.1f} s profiled"


def hottest(prof: dict[str, Any]) -> str:
    """The top 5 functions by self time, each with its file (none for a C function)."""
    where = [x["where"].rpartition("/")[2].partition(":")[0] for x in prof["top_self"]]
    return ", ".join(
        f"`{x['function']}`{f' ({w})' if w.endswith('.py') else ''} {x['percent']:.1f} %"
        for x, w in zip(prof["top_self"][:5], where, strict=False)
    )


def areas(r: Results) -> Section:
    """Where replay's CPU goes, per area of its path: the share of the profile, and that
    share of the replay step's median CPU per event; then the hottest functions."""
    s = Section("Replay CPU by area", "area: share of self time = µs/event")
    shares: dict[str, dict[str, str]] = {}
    tops, names = [], []
    for name, key in (("main", "profile"), ("history", "profile_history")):
        if not (prof := r.get(key)):
            continue
        cpu = r.get("replay", {}).get(name, {}).get("cpu_us_per_event_median", 0)
        names.append(name)
        s.header += f" | {STREAMS[name]}"
        s.commands.append((profiled(prof, STREAMS[name]), prof["command"]))
        for area, pct in prof["percent_by_area"].items():
            shares.setdefault(area, {})[name] = f"{pct:.1f} % = {pct * cpu / 100:.0f}"
        tops.append(f"{STREAMS[name].capitalize()}, top 5 functions by self time: {hottest(prof)}.")
    s.note = " ".join(tops)
    s.rows = [" | ".join([a, *(by.get(k, "–") for k in names)]) for a, by in shares.items()]
    return s


def worker_areas(r: Results) -> Section:
    """One row: the share of the worker's self time per area, largest first."""
    prof = r["worker_profile"]
    areas = sorted(prof["by_area_percent"].items(), key=lambda kv: -kv[1])
    s = Section("Worker CPU by area", " | ".join(["cProfile self time", *dict(areas)]))
    s.commands.append((profiled(prof, "1 worker"), prof["command"]))
    s.rows = [" | ".join(["share", *(f"{pct:.1f} %" for _, pct in areas)])]
    s.note = f"Top 5 functions by self time: {hottest(prof)}."
    return s


SECTIONS: list[tuple[Callable[[Results], Section], str]] = [
    (replay, "replay"),
    (jobs, "replay_jobs"),
    (memory, "memory"),
    (live, "live"),
    (latency, "latency"),
    (idle, "idle"),
    (recovery, "recovery"),
    (peer_throughput, "faust"),
    (peer_restart, "faust"),
    (areas, "profile"),
    (worker_areas, "worker_profile"),
]
"""Each section, and the step of bench/run.py it needs (a run with --only has fewer)."""


def table(header: str, rows: list[str]) -> list[str]:
    return [f"| {header} |", "|" + "---|" * (header.count(" | ") + 1), *(f"| {x} |" for x in rows)]


def render_section(s: Section, machine: str) -> list[str]:
    lines = [f"## {s.title}", "", f"Machine: {machine}."]
    if len(s.commands) == 1:
        lines.append("Command ({}): `{}`".format(*s.commands[0]))
    else:
        lines += ["", *(f"- {label}: `{cmd}`" for label, cmd in s.commands)]
    return [*lines, "", *table(s.header, s.rows), "", *([s.note, ""] if s.note else [])]


def anchor(title: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def render(r: Results) -> tuple[str, str]:
    """(README section, full results.md)."""
    m = r["machine"]
    machine = f"{m['nproc']} CPUs {m['cpu_model']}, {m['ram_gib']} GiB, Python {m['python']}, "
    machine += f"noida-db {m['packages'].get('noida-db')}, commit {m['git_commit']}"
    packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    inputs = ", ".join(f"`{i['command']}`" for i in r.get("inputs", {}).values())
    lines = [
        "# siyu-stream benchmark results",
        "",
        f"`make bench` (`.venv/bin/python bench/run.py{' --quick' if r['quick'] else ''}`), "
        f"{r.get('wall_seconds', 0) / 60:.1f} min, finished {r.get('finished_at', '?')}; every "
        "run's figures: [`results.json`](results.json).",
        f"Machine: {machine}; {m['platform']}; {packages}; load average {' '.join(m['loadavg'])} "
        f"at start, {' '.join(m.get('loadavg_end', ['?']))} at end. Broker, workers and load "
        "generator share these CPUs.",
        f"Inputs: {inputs}.",
        "",
    ]
    built = [build(r) for build, step in SECTIONS if r.get(step)]
    for s in built:
        lines += render_section(s, machine)
    if r["errors"]:
        lines += ["## Errors", "", *(f"- {k}: {v}" for k, v in r["errors"].items()), ""]
    rows = [
        f"[{fig}](bench/results.md#{anchor(s.title)}) | {v}" for s in built for fig, v in s.readme
    ]
    section = [
        "## Performance",
        "",
        f"Generated by `make bench` ({str(r.get('finished_at'))[:10]}) on {machine}. Every "
        "figure's command, its runs, and the profiles: [`bench/results.md`](bench/results.md).",
        "",
        *table("figure | value", rows),
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
