"""Where the time goes (profiles of replay, the adapter and the live worker) and what
would remove what is left."""

from __future__ import annotations

from typing import Any

from figures import lookup

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


def replay_hotspots(r: dict[str, Any]) -> str:
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
            "event costs about 130 Python-level calls (cProfile: 25.9M calls for 200k "
            "events; decode, validate, copy, rules, ids, JSON out). Compiling the core with "
            "mypyc (it is mypy-strict already) was tried: byte-identical output, 1.2× "
            "faster, not worth a C build in every install. The "
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


def live_hotspots(r: dict[str, Any]) -> str:
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
    live = lookup(r, "live", "sim", "summary")
    runs = lookup(r, "live", "sim", "runs") or []
    if live:
        w = lookup(live, "worker-1-at_least_once", "process_cpu_us_per_event_median")
        raw = lookup(live, "raw-1-at_least_once", "process_cpu_us_per_event_median")
        b = lookup(live, "worker-1-at_least_once", "broker_cpu_us_per_event_median")
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


def worker_profile_section(r: dict[str, Any]) -> str:
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
