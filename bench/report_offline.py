"""The sections of bench/results.md about replay and backtest (bench/replay_bench.py)."""

from __future__ import annotations

from report_cells import KAFKA, Results, Section, listed, n, ratio

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


def baseline(r: Results) -> Section:
    header = "command | code | events/s, median (runs) | µs CPU/event, median | action lines"
    s = Section("Against the code before the compiled build", header)
    figures = []
    for what, sides in r["baseline"].items():
        rate = {}
        for side, rep in sides.items():
            runs, x = rep["runs"], rep["runs"][0]
            code = f"main at {x['at']}" if x["at"] else f"this commit, {x.get('build', 'compiled')}"
            s.commands.append((f"{what}, {code}", x["command"]))
            rate[side] = rep["events_per_s_median"]
            each = f"**{n(rate[side])}** ({listed([y['events_per_s'] for y in runs])})"
            s.row(what, code, each, n(rep["cpu_us_per_event_median"]), n(x.get("actions")))
        faster = ratio(rate["now"], rate["then"])
        s.row(what, "this commit ÷ then", f"**{faster}**", "", "")
        figures.append(faster)
    s.note = (
        "Each command as `siyu-stream` runs it, start-up and imports included, in turn, over "
        "the history with one partition; the older code runs from `git archive` of its "
        "commit on this environment's libraries. Replay's action lines show both did the "
        "same work (their bytes differ: rules and texts changed since)."
    )
    s.readme.append(
        (
            "replay / backtest ÷ before the compiled build",
            " / ".join(f"**{x}**" for x in figures),
        )
    )
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
