"""`siyu-stream` command line: thin wrappers, one function per subcommand, in two rooms:
commands over a history (`history`) and commands that run something (`running`)."""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from siyu_stream.cli import history, running
from siyu_stream.core.errors import SiyuError
from siyu_stream.replay.jobs import ends_by_exit, left_to_exit


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="siyu-stream", description="Customer-lifecycle rules for private-domain commerce."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    history.add_commands(sub)
    running.add_commands(sub)
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


def entry() -> NoReturn:
    """The `siyu-stream` program and `python -m siyu_stream.cli`: `main`, then the end of
    the process, at once when the command left its run to it.

    Replay and backtest end with every customer's state alive. Freeing them one by one
    took 3-7 % of a replay, and the interpreter's final collection walks them all if they
    are kept, only to hand memory back that the system takes back whole at the exit
    (clang's -disable-free, for the same reason). So the program promises to end by
    os._exit, those commands leave their runs to it (`jobs.leave_to_exit`; every file
    they write is closed before they return), and it flushes the standard streams
    itself. `main` in a process that goes on (tests) keeps nothing and frees as usual."""
    ends_by_exit()
    code = main()
    if not left_to_exit():
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # the reader went away: the status the interpreter's own exit gives
        os._exit(120)
    os._exit(code)
