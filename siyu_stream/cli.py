"""`siyu-stream` command line: thin wrappers, one function per subcommand."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from siyu_stream.clock import parse_rfc3339
from siyu_stream.errors import SiyuError
from siyu_stream.replay import replay, summary
from siyu_stream.ruleset import load_rules


@contextlib.contextmanager
def _open_out(path: str | None, fallback: IO[bytes] | None) -> Iterator[IO[bytes] | None]:
    if path is None:
        yield fallback
        return
    with Path(path).open("wb") as handle:
        yield handle


def cmd_replay(args: argparse.Namespace) -> int:
    rules = load_rules(args.rules)
    until = None
    if args.until is not None:
        try:
            until = parse_rfc3339(args.until)
        except ValueError as exc:
            msg = f"--until: {exc}"
            raise SiyuError(msg) from exc
    paths = [Path(p) for p in args.inputs]
    for path in paths:
        if not path.is_file():
            msg = f"{path}: no such input file"
            raise SiyuError(msg)
    started = time.monotonic()
    with (
        _open_out(args.out, sys.stdout.buffer) as out,
        _open_out(args.deadletter, None) as deadletters,
    ):
        assert out is not None
        counts = replay(
            paths, out, rules, until=until, deadletters=deadletters, progress=sys.stderr
        )
        out.flush()
    print(summary(counts, time.monotonic() - started), file=sys.stderr)
    return 0


def cmd_check_rules(args: argparse.Namespace) -> int:
    rules = load_rules(args.file)
    thresholds = ", ".join(f"{t:,}" for t in rules.spend_tier.thresholds_yuan)
    print(f"{args.file}: ok (tiers at {thresholds} yuan, time zone {rules.engine.timezone})")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from siyu_stream.simulate import SimConfig, generate, write_jsonl  # noqa: PLC0415 - keep CLI start fast

    if args.customers < 1 or args.rate <= 0:
        msg = "--customers must be >= 1 and --rate > 0"
        raise SiyuError(msg)
    limit = args.events
    if limit is None and args.duration is not None:
        limit = int(args.rate * args.duration)
    cfg = SimConfig(customers=args.customers, rate=args.rate, seed=args.seed)
    if args.out is not None:
        if limit is None:
            msg = "--out needs --events or --duration (a file cannot be endless)"
            raise SiyuError(msg)
        counts = write_jsonl(generate(cfg, limit), Path(args.out))
        print(f"simulate: {counts}", file=sys.stderr)
        return 0
    from siyu_stream.traffic import simulate_to_kafka  # noqa: PLC0415 - pulls in aiokafka

    return simulate_to_kafka(cfg, limit=limit, broker=args.broker)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="siyu-stream", description="Customer-lifecycle rules for private-domain commerce."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("replay", help="run the rules offline over JSONL input events")
    p.add_argument("inputs", nargs="+", metavar="INPUT.jsonl")
    p.add_argument("--out", help="actions JSONL (default: stdout)")
    p.add_argument("--rules", help="rules TOML (default: built-in DESIGN §4 numbers)")
    p.add_argument("--until", help="after the input, fire timers due up to this RFC 3339 time")
    p.add_argument("--deadletter", help="rejected lines as JSONL (default: stderr)")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("simulate", help="realistic synthetic orders, chats and joins")
    p.add_argument("--customers", type=int, default=1000)
    p.add_argument("--rate", type=float, default=50.0, help="events per second")
    p.add_argument("--duration", type=float, help="seconds of traffic (default: endless)")
    p.add_argument("--events", type=int, help="number of events (instead of --duration)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", help="write JSONL here (replay input) instead of producing to Kafka")
    p.add_argument("--broker", help="Kafka bootstrap servers (default: SIYU_BROKER)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("check-rules", help="validate a rules TOML file")
    p.add_argument("file")
    p.set_defaults(func=cmd_check_rules)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
