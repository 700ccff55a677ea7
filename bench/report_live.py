"""The sections of bench/results.md about the live worker: throughput, latency, recovery,
restarts (bench/live_bench.py, bench/recovery_bench.py)."""

from __future__ import annotations

from typing import Any

from report_cells import KAFKA, Results, Section, listed, n, ratio

GUARANTEES = ("at_least_once", "exactly_once")
WHO = {"raw-1": "raw aiokafka", "worker-1": "1 worker", "worker-2": "2 workers"}
WHO |= {"faust-1": "Faust peer", "kstreams-1": "Kafka Streams peer"}


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
