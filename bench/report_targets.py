"""The section of bench/results.md that holds the run's figures to the compiled core's
speed targets: each a ratio of two figures measured in this run, as in the other sections."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from report_cells import Results, Section

DESIGN: Final = "../docs/design.md#the-speed-targets-and-what-the-missed-ones-would-take"


def _rate(side: dict[str, dict[str, float]], key: str) -> float:
    return side[key]["events_per_s_median"]


def _worker(r: Results) -> float:
    summary = r["live"]["sim"]["summary"]
    return _rate(summary, "worker-1-at_least_once") / _rate(summary, "raw-1-at_least_once")


TARGETS: Final[tuple[tuple[str, float, int, Callable[[Results], float]], ...]] = (
    (
        "1 worker ÷ raw aiokafka, at_least_once, whole run",
        0.5,
        2,
        _worker,
    ),
    (
        "replay ÷ raw JSON pipe, history",
        0.06,
        3,
        lambda r: r["replay"]["history"]["pipe_ratio_median"],
    ),
    (
        "replay ÷ raw JSON pipe, simulator stream",
        0.15,
        3,
        lambda r: r["replay"]["main"]["pipe_ratio_median"],
    ),
    (
        "replay `--jobs 2` ÷ `--jobs 1`",
        1.6,
        2,
        lambda r: _rate(r["replay_jobs"], "jobs_2") / _rate(r["replay_jobs"], "jobs_1"),
    ),
    (
        "replay of the history, compiled ÷ interpreted",
        4.0,
        2,
        lambda r: _rate(r["replay"], "history") / _rate(r["replay_interpreted"], "history"),
    ),
    (
        "backtest, compiled ÷ interpreted",
        3.0,
        2,
        lambda r: _rate(r["backtest"], "compiled") / _rate(r["backtest"], "interpreted"),
    ),
)
"""(figure, target, decimals shown, the figure from a run's results): the table of the
issue that asked for the compiled core, the one place these numbers live."""


def targets(r: Results) -> Section:
    s = Section("Targets", "figure | target | this run | met")
    met = not_run = 0
    for figure, target, decimals, of in TARGETS:
        try:
            value = of(r)
        except KeyError:  # a run with --only: that step did not run
            s.row(figure, f"≥ ×{target:g}", "not run", "")
            not_run += 1
            continue
        met += value >= target
        verdict = "**yes**" if value >= target else "no"
        s.row(figure, f"≥ ×{target:g}", f"×{value:.{decimals}f}", verdict)
    s.note = (
        f"{met} of {len(TARGETS)} met in this run{f' ({not_run} not run)' if not_run else ''}."
        " Each figure is the one of its section "
        f"below; for a target missed, its profile and what reaching it would take: "
        f"[docs/design.md §7]({DESIGN})."
    )
    return s
