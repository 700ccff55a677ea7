"""Backtest a rule change: two rule sets over one history, and what differs between them.

Both runs are replay's: a `Merge` per rule set drives its own `Engine` over the same lines
(decoded once when both rule sets decode alike, i.e. have the same `[input]` section), and
the two merges advance in lockstep, so the lines one has read and the other not yet stay
within replay's look-ahead. Each engine's sink is a `Tally`, which keeps only numbers that
grow with customers, staff and days (never a list of actions) and spills the actions to
disk for the diff (`actiondiff`). The result is one plain `summary` dict: the terminal
text, summary.json and report.html are all rendered from it.
"""

from __future__ import annotations

import dataclasses
import itertools
import pickle
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import IO, Any

from siyu_stream.backtest.diff import Differences, Spill, diff, spill_dir
from siyu_stream.backtest.tally import Calendar, Tally, monday, percentiles
from siyu_stream.core.clock import Millis
from siyu_stream.core.errors import BacktestError
from siyu_stream.core.ruleset import RULE_SECTIONS, TIERS, Rules
from siyu_stream.core.schemas import build_input_decoders
from siyu_stream.core.state import LAYERS
from siyu_stream.core.step import TRACKED
from siyu_stream.replay.engine import Engine, MemoryStore
from siyu_stream.replay.jobs import ends_by_exit, join_all, leave_to_exit
from siyu_stream.replay.run import Line, Merge, collector_paused, merged

KINDS = ("gift", "reminder", "change", "suppressed")
ORDER = {"layer": LAYERS, "tier": TIERS, "health": ("active", "at_risk", "dormant", "lost")}
ORDER["membership"] = ("none", "active", "expired")


@dataclasses.dataclass
class _Run:
    rules: Rules
    engine: Engine
    tally: Tally


@dataclasses.dataclass
class Figures:
    """A `Tally`'s numbers, as the summary reads them (a plain record: it pickles)."""

    actions: Counter[tuple[str, str]]
    per_day: Counter[tuple[date, str]]
    gift_fen: Counter[str]
    gift_count: Counter[str]
    gift_week: Counter[date]
    staff_day: Counter[tuple[str, date]]
    unassigned: int
    suppressed: Counter[str]
    peak: dict[str, int]

    @classmethod
    def of(cls, tally: Tally) -> Figures:
        return cls(
            Counter(tally.actions),
            Counter(tally.per_day),
            Counter(tally.gift_fen),
            Counter(tally.gift_count),
            Counter(tally.gift_week),
            Counter(tally.staff_day),
            tally.unassigned,
            Counter(tally.suppressed),
            tally.peak,
        )


@dataclasses.dataclass
class _Ran:
    """What the summary reads of one rule set's run. A `jobs=2` process sends back all of
    it but the rules, pickled (the compiled build cannot unpickle a frozen class); the
    engine's states stay in the process that built them."""

    rules: Rules
    outcomes: dict[str, int]
    population: dict[str, dict[str, int]]
    tally: Figures
    spilled: list[Path]
    """The run's actions: sorted files of its `Spill`, for the diff."""

    @classmethod
    def of(cls, run: _Run) -> _Ran:
        run.tally.spill.finish()
        return cls(
            run.rules,
            _outcomes(run.engine),
            _population(run.engine),
            Figures.of(run.tally),
            list(run.tally.spill.files),
        )


def _noop(line: Line, reason: str) -> None:
    """Rejected lines are counted by the engine's stats; `replay --deadletter` lists them."""


def _drive(paths: list[Path], runs: list[_Run], progress: IO[str] | None) -> None:
    if all(run.rules.input == runs[0].rules.input for run in runs):
        streams: tuple[Iterator[Line], ...] = itertools.tee(merged(paths, runs[0].rules), len(runs))
    else:  # decoding reads [input]: each rule set decodes the lines its own way
        streams = tuple(merged(paths, run.rules) for run in runs)
    steps = [Merge(r.engine, lines, _noop).run() for r, lines in zip(runs, streams, strict=True)]
    started = last = time.monotonic()
    while steps:
        for step in list(steps):
            read = next(step, None)
            if read is None:
                steps.remove(step)
            elif progress is not None and time.monotonic() - last >= 2.0:
                last = time.monotonic()
                progress.write(f"backtest: {read:,} lines, {last - started:.0f} s\n")


def backtest(
    paths: list[Path],
    baseline: Rules,
    new: Rules,
    *,
    now: Millis,
    until: Millis | None = None,
    partitions: int = 1,
    diff_out: IO[bytes] | None = None,
    progress: IO[str] | None = None,
    jobs: int = 1,
) -> dict[str, Any]:
    """Both rule sets over `paths`; writes the differences to `diff_out` and returns the
    summary (see `summary`). `jobs=2` runs each rule set in a process of its own (each
    reads and decodes the input itself): the same summary and differences."""
    calendar = Calendar(new.zone)
    differences = Differences()
    named = (("baseline", baseline), ("new", new))
    with spill_dir() as tmp, collector_paused():
        directory = Path(tmp)

        def run(which: list[tuple[str, Rules]], report: IO[str] | None) -> list[_Ran]:
            runs = []
            for name, rules in which:
                tally = Tally(calendar, Spill(directory, name))
                engine = Engine(rules, MemoryStore(), tally, partitions=partitions, now=now)
                runs.append(_Run(rules, engine, tally))
            _drive(paths, runs, report)
            for one in runs:
                one.engine.advance(until)
            leave_to_exit(runs)
            return [_Ran.of(one) for one in runs]

        ran = run(list(named), progress) if jobs == 1 else _apart(named, run, directory, progress)
        diff(
            Spill.of(directory, "baseline", ran[0].spilled),
            Spill.of(directory, "new", ran[1].spilled),
            diff_out,
            differences.told,
        )
    return summary(ran[0], ran[1], differences, calendar)


def _apart(
    named: tuple[tuple[str, Rules], ...],
    run: Callable[[list[tuple[str, Rules]], IO[str] | None], list[_Ran]],
    directory: Path,
    progress: IO[str] | None,
) -> list[_Ran]:
    """`run` each rule set in a forked process; their results, in `named` order."""
    context = get_context("fork")
    build_input_decoders()  # once, before the runs fork, instead of once in each

    def main(index: int) -> None:
        ends_by_exit()  # a forked process: multiprocessing ends it with os._exit
        report = progress if index == 0 else None  # one progress line, not two interleaved
        (ran,) = run([named[index]], report)
        sent = (ran.outcomes, ran.population, ran.tally, ran.spilled)
        with (directory / f"ran-{index}").open("wb") as handle:
            pickle.dump(sent, handle, protocol=pickle.HIGHEST_PROTOCOL)

    processes = [
        context.Process(target=main, args=(i,), name=f"backtest-{name}")
        for i, (name, _) in enumerate(named)
    ]
    for process in processes:
        process.start()
    failed = join_all(processes)
    if failed is not None:
        msg = f"{failed.name} failed (exit {failed.exitcode}); its error is above"
        raise BacktestError(msg)
    found = []
    for index, (_, rules) in enumerate(named):
        with (directory / f"ran-{index}").open("rb") as handle:
            sent = pickle.load(handle)  # written by our own process above
        found.append(_Ran(rules, *sent))
    return found


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def rule_changes(baseline: Rules, new: Rules) -> list[dict[str, Any]]:
    """Every rules key whose value differs, as `section.key` with both values."""
    found = []
    for name in RULE_SECTIONS:
        old, now = getattr(baseline, name), getattr(new, name)
        if isinstance(old, dict):
            keys = sorted({*old, *now})
            pairs = [(k, old.get(k), now.get(k)) for k in keys]
        else:
            pairs = [
                (f.name, getattr(old, f.name), getattr(now, f.name))
                for f in dataclasses.fields(old)
            ]
        found += [
            {"key": f"{name}.{key}", "baseline": _plain(a), "new": _plain(b)}
            for key, a, b in pairs
            if a != b
        ]
    return found


def _series(runs: dict[str, _Ran]) -> dict[str, Any]:
    """The charts' numbers: every day (and week) from the first to the last, zeros included."""
    days = {d for r in runs.values() for d, _ in r.tally.per_day}
    days |= {d for r in runs.values() for _, d in r.tally.staff_day}
    if not days:
        return {
            "days": [],
            "actions_per_day": {},
            "weeks": [],
            "gift_fen_per_week": {},
            "staff_max_per_day": {},
        }
    axis = [min(days) + timedelta(days=i) for i in range((max(days) - min(days)).days + 1)]
    weeks = [
        monday(axis[0]) + timedelta(weeks=i)
        for i in range((monday(axis[-1]) - monday(axis[0])).days // 7 + 1)
    ]
    busiest = {}
    for name, run in runs.items():
        top: Counter[date] = Counter()
        for (_, day), n in run.tally.staff_day.items():
            top[day] = max(top[day], n)
        busiest[name] = [top[d] for d in axis]
    return {
        "days": [d.isoformat() for d in axis],
        "actions_per_day": {
            kind: {name: [r.tally.per_day[(d, kind)] for d in axis] for name, r in runs.items()}
            for kind in KINDS
        },
        "weeks": [w.isoformat() for w in weeks],
        "gift_fen_per_week": {
            name: [r.tally.gift_week[w] for w in weeks] for name, r in runs.items()
        },
        "staff_max_per_day": busiest,
    }


def _population(engine: Engine) -> dict[str, dict[str, int]]:
    counts: Counter[tuple[str, str]] = Counter()
    for _, state in engine.store.items():
        for name in TRACKED:
            counts[(name, str(getattr(state, name)))] += 1
    found = {}
    for name in TRACKED:
        seen = sorted(v for n, v in counts if n == name and v not in ORDER[name])
        found[name] = {v: counts[(name, v)] for v in (*ORDER[name], *seen)}
    return found


def _gift_row(code: str, counts: tuple[int, int], fen: tuple[int, int]) -> dict[str, Any]:
    return {
        "code": code,
        "baseline_count": counts[0],
        "new_count": counts[1],
        "baseline_fen": fen[0],
        "new_fen": fen[1],
        "delta_fen": fen[1] - fen[0],
        "delta_percent": round((fen[1] - fen[0]) * 100 / fen[0], 1) if fen[0] else None,
    }


def _gift_rows(old: Figures, new: Figures) -> list[dict[str, Any]]:
    """Per gift code, then the total: how many and their value in fen, both runs."""
    rows = [
        _gift_row(
            code,
            (old.gift_count[code], new.gift_count[code]),
            (old.gift_fen[code], new.gift_fen[code]),
        )
        for code in sorted({*old.gift_fen, *new.gift_fen})
    ]
    total = _gift_row(
        "total",
        (old.gift_count.total(), new.gift_count.total()),
        (old.gift_fen.total(), new.gift_fen.total()),
    )
    return [*rows, total]


def _outcomes(engine: Engine) -> dict[str, int]:
    found = engine.stats.by_outcome()
    return {outcome: found[outcome] for outcome in ("ok", "duplicate", "rejected")}


def summary(
    baseline: _Ran, new: _Ran, differences: Differences, calendar: Calendar
) -> dict[str, Any]:
    """Every number of the report, as plain JSON data (money in fen)."""
    runs = {"baseline": baseline, "new": new}
    by_row = differences.by_row
    rows = sorted({*baseline.tally.actions, *new.tally.actions, *((r, k) for r, k, _ in by_row)})
    reasons = sorted({*baseline.tally.suppressed, *new.tally.suppressed})
    groups = []
    for (rule, change, what), group in differences.groups.items():
        groups.append(
            {
                "rule": rule,
                "change": change,
                "what": what,
                "actions": group["actions"],
                "customers": len(group["customers"]),
                "examples": group["examples"],
            }
        )
    groups.sort(key=lambda g: (-g["actions"], g["rule"], g["change"], g["what"]))
    totals: Counter[str] = Counter()
    for (_, _, change), n in by_row.items():
        totals[change] += n
    return {
        "zone": calendar.zone.key,
        "rules_version": {n: r.rules.version for n, r in runs.items()},
        "rule_changes": rule_changes(baseline.rules, new.rules),
        "events": {n: r.outcomes for n, r in runs.items()},
        "differences_total": {
            **{c: totals[c] for c in ("added", "removed", "changed")},
            "customers": len(differences.customers),
        },
        "actions": [
            {
                "rule": rule,
                "kind": kind,
                "baseline": baseline.tally.actions[(rule, kind)],
                "new": new.tally.actions[(rule, kind)],
                **{c: by_row[(rule, kind, c)] for c in ("added", "removed", "changed")},
            }
            for rule, kind in rows
        ],
        "gift_cost": _gift_rows(baseline.tally, new.tally),
        "customer_reminders_7d": {
            n: {"customers": len(r.tally.peak), **percentiles(list(r.tally.peak.values()))}
            for n, r in runs.items()
        },
        "suppressed": {
            n: {reason: r.tally.suppressed[reason] for reason in reasons} for n, r in runs.items()
        },
        "staff_reminders_per_day": {
            n: {
                "staff": len({s for s, _ in r.tally.staff_day}),
                **percentiles(list(r.tally.staff_day.values())),
                "unassigned": r.tally.unassigned,
            }
            for n, r in runs.items()
        },
        "population": {n: r.population for n, r in runs.items()},
        "differences": groups,
        "series": _series(runs),
    }
