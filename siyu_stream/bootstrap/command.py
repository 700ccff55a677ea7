"""`siyu-stream bootstrap`: its arguments. The run is `runner`, imported only when the
command runs, so that the CLI loads no Kafka client at start."""

from __future__ import annotations

import argparse

from siyu_stream.core.golive import GRANT_SINCE_DAYS

HELP = "build every customer's state from a history and go live on it (docs/go-live.md)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", metavar="HISTORY.jsonl")
    p.add_argument(
        "--from-kafka",
        action="store_true",
        help="also read the input topics' committed history, up to the offsets committed",
    )
    p.add_argument("--go-live", required=True, help="RFC 3339 instant the brand goes live at")
    p.add_argument(
        "--grant-since-days",
        type=int,
        default=GRANT_SINCE_DAYS,
        help=f"gifts earned this many days before go-live are still granted "
        f"(default {GRANT_SINCE_DAYS})",
    )
    p.add_argument(
        "--start",
        choices=["end", "go-live"],
        default="end",
        help="where workers start reading the input topics: their end now (default), or "
        "their first record stamped at or after --go-live",
    )
    p.add_argument("--rules", help="rules TOML (default: SIYU_RULES, as the worker)")
    p.add_argument("--now", help="RFC 3339 time events may not be far ahead of (default: now)")
    p.add_argument(
        "--partitions",
        type=int,
        help="partitions of the topics (default: SIYU_PARTITIONS); must match the topics",
    )
    p.set_defaults(until=None)  # the shared history checks read it; a bootstrap has none
