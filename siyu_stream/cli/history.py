"""The commands over a history: `replay`, `backtest`, `bootstrap` and `check-rules`.

What decides the bytes of a run over a history (--now, --until, --partitions, --go-live)
is read and checked here, the same way for all three.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Final

import orjson

from siyu_stream.backtest import report_html, report_text
from siyu_stream.backtest.run import backtest
from siyu_stream.bootstrap import command as bootstrap_command
from siyu_stream.core.clock import format_rfc3339, parse_rfc3339
from siyu_stream.core.errors import SiyuError
from siyu_stream.core.golive import GRANT_SINCE_DAYS, GoLive, parse_go_live
from siyu_stream.core.ruleset import load_rules
from siyu_stream.observe.wall import wall_clock
from siyu_stream.replay.run import replay, summary
from siyu_stream.settings import Settings

OUT_BUFFER: Final = 1 << 20
"""The buffer of an output file (--out, --deadletter)."""


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("replay", help="run the rules offline over JSONL input events")
    p.add_argument("inputs", nargs="+", metavar="INPUT.jsonl")
    p.add_argument("--out", help="actions JSONL (default: stdout)")
    p.add_argument("--rules", help="rules TOML (default: built-in docs/design.md §4 numbers)")
    history_arguments(p, "replay")
    p.add_argument("--deadletter", help="rejected lines as JSONL (default: stderr)")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="processes, each running whole partitions (1..--partitions); the same bytes out",
    )
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser(
        "backtest", help="run two rule sets over the same history and report what differs"
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT.jsonl")
    p.add_argument(
        "--from-kafka",
        action="store_true",
        help="read the input topics' committed history from SIYU_BROKER instead of files",
    )
    p.add_argument("--rules", required=True, help="the new rules TOML")
    p.add_argument("--baseline", help="the rules to compare with (default: the built-in rules)")
    history_arguments(p, "backtest")
    p.add_argument("--out", help="write summary.json, diff.jsonl and report.html to this directory")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="2: each rule set in a process of its own (x1.6 on 2 cores); the same output",
    )
    p.set_defaults(func=cmd_backtest)

    p = sub.add_parser("bootstrap", help=bootstrap_command.HELP)
    bootstrap_command.add_arguments(p)
    p.set_defaults(func=cmd_bootstrap)

    p = sub.add_parser("check-rules", help="validate a rules TOML file")
    p.add_argument("file")
    p.set_defaults(func=cmd_check_rules)


def history_arguments(p: argparse.ArgumentParser, command: str) -> None:
    """What else decides the bytes of a run over a history (see `_history`)."""
    p.add_argument("--until", help="after the input, fire timers due up to this RFC 3339 time")
    p.add_argument(
        "--now",
        help=f"RFC 3339 time events may not be far ahead of (default: when {command} starts)",
    )
    p.add_argument(
        "--partitions",
        type=int,
        help="partitions to split customers over, as live (default: SIYU_PARTITIONS, 4)",
    )
    p.add_argument(
        "--go-live",
        help="RFC 3339 instant: gifts and reminders due before it are withheld as suppressed "
        "(before_go_live), as the worker does with SIYU_GO_LIVE",
    )
    p.add_argument(
        "--grant-since-days",
        type=int,
        default=GRANT_SINCE_DAYS,
        help=f"with --go-live: gifts earned this many days before it are still granted "
        f"(default {GRANT_SINCE_DAYS})",
    )


@contextlib.contextmanager
def _open_out(path: str | None, fallback: IO[bytes] | None) -> Iterator[IO[bytes] | None]:
    if path is None:
        yield fallback
        return
    # replay writes each step's actions as they come: with the default 8 KiB buffer the
    # kernel was asked to write every few dozen actions
    with Path(path).open("wb", buffering=OUT_BUFFER) as handle:
        yield handle


def _time(option: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        msg = f"{option}: {exc}"
        raise SiyuError(msg) from exc


def _go_live(args: argparse.Namespace) -> GoLive | None:
    """--go-live and --grant-since-days, checked."""
    if args.go_live is None:
        return None
    try:
        return parse_go_live(args.go_live, args.grant_since_days)
    except ValueError as exc:
        msg = f"--go-live {args.go_live} --grant-since-days {args.grant_since_days}: {exc}"
        raise SiyuError(msg) from exc


def _history(args: argparse.Namespace) -> tuple[int | None, int, int, list[Path]]:
    """--until, --now, --partitions and the input files of replay and backtest, checked."""
    until = _time("--until", args.until)
    now = _time("--now", args.now)
    if now is None:
        now = wall_clock()
    partitions = args.partitions
    if partitions is None:  # as the worker that the same environment configures
        partitions = Settings.from_env(api_auth=False).partitions
    if partitions < 1:
        msg = f"--partitions: expected >= 1, got {partitions}"
        raise SiyuError(msg)
    paths = [Path(p) for p in args.inputs]
    for path in paths:
        if not path.is_file():
            msg = f"{path}: no such input file"
            raise SiyuError(msg)
    return until, now, partitions, paths


def cmd_replay(args: argparse.Namespace) -> int:
    rules = load_rules(args.rules).going_live(_go_live(args))
    until, now, partitions, paths = _history(args)
    if not 1 <= args.jobs <= partitions:
        msg = f"--jobs: expected 1..{partitions} (at most one job per partition), got {args.jobs}"
        raise SiyuError(msg)
    started = time.monotonic()
    with (
        _open_out(args.out, sys.stdout.buffer) as out,
        _open_out(args.deadletter, None) as deadletters,
    ):
        assert out is not None
        counts = replay(
            paths,
            out,
            rules,
            until=until,
            now=now,
            partitions=partitions,
            deadletters=deadletters,
            progress=sys.stderr,
            jobs=args.jobs,
        )
        out.flush()
    print(summary(counts, time.monotonic() - started), file=sys.stderr)
    print(
        f"replay: --now {format_rfc3339(now)} --partitions {partitions} "
        "(the same values reproduce these bytes)",
        file=sys.stderr,
    )
    return 0


def _kafka_history(stack: contextlib.ExitStack) -> tuple[list[Path], list[str]]:
    """The input topics' committed history (SIYU_BROKER, SIYU_TOPIC_PREFIX) copied to files
    that live as long as `stack`; returns them and their names for the summary."""
    from siyu_stream.kafka.history import snapshot  # noqa: PLC0415 - pulls in aiokafka
    from siyu_stream.topology import Topology  # noqa: PLC0415

    settings = Settings.from_env(api_auth=False)
    topics = Topology(settings).inputs
    directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="siyu-kafka-")))
    paths = asyncio.run(snapshot(settings.kafka, topics, directory, sys.stderr))
    return paths, [f"kafka {settings.broker}: {topic}" for topic in topics]


def cmd_backtest(args: argparse.Namespace) -> int:
    # both rules files first: a bad key is named before any input is read
    go_live = _go_live(args)
    baseline = load_rules(args.baseline).going_live(go_live)
    new = load_rules(args.rules).going_live(go_live)
    if bool(args.inputs) == args.from_kafka:
        msg = "give either input files or --from-kafka"
        raise SiyuError(msg)
    until, now, partitions, paths = _history(args)
    if args.jobs not in {1, 2}:
        msg = f"--jobs: expected 1 or 2 (one process per rule set), got {args.jobs}"
        raise SiyuError(msg)
    out = Path(args.out) if args.out is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    inputs = args.inputs
    with contextlib.ExitStack() as stack:
        if args.from_kafka:
            paths, inputs = _kafka_history(stack)
        diff_out = stack.enter_context(_open_out(str(out / "diff.jsonl") if out else None, None))
        result = backtest(
            paths,
            baseline,
            new,
            now=now,
            until=until,
            partitions=partitions,
            diff_out=diff_out,
            progress=sys.stderr,
            jobs=args.jobs,
        )
    run = {
        "inputs": inputs,
        "baseline_rules": args.baseline or "built-in rules",
        "new_rules": args.rules,
        "now": format_rfc3339(now),
        "until": format_rfc3339(until) if until is not None else None,
        "partitions": partitions,
    }
    if go_live is not None:
        run["go_live"] = format_rfc3339(go_live.at)
        run["grant_since_days"] = args.grant_since_days
    summary = {"run": run, **result}
    print(report_text.render(summary))
    if out is not None:
        (out / "summary.json").write_bytes(
            orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n"
        )
        (out / "report.html").write_text(report_html.render(summary), encoding="utf-8")
        print(f"wrote {out}/summary.json, {out}/diff.jsonl, {out}/report.html", file=sys.stderr)
    print(f"backtest: {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from siyu_stream.bootstrap.runner import run  # noqa: PLC0415 - pulls in aiokafka

    if not args.inputs and not args.from_kafka:
        msg = "give history files, --from-kafka, or both"
        raise SiyuError(msg)
    _, now, partitions, paths = _history(args)
    settings = Settings.from_env(api_auth=False, partitions=partitions)
    rules = load_rules(args.rules or settings.rules).going_live(_go_live(args))
    run(settings, rules, paths, from_kafka=args.from_kafka, start=args.start, now=now)
    return 0


def cmd_check_rules(args: argparse.Namespace) -> int:
    rules = load_rules(args.file)
    thresholds = ", ".join(f"{t:,}" for t in rules.spend_tier.thresholds_yuan)
    print(f"{args.file}: ok (tiers at {thresholds} yuan, time zone {rules.engine.timezone})")
    return 0
