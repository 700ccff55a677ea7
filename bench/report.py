"""bench/results.json -> bench/results.md (per section: the machine, broker and commands once,
then one table) and the README's `## Performance` section (figures linking to sections).

    .venv/bin/python bench/report.py               # results.md and the README's section
    .venv/bin/python bench/report.py RESULTS.json  # RESULTS.md only

Ratios are of figures measured in the same run (the worker to raw aiokafka on the same
broker and input, replay to a raw JSON pipe over the same file, ...), never to fixed numbers.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Results = dict[str, Any]
KAFKA = "Apache Kafka"
GUARANTEES = ("at_least_once", "exactly_once")
WHO = {"raw-1": "raw aiokafka", "worker-1": "1 worker", "worker-2": "2 workers"}
WHO |= {"faust-1": "Faust peer", "kstreams-1": "Kafka Streams peer"}


@dataclass
class Section:
    """Commands, one table (header: cells joined by " | "), a note, the README's figures."""

    title: str
    header: str
    broker: str = ""
    commands: list[tuple[str, str]] = field(default_factory=list)
    rows: list[str] = field(default_factory=list)
    note: str = ""
    readme: list[tuple[str, str]] = field(default_factory=list)

    def row(self, *cells: object) -> None:
        self.rows.append(" | ".join(map(str, cells)))


def n(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f}"


def ratio(a: float | None, b: float | None, of: str = "") -> str:
    return f"×{a / b:.2f}{f' of {of}' if of else ''}" if a and b else ""


def listed(values: list[Any], fmt: Callable[[Any], str] = n) -> str:
    return ", ".join(fmt(v) for v in values)


def throughput(
    res: dict[str, Any], what: str, s: Section
) -> tuple[dict[str, float], dict[str, float]]:
    """Rows of one `live_bench.py throughput` into `s`; its median rates by mode, over the
    whole run and over its middle 80 % (steady)."""
    s.commands.append((f"{what}, {res['events']:,} events", res["command"]))
    rate = {k: x["events_per_s_median"] for k, x in res["summary"].items()}
    steady = {k: x.get("steady_events_per_s_median") for k, x in res["summary"].items()}
    for key, x in res["summary"].items():
        kind, g = key.rsplit("-", 1)[0], key.split("-", 2)[2]
        vs = ratio(rate[key], rate.get(f"raw-1-{g}"), "raw") if kind != "raw-1" else ""
        if vs and steady[key] and steady.get(f"raw-1-{g}"):
            vs += f" (steady {ratio(steady[key], steady[f'raw-1-{g}'])})"
        if kind == "worker-2":
            vs = ratio(rate[key], rate.get(f"worker-1-{g}"), "1 worker")
        if kind == "worker-1" and f"faust-1-{g}" in rate:
            vs += f"; **{ratio(rate[key], rate[f'faust-1-{g}'], 'Faust')}**"
        if kind == "worker-1" and f"kstreams-1-{g}" in rate:
            vs += f"; **{ratio(rate[key], rate[f'kstreams-1-{g}'], 'Kafka Streams')}**"
        runs = listed(x["events_per_s_runs"], lambda v: n(v) if v else "stalled")
        cpu = f"{n(x['process_cpu_us_per_event_median'])}; {n(x['broker_cpu_us_per_event_median'])}"
        median = f"**{n(x['events_per_s_median'])}** ({runs})"
        calm = "–"
        if steady[key]:
            calm = f"{n(steady[key])} ({listed(x['steady_events_per_s_runs'], n)})"
        rss = n(x["peak_rss_mib_max"]) if "peak_rss_mib_max" in x else "–"
        ready = f"{x['startup_seconds_median']:.1f}"
        s.row(what, WHO[kind], g, median, calm, cpu, ready, rss, vs)
    return rate, steady


THROUGHPUT = "workload | consumer | guarantee | events/s, median (runs) | "
THROUGHPUT += "steady: 10 → 90 % committed | µs CPU/event: process; broker | ready after s | "
THROUGHPUT += "peak RSS MiB | ratio"


def live(r: Results) -> Section:
    s = Section(f"Live throughput on {KAFKA}", THROUGHPUT, KAFKA)
    s.note = "Each consumer in a new group over the same pre-produced input, timed from ready "
    s.note += "until its committed offsets reach the input's ends, on a broker warmed by an "
    s.note += "untimed pass of the raw pipe per guarantee. Steady: the rate from 10 % to 90 % "
    s.note += "of the input committed, without start-up and without the last records' wait "
    s.note += "(a caught-up worker holds a record SIYU_REORDER_MS, 500 ms, for a straggler of "
    s.note += "another topic; the whole run's rate includes it). Faust peer: "
    s.note += "bench/faust_peer.py, the same rule core in a faust-streaming agent."
    if any(key.startswith("kstreams-") for key in r["live"]["sim"]["summary"]):
        s.note += " Kafka Streams peer: bench/kstreams, the spend-tier rule alone (every event "
        s.note += "parsed, orders applied to a RocksDB store with its changelog; one stream "
        s.note += "thread) in Kafka Streams 4.4.0: much less work per event than the worker's "
        s.note += "every rule; its time and CPU include the JVM's warm-up (JIT compilation "
        s.note += "while it runs)." + gifts(r["live"]["sim"])
    rate, steady = throughput(r["live"]["sim"], "simulator mix", s)
    if fp := r["live"].get("first_purchase"):
        throughput(fp, "first purchases", s)
    if x := r.get("processor"):
        s.commands.append(("adapter alone, batches of 2,000", x["command"]))
        what = "adapter alone (PartitionTask, no Kafka client)"
        cpu = n(x["cpu_us_per_event"])
        s.row("simulator mix", what, "–", n(x["events_per_s"]), "–", cpu, "–", "–", "")
    w = {g: rate.get(f"worker-1-{g}") for g in GUARANTEES}
    one = [f"**{n(w[g])}** ({ratio(w[g], rate.get(f'raw-1-{g}'))} of raw aiokafka)" for g in w]
    calm = [ratio(steady.get(f"worker-1-{g}"), steady.get(f"raw-1-{g}")) for g in w]
    if all(calm):
        one = [f"{x[:-1]}; steady {c})" for x, c in zip(one, calm, strict=True)]
    s.readme.append((f"{KAFKA}: 1 worker, events/s, {' / '.join(w)}", " / ".join(one)))
    two = [ratio(rate.get(f"worker-2-{g}"), w[g]) for g in GUARANTEES]
    s.readme.append((f"{KAFKA}: 2 workers ÷ 1 worker", " / ".join(two)))
    f = rate.get("faust-1-at_least_once")
    value = f"**{ratio(w['at_least_once'], f)}** ({n(w['at_least_once'])} ÷ {n(f)} events/s)"
    s.readme.append((f"{KAFKA}: 1 worker ÷ Faust peer, at_least_once", value))
    if k := rate.get("kstreams-1-exactly_once"):
        value = f"**{ratio(w['exactly_once'], k)}** ({n(w['exactly_once'])} ÷ {n(k)} events/s)"
        s.readme.append(
            (f"{KAFKA}: 1 worker ÷ Kafka Streams peer (spend tier only), exactly_once", value)
        )
    return s


def gifts(res: dict[str, Any]) -> str:
    """A sentence on the spend-tier gifts each mode wrote, which should agree."""
    counts = [
        f"{WHO[key.rsplit('-', 1)[0]]} {key.split('-', 2)[2]} {listed(x['spend_tier_gifts_runs'])}"
        for key, x in res["summary"].items()
        if key.startswith(("worker-", "kstreams-")) and "spend_tier_gifts_runs" in x
    ]
    return f" Spend-tier gifts written per run: {'; '.join(counts)}." if counts else ""


def noida(r: Results) -> Section:
    s = Section("noida-db, for comparison", THROUGHPUT, "noida-db")
    rate, _ = throughput(r["noida"], "simulator mix", s)
    one = [ratio(rate.get(f"worker-1-{g}"), rate.get(f"raw-1-{g}")) for g in GUARANTEES]
    s.readme.append(
        (f"noida-db: 1 worker ÷ raw aiokafka, {' / '.join(GUARANTEES)}", " / ".join(one))
    )
    return s


def latency(r: Results) -> Section:
    header = "guarantee | load: share of the maximum | sent events/s | p50 ms | p95 ms | p99 ms | "
    header += "max ms | measured | unmatched after 30 s | load generator cores"
    s = Section(f"Latency event→action on {KAFKA}", header, KAFKA)
    s.note = "One worker; first purchases of new customers at a fixed rate; the maximum: its "
    s.note += "rate on them above."
    half = []
    for g, res in r["latency"].items():
        s.commands.append((g, res["command"]))
        top = res["max_events_per_s"]
        for x in res["levels"]:
            ms = [n(x[f"p{q}_ms"]) for q in (50, 95)] + [f"**{n(x['p99_ms'])}**", n(x["max_ms"])]
            load = f"{x['target_rate'] / top:.0%} of {n(top)}"
            sent, measured, cores = n(x["achieved_send_rate"]), x["measured"], x["generator_cores"]
            s.row(g, load, sent, *ms, f"{measured:,}", x["unmatched_after_30s"], f"{cores:.2f}")
        x = min(res["levels"], key=lambda x: abs(x["target_rate"] / top - 0.5))
        half.append(f"**{n(x['p99_ms'])} ms** at {n(x['achieved_send_rate'])}/s")
    what = f"{KAFKA}: p99 event→action at half load, {' / '.join(r['latency'])}"
    s.readme.append((what, " / ".join(half)))
    return s


STATES = {"memory": "memory store", "rocksdb": "rocksdb store", "overdue": "memory, overdue"}


def recovery(r: Results) -> Section:
    header = "states | customers | start | restore s | records restored | start→ready s | "
    header += "RSS MiB | exit"
    s = Section(f"Recovery from the changelog on {KAFKA}", header, KAFKA)
    s.note = "States moved to an hour ago, except overdue: as replayed, every timer fires in "
    s.note += "the first sweep. Warm: the same worker again on its data dir."
    done = []
    for store, res in r["recovery"].items():
        s.commands.append((STATES[store], res["command"]))
        for x in res["runs"]:
            for start, y in [("cold", x)] + ([("warm", x["warm"])] if "warm" in x else []):
                ready = f"{y['start_to_ready_seconds']:.1f}" if "error" not in y else y["error"]
                rss = n(y.get("worker_rss_bytes", 0) / 2**20)
                restore, restored = f"**{y['restore_seconds']:.1f}**", f"{y['records_restored']:,}"
                customers, code = f"{x['customers']:,}", y["stop_exit_code"]
                s.row(STATES[store], customers, start, restore, restored, ready, rss, code)
        if store != "overdue" and (x := res["runs"][-1])["customers"]:
            warm = f" ({x['warm']['restore_seconds']:.1f} s warm)" if "warm" in x else ""
            done.append(f"**{x['restore_seconds']:.1f} s** {store}{warm}")
    customers = max(x["runs"][-1]["customers"] for x in r["recovery"].values())
    s.readme.append((f"{KAFKA}: restore {customers:,} customers", ", ".join(done)))
    return s


def restart(r: Results) -> Section:
    res = r["restart"]
    header = "app | clean run: events applied, actions | events lost, per restarted run | "
    header += "action ids written twice | ended"
    s = Section(f"SIGTERM restarts on {KAFKA}", header, KAFKA)
    s.commands.append((f"{res['events']:,} simulator events, at_least_once", res["command"]))
    s.note = f"Each run stopped with SIGTERM once {res['stop_at']:.0%} of the clean run's actions "
    s.note += "were out, started again in the same group and left to finish. Lost: applied by "
    s.note += "the clean run, in no final state of the restarted one."
    lost = []
    for kind, x in res["apps"].items():
        runs, who = x["runs"], WHO[f"{kind}-1"]
        counts = f"**{listed([y['events_lost'] for y in runs])}**"
        lost.append(f"{who} {counts}")
        clean = f"{x['clean_applied']:,}, {x['actions']:,}"
        ended = ", ".join(sorted({y["ended"] for y in runs}))
        s.row(who, clean, counts, listed([y["doubled"] for y in runs]), ended)
    s.readme.append((f"{KAFKA}: events lost per SIGTERM restart", "; ".join(lost)))
    return s


STREAMS = {"main": "simulator stream", "history": "365-day history, timers to 400 days past it"}


def replay(r: Results) -> Section:
    header = "stream | build | events | events/s, median (runs) | ÷ raw JSON pipe (pipe events/s) "
    header += "| µs CPU/event (pipe) | actions, timers fired per event"
    s = Section("Replay, one process", header)
    s.note = "Compiled: the mypyc build `make bench` builds (.compiled/site); interpreted: "
    s.note += "the same install's Python source (SIYU_BUILD=interpreted)."
    builds = {"compiled": r["replay"], "interpreted": r.get("replay_interpreted", {})}
    for name in r["replay"]:
        for build, reps in builds.items():
            if name not in reps:
                continue
            rep = reps[name]
            runs, x = rep["runs"], rep["runs"][0]
            s.commands.append((f"{STREAMS[name]}, {build}", x["command"]))
            pipe = listed([y["pipe"]["events_per_s"] for y in runs])
            rate = (
                f"**{n(rep['events_per_s_median'])}** ({listed([y['events_per_s'] for y in runs])})"
            )
            cpu = f"{rep['cpu_us_per_event_median']:.0f} ({x['pipe']['cpu_us_per_event']:.1f})"
            per = f"{x['actions_per_event']:.2f}, {x['timers_per_event']:.2f}"
            ran = x.get("build", build)  # the build the script reports it ran
            pipe_ratio = f"**×{rep['pipe_ratio_median']:.3f}** ({pipe})"
            s.row(STREAMS[name], ran, f"{x['events']:,}", rate, pipe_ratio, cpu, per)
        if name in builds["interpreted"]:
            one, other = r["replay"][name], builds["interpreted"][name]
            faster = ratio(one["events_per_s_median"], other["events_per_s_median"])
            # CPU too: less moved by the machine's other work than events/s
            cpu = ratio(other["cpu_us_per_event_median"], one["cpu_us_per_event_median"])
            less = f"{cpu} less CPU"
            s.row(STREAMS[name], "compiled ÷ interpreted", "", f"**{faster}**", "", less, "")
    value = [
        f"**{n(rep['events_per_s_median'])}** (×{rep['pipe_ratio_median']:.3f} of a raw JSON pipe)"
        for rep in r["replay"].values()
    ]
    s.readme.append(("replay, events/s: simulator stream / history", " / ".join(value)))
    if builds["interpreted"]:
        value = [
            ratio(r["replay"][k]["events_per_s_median"], x["events_per_s_median"])
            for k, x in builds["interpreted"].items()
        ]
        s.readme.append(
            ("replay, compiled ÷ interpreted: simulator stream / history", " / ".join(value))
        )
    return s


def backtest(r: Results) -> Section:
    header = "build | jobs | events | events/s, median (runs) | µs CPU/event, median"
    s = Section("Backtest", header)
    s.note = (
        "Two engines over the history (the built-in rules and a silence and dormant change); "
        "`--jobs 2` runs each in a process of its own (CPU: both processes)."
    )
    rate, cpu_of = {}, {}
    for key, rep in r["backtest"].items():
        runs, x = rep["runs"], rep["runs"][0]
        s.commands.append((key.replace("_", " "), x["command"]))
        rate[key], cpu_of[key] = rep["events_per_s_median"], rep["cpu_us_per_event_median"]
        each = listed([y["events_per_s"] for y in runs])
        row = (x["build"], str(x.get("jobs", 1)), f"{x['events']:,}")
        s.row(*row, f"**{n(rate[key])}** ({each})", n(cpu_of[key]))
    faster = ratio(rate.get("compiled"), rate.get("interpreted"))
    less = ratio(cpu_of.get("interpreted"), cpu_of.get("compiled"))
    s.row("compiled ÷ interpreted", "1", "", f"**{faster}**", f"{less} less CPU")
    parallel = ratio(rate.get("compiled_jobs_2"), rate.get("compiled"))
    s.row("`--jobs 2` ÷ `--jobs 1`", "", "", f"**{parallel}**", "")
    value = f"**{n(rate.get('compiled'))}** ({faster} of the interpreted build)"
    s.readme.append(("backtest of the history, events/s", value))
    value = f"**{parallel}** ({n(rate.get('compiled_jobs_2'))} ÷ {n(rate.get('compiled'))})"
    s.readme.append(("backtest `--jobs 2` ÷ `--jobs 1`", value))
    return s


def jobs(r: Results) -> Section:
    header = "replay of the history, 4 partitions | events/s, median (runs) | CPU s, median"
    s = Section("Replay, parallel jobs", header)
    j, rate, cpu = r["replay_jobs"], [], []
    for key in ("jobs_1", "jobs_2"):
        runs = j[key]["runs"]
        rate.append(j[key]["events_per_s_median"])
        cpu.append(sorted(x["cpu_seconds"] for x in runs)[len(runs) // 2])
        s.commands.append((f"`--jobs {runs[0]['jobs']}`", runs[0]["command"]))
        runs_rates = listed([x["events_per_s"] for x in runs])
        s.row(f"`--jobs {runs[0]['jobs']}`", f"**{n(rate[-1])}** ({runs_rates})", f"{cpu[-1]:.1f}")
    s.row("`--jobs 2` ÷ `--jobs 1`", f"**{ratio(rate[1], rate[0])}**", ratio(cpu[1], cpu[0]))
    value = f"**{ratio(rate[1], rate[0])}** ({n(rate[1])} ÷ {n(rate[0])} events/s)"
    s.readme.append(("replay `--jobs 2` ÷ `--jobs 1`", value))
    return s


def memory(r: Results) -> Section:
    header = "where | customers | `stored.dumps` bytes: mean, p99 | RSS per customer"
    s = Section("State size and memory", header)
    x = r["replay"]["main"]["runs"][0]
    s.commands.append(("replay, simulator stream", x["command"]))
    size, rss = x["state_bytes"], f"**{n(x['rss_per_customer_bytes'])} B**"
    s.row("replay", f"{x['customers']:,}", f"**{n(size['mean'])}**, {n(size['p99'])}", rss)
    worker = {}
    for store in ("memory", "rocksdb"):
        res = r.get("recovery", {}).get(store, {})
        if runs := [y for y in res.get("runs", []) if "rss_per_customer_bytes" in y]:
            worker[store] = runs[-1]["rss_per_customer_bytes"]
            s.commands.append((f"worker, {store} store, restored", res["command"]))
            where = f"worker on {KAFKA}, {store} store"
            s.row(where, f"{runs[-1]['customers']:,}", "–", f"**{n(worker[store])} B**")
    s.note = "Worker: its RSS once restored, minus the same with no customers, per customer."
    value = f"{n(size['mean'])} B serialized; RSS {n(x['rss_per_customer_bytes'])} B in replay"
    value += f", {n(worker['memory'])} B in a worker" if "memory" in worker else ""
    s.readme.append(("state per customer", value))
    return s


SECTIONS: list[tuple[Callable[[Results], Section], str]] = [
    (live, "live"),
    (latency, "latency"),
    (recovery, "recovery"),
    (restart, "restart"),
    (noida, "noida"),
    (replay, "replay"),
    (backtest, "backtest"),
    (jobs, "replay_jobs"),
    (memory, "replay"),
]
"""Each section, and the step of bench/run.py it needs (a run with --only has fewer)."""


def table(header: str, rows: list[str]) -> list[str]:
    return [f"| {header} |", "|" + "---|" * (header.count(" | ") + 1), *(f"| {x} |" for x in rows)]


def anchor(title: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def render(r: Results) -> tuple[str, str]:
    """(README section, full results.md)."""
    m, broker = r["machine"], {"": ""}
    short = f"{m['nproc']} CPUs {m['cpu_model']}, {m['ram_gib']} GiB, Python {m['python']}"
    short += f", commit {m['git_commit']}"
    broker[KAFKA] = f"; broker: {KAFKA} {m['kafka']}, 1 node (KRaft), {m['java']}"
    broker["noida-db"] = f"; broker: noida-db {m['packages']['noida-db']}"
    load = f"{' '.join(m['loadavg'])} at start, {' '.join(m.get('loadavg_end', ['?']))} at end"
    sizes = listed(list(r["sizes"].items()), lambda kv: f"{kv[0]} {kv[1]}")
    inputs = listed([i["command"] for i in r["inputs"].values()], lambda c: f"`{c}`")
    lines = [
        "# siyu-stream benchmark results",
        "",
        f"`make bench` (`.venv/bin/python bench/run.py{' --quick' if r['quick'] else ''}`), "
        f"{r.get('wall_seconds', 0) / 60:.1f} min, finished {r.get('finished_at', '?')}; every "
        "run's figures: [`results.json`](results.json).",
        f"Machine: {short}; load average {load}; broker, processes under test and load "
        "generator share its CPUs. "
        f"Packages: {listed(list(m['packages'].items()), ' '.join)}.",
        f"Sizes: {sizes}. Inputs: {inputs}.",
        *(f"Re-run on its own: {step}: {why}." for step, why in r.get("reruns", {}).items()),
        "",
    ]
    built = [build(r) for build, step in SECTIONS if r.get(step)]
    for s in built:
        lines += [f"## {s.title}", "", f"Machine: {short}{broker[s.broker]}."]
        if len(s.commands) == 1:
            lines.append("Command ({}): `{}`".format(*s.commands[0]))
        else:
            lines += ["", *(f"- {label}: `{cmd}`" for label, cmd in s.commands)]
        lines += ["", *table(s.header, s.rows), "", *([s.note, ""] if s.note else [])]
    if r["errors"]:
        lines += ["## Errors", "", *(f"- {k}: {v}" for k, v in r["errors"].items()), ""]
    rows = [
        f"[{fig}](bench/results.md#{anchor(s.title)}) | {v}" for s in built for fig, v in s.readme
    ]
    section = [
        "## Performance",
        "",
        f"Generated by `make bench` ({str(r.get('finished_at'))[:10]}) on {short}, load average "
        f"{load}; live figures on {broker[KAFKA].removeprefix('; broker: ')}. Every "
        "figure's command and runs: [`bench/results.md`](bench/results.md).",
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
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results.json")
    section, full = render(json.loads(path.read_text()))
    path.with_suffix(".md").write_text(full)
    if len(sys.argv) == 1:
        replace_readme_section(path.resolve().parent.parent / "README.md", section)
