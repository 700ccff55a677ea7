"""`siyu-stream` command line: thin wrappers, one function per subcommand."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

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


@contextlib.contextmanager
def _open_out(path: str | None, fallback: IO[bytes] | None) -> Iterator[IO[bytes] | None]:
    if path is None:
        yield fallback
        return
    with Path(path).open("wb") as handle:
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


def cmd_simulate(args: argparse.Namespace) -> int:
    from siyu_stream.simulate import SimConfig, generate, history, write_jsonl  # noqa: PLC0415 - keep CLI start fast

    if (args.customers is not None and args.customers < 1) or args.rate <= 0:
        msg = "--customers must be >= 1 and --rate > 0"
        raise SiyuError(msg)
    limit = args.events
    if limit is None and args.duration is not None:
        limit = int(args.rate * args.duration)
    cfg = SimConfig(customers=args.customers or 1000, rate=args.rate, seed=args.seed)
    if args.days is not None:
        if limit is None or args.out is None or args.days <= 0:
            msg = "--days needs N > 0, --events and --out (a history is written to a file)"
            raise SiyuError(msg)
        cfg = history(limit, args.days, customers=args.customers, seed=args.seed)
    if args.out is not None:
        if limit is None:
            msg = "--out needs --events or --duration (a file cannot be endless)"
            raise SiyuError(msg)
        counts = write_jsonl(generate(cfg, limit), Path(args.out))
        print(f"simulate: {counts}", file=sys.stderr)
        return 0
    from siyu_stream.traffic import simulate_to_kafka  # noqa: PLC0415 - pulls in aiokafka

    return simulate_to_kafka(cfg, limit=limit, broker=args.broker)


def _settings(args: argparse.Namespace, **overrides: object) -> Settings:
    if getattr(args, "broker", None):
        overrides["broker"] = args.broker
    return Settings.from_env(None, **overrides)


def cmd_worker(args: argparse.Namespace) -> int:
    from siyu_stream.live.worker import Worker  # noqa: PLC0415 - pulls in aiokafka

    settings = _settings(args)
    rules = load_rules(settings.rules).going_live(settings.launch)
    level = settings.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def run() -> None:
        worker = Worker(settings, rules)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()

    asyncio.run(run())
    return 0


def cmd_notify(args: argparse.Namespace) -> int:
    from siyu_stream.notify.config import load_config  # noqa: PLC0415
    from siyu_stream.notify.loop import Notifier  # noqa: PLC0415 - pulls in aiokafka

    config = load_config(args.config)  # a bad file is named before anything connects
    settings = _settings(args, api_auth=False)  # the notifier serves no customer data
    level = settings.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def run() -> None:
        notifier = Notifier(settings, config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, notifier.stop)
        await notifier.run()

    asyncio.run(run())
    return 0


def cmd_check_notify(args: argparse.Namespace) -> int:
    from siyu_stream.notify.config import load_config  # noqa: PLC0415

    config = load_config(args.file)
    sinks = ", ".join(f"{s.name} ({s.type})" for s in config.sinks)
    print(f"{args.file}: ok (sinks {sinks})")
    return 0


def cmd_broker(args: argparse.Namespace) -> int:
    from siyu_stream.kafka.embedded import LocalBroker  # noqa: PLC0415
    from siyu_stream.kafka.serve import pick_engine, serve_kafka  # noqa: PLC0415

    if pick_engine(args.engine, nodes=args.nodes, sasl=args.sasl) == "kafka":
        data_dir = Path(args.data_dir or ".siyu/kafka")
        return serve_kafka(data_dir, args.port, nodes=args.nodes, sasl=args.sasl)
    data_dir = Path(args.data_dir or ".siyu/broker")
    broker = LocalBroker(data_dir, args.port)
    broker.start()
    print(f"{broker.bootstrap}", flush=True)
    print(
        f"noida-db running (data {data_dir}, log {broker.log_path}); Ctrl-C stops it",
        file=sys.stderr,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    broker.stop()
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from siyu_stream.kafka.admin import describe_topics, ensure_topics  # noqa: PLC0415
    from siyu_stream.topology import Topology  # noqa: PLC0415

    settings = _settings(args, api_auth=False)
    specs = Topology(settings).specs()
    if args.action == "create":
        created = asyncio.run(ensure_topics(settings.kafka, specs))
        print(f"created {len(created)} of {len(specs)} topics: {', '.join(created) or '-'}")
        return 0
    for info in asyncio.run(describe_topics(settings.kafka, [s.name for s in specs])):
        state = f"{info.partitions} partitions" if info.partitions else "missing"
        print(f"{info.name:40} {state:>14} {info.end_offsets:>12,} records")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from siyu_stream.demo import run_demo  # noqa: PLC0415

    asyncio.run(
        run_demo(
            Path(args.workdir),
            customers=args.customers,
            rate=args.rate,
            duration=args.duration,
            every=args.every,
            out=sys.stdout,
        )
    )
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    from siyu_stream.settings import describe  # noqa: PLC0415

    print("| variable | default | meaning |\n|---|---|---|")
    for env, default, doc in describe():
        print(f"| `{env}` | `{default}` | {doc} |")
    return 0


def _history_arguments(p: argparse.ArgumentParser, command: str) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="siyu-stream", description="Customer-lifecycle rules for private-domain commerce."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("replay", help="run the rules offline over JSONL input events")
    p.add_argument("inputs", nargs="+", metavar="INPUT.jsonl")
    p.add_argument("--out", help="actions JSONL (default: stdout)")
    p.add_argument("--rules", help="rules TOML (default: built-in docs/design.md §4 numbers)")
    _history_arguments(p, "replay")
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
    _history_arguments(p, "backtest")
    p.add_argument("--out", help="write summary.json, diff.jsonl and report.html to this directory")
    p.set_defaults(func=cmd_backtest)

    p = sub.add_parser("bootstrap", help=bootstrap_command.HELP)
    bootstrap_command.add_arguments(p)
    p.set_defaults(func=cmd_bootstrap)

    p = sub.add_parser("simulate", help="realistic synthetic orders, chats and joins")
    p.add_argument("--customers", type=int, help="default 1000; with --days, enough to fill N days")
    p.add_argument("--rate", type=float, default=50.0, help="events per second")
    p.add_argument("--duration", type=float, help="seconds of traffic (default: endless)")
    p.add_argument("--events", type=int, help="number of events (instead of --duration)")
    p.add_argument("--days", type=float, help="a purchase history: --events over N days")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", help="write JSONL here (replay input) instead of producing to Kafka")
    p.add_argument("--broker", help="Kafka bootstrap servers (default: SIYU_BROKER)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("worker", help="run a stream worker (settings from SIYU_* variables)")
    p.add_argument("--broker", help="Kafka bootstrap servers (default: SIYU_BROKER)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser(
        "notify", help="deliver gifts and reminders to WeCom robots and webhooks (docs/notify.md)"
    )
    p.add_argument("--config", required=True, help="the notify TOML file")
    p.add_argument("--broker", help="Kafka bootstrap servers (default: SIYU_BROKER)")
    p.set_defaults(func=cmd_notify)

    p = sub.add_parser("check-notify", help="validate a notify TOML file")
    p.add_argument("file")
    p.set_defaults(func=cmd_check_notify)

    p = sub.add_parser("broker", help="start a local broker: Apache Kafka, or noida-db")
    p.add_argument("--port", type=int, default=9092, help="the (first) node's client port")
    p.add_argument("--data-dir", help="default .siyu/kafka or .siyu/broker (embedded)")
    p.add_argument(
        "--engine",
        choices=["kafka", "embedded"],
        help="kafka: Apache Kafka (make kafka-jars), embedded: noida-db; "
        "default kafka where a Java >= 17 is found",
    )
    p.add_argument("--nodes", type=int, default=1, help="Kafka nodes (broker+controller each)")
    p.add_argument("--sasl", action="store_true", help="Kafka: add a SASL_SSL SCRAM listener")
    p.set_defaults(func=cmd_broker)

    p = sub.add_parser("topics", help="create or describe every topic siyu-stream uses")
    p.add_argument("action", choices=["create", "describe"])
    p.add_argument("--broker", help="Kafka bootstrap servers (default: SIYU_BROKER)")
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("demo", help="local broker + worker + simulator with a live summary")
    p.add_argument("--customers", type=int, default=2_000)
    p.add_argument("--rate", type=float, default=200.0, help="events per second")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--every", type=float, default=5.0, help="seconds between summary lines")
    p.add_argument("--workdir", default=".siyu/demo")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("settings", help="print the worker settings table (Markdown)")
    p.set_defaults(func=cmd_settings)

    p = sub.add_parser("check-rules", help="validate a rules TOML file")
    p.add_argument("file")
    p.set_defaults(func=cmd_check_rules)
    return parser


def tune_gc() -> None:
    """Run the cycle collector ~70x less often than CPython's default (700 allocations).

    The engine allocates several small container objects per event and keeps no reference
    cycles (over 500k replayed events the collector found 0 garbage), so the default
    thresholds only re-scanned the live customer states: measured ~30 % of replay time.
    Refcounting still frees everything at once; cycles (asyncio, exceptions) are still
    collected, only later.
    """
    gc.set_threshold(50_000, 20, 100)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_gc()
    try:
        code: int = args.func(args)
    except SiyuError as exc:
        print(f"siyu-stream {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
