"""The commands that run something: `simulate`, `worker`, `notify`, `broker`, `topics`,
`demo`, and the checks and tables beside them. Each imports what talks to Kafka only
when it runs, so that `replay` and `--help` start without loading a Kafka client.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from pathlib import Path

from siyu_stream.core.errors import SiyuError
from siyu_stream.core.ruleset import load_rules
from siyu_stream.settings import Settings

WORKER_YOUNG_OBJECTS = 500_000
"""The worker's threshold of the collector's youngest generation (`tune_gc`: 50,000).

A batch's objects (consumed records, events, outputs, states) live until its commit, and
a young collection traverses them and what they reference: at 50,000 the worker spent
~4 % of its CPU after startup collecting (measured through gc.callbacks: 0.22 s of ~5 s
per 30,000 events of the live bench), at 500,000 none ran in those events. Reference
counting frees a batch's objects either way; cycles are collected after more allocations."""


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    gc.set_threshold(WORKER_YOUNG_OBJECTS, *gc.get_threshold()[1:])

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
    from siyu_stream.kafka.serve import pick_engine, serve_kafka, until_stopped  # noqa: PLC0415

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
    until_stopped()
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
