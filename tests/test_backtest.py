"""`siyu-stream backtest`: the diff's meaning on crafted histories, the golden output on
tests/data/lifecycle.jsonl, the refusal of a bad rules file, and bounded-memory pieces."""

from __future__ import annotations

import bisect
import dataclasses
import multiprocessing
import os
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siyu_stream.backtest import diff as actiondiff
from siyu_stream.backtest.run import backtest as run_backtest
from siyu_stream.backtest.tally import WINDOW, Calendar, Tally, percentiles
from siyu_stream.cli import main
from siyu_stream.core.actions import Action
from siyu_stream.core.clock import DAY, format_rfc3339, parse_rfc3339
from siyu_stream.core.errors import BacktestError
from siyu_stream.core.ruleset import Rules
from siyu_stream.simulate import generate, write_jsonl
from siyu_stream.simulate import history as history_config

DATA = Path(__file__).resolve().parent / "data"
UPDATE = os.environ.get("SIYU_UPDATE_GOLDEN") == "1"
PINNED = ["--now", "2026-06-01T00:00:00Z", "--partitions", "4"]


def history(path: Path, events: list[dict[str, Any]]) -> Path:
    for n, event in enumerate(events, start=1):
        event.setdefault("event_id", f"e{n}")
        event["occurred_at"] = event.pop("at").replace(" ", "T") + ":00+08:00"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


def order(customer: str, at: str, amount: str) -> dict[str, Any]:
    return {
        "type": "order",
        "customer_id": customer,
        "at": at,
        "order_id": f"{customer}-{at}",
        "status": "paid",
        "amount": amount,
        "channel": "tmall",
    }


def join(customer: str, at: str, action: str = "join") -> dict[str, Any]:
    return {
        "type": "join",
        "customer_id": customer,
        "at": at,
        "action": action,
        "carrier": "wecom",
        "staff_id": "staff-a",
    }


def backtest(
    tmp_path: Path, inputs: list[Path], rules: str, *extra: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    new = tmp_path / "new.toml"
    new.write_text(rules)
    out = tmp_path / "out"
    args = ["backtest", *map(str, inputs), "--rules", str(new), "--out", str(out)]
    assert main([*args, *PINNED, *extra]) == 0
    summary = orjson.loads((out / "summary.json").read_bytes())
    diff = [orjson.loads(line) for line in (out / "diff.jsonl").read_bytes().splitlines()]
    return summary, diff


def test_a_raised_tier_threshold_takes_the_gift_from_customers_between_the_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = [
        order("low", "2026-03-02 10:00", "3000.00"),
        order("mid", "2026-03-02 11:00", "4000.00"),
        order("mid", "2026-03-03 11:00", "2000.00"),  # 6,000: between 5,000 and 7,000
        order("high", "2026-03-02 12:00", "9000.00"),
        order("edge", "2026-03-04 12:00", "7000.00"),  # on the new threshold: keeps a gift
    ]
    rules = "[spend_tier]\nthresholds_yuan = [7000, 10000, 50000, 100000]\n"
    rules += "[gifts_yuan]\ntier_7000 = 200\n"
    summary, diff = backtest(tmp_path, [history(tmp_path / "h.jsonl", events)], rules)
    gifts = {
        (
            d["change"],
            (d["baseline"] or d["new"])["customer_id"],
            (d["baseline"] or d["new"])["detail"]["code"],
        )
        for d in diff
        if (d["baseline"] or d["new"])["kind"] == "gift"
    }
    assert gifts == {
        ("removed", "mid", "tier_5000"),
        ("removed", "high", "tier_5000"),
        ("removed", "edge", "tier_5000"),
        ("added", "high", "tier_7000"),
        ("added", "edge", "tier_7000"),
    }
    lost = {c for change, c, _ in gifts if change == "removed"}
    lost -= {c for change, c, _ in gifts if change == "added"}
    assert lost == {"mid"}
    assert {(d["baseline"] or d["new"])["rule"] for d in diff} == {"spend_tier"}
    cost = {g["code"]: g for g in summary["gift_cost"]}
    assert cost["tier_5000"]["baseline_fen"] == 3 * 20_000 and cost["tier_5000"]["new_fen"] == 0
    assert cost["tier_7000"]["new_fen"] == 2 * 20_000 and cost["tier_7000"]["delta_percent"] is None
    assert cost["total"]["delta_fen"] == -20_000
    text = capsys.readouterr().out  # the terminal summary says the same
    assert "spend_tier.thresholds_yuan: [5000, 10000, 50000, 100000] → [7000, " in text
    # 3 gifts and mid's tier change (the others reach silver by the same order as before)
    assert "differences: 2 added, 4 removed, 0 changed actions, 3 customers" in text
    assert re.search(r"tier_5000 +600\.00 +0\.00 +-600\.00 +-100\.0%", text)
    assert re.search(r"total +600\.00 +400\.00 +-200\.00 +-33\.3%", text)
    assert "tier       none 1 → 2, silver 3 → 2" in text
    assert summary["population"]["baseline"]["tier"]["silver"] == 3
    assert summary["population"]["new"]["tier"]["silver"] == 2
    assert summary["rule_changes"] == [
        {
            "key": "spend_tier.thresholds_yuan",
            "baseline": [5000, 10000, 50000, 100000],
            "new": [7000, 10000, 50000, 100000],
        },
        {"key": "gifts_yuan.tier_7000", "baseline": None, "new": 200},
    ]


def test_a_lower_frequency_cap_holds_back_the_second_reminder_in_the_window(
    tmp_path: Path,
) -> None:
    # c1: an invite (outside the pool), then two winbacks as it leaves the pool twice, all
    # within 7 days; c2 gets one reminder only
    events = [
        order("c1", "2026-03-02 10:00", "2000.00"),
        join("c1", "2026-03-02 11:00"),
        join("c1", "2026-03-03 11:00", "leave"),
        join("c1", "2026-03-04 11:00"),
        join("c1", "2026-03-05 11:00", "leave"),
        order("c2", "2026-03-02 10:00", "100.00"),
    ]
    rules = "[contact_policy]\nmax_per_window = 1\n"
    summary, diff = backtest(tmp_path, [history(tmp_path / "h.jsonl", events)], rules)
    assert [d["change"] for d in diff] == ["changed", "changed"]
    by_kind = {(d["baseline"]["kind"], d["new"]["kind"]): d for d in diff}
    assert set(by_kind) == {("reminder", "suppressed"), ("suppressed", "suppressed")}
    second = by_kind[("reminder", "suppressed")]
    # the same firing: the key is the reminder's id, which the suppressed action holds
    assert second["action_id"] == second["baseline"]["action_id"]
    assert second["new"]["detail"]["action"] == second["baseline"]
    assert second["new"]["detail"]["reason"] == "frequency_cap"
    third = by_kind[("suppressed", "suppressed")]
    assert third["baseline"]["detail"]["action"] == third["new"]["detail"]["action"]
    assert "(cap 2)" in third["baseline"]["because"] and "(cap 1)" in third["new"]["because"]
    assert all(d["baseline"]["customer_id"] == "c1" for d in diff)
    assert summary["differences_total"] == {"added": 0, "removed": 0, "changed": 2, "customers": 1}
    assert summary["suppressed"] == {"baseline": {"frequency_cap": 1}, "new": {"frequency_cap": 2}}
    contact = summary["customer_reminders_7d"]
    assert contact["baseline"] == {"customers": 2, "p50": 1, "p95": 2, "max": 2}
    assert contact["new"] == {"customers": 2, "p50": 1, "p95": 1, "max": 1}
    rows = {(r["rule"], r["kind"]): r for r in summary["actions"]}
    assert rows[("leave", "reminder")] | {"rule": 0, "kind": 0} == {
        "rule": 0,
        "kind": 0,
        "baseline": 1,
        "new": 0,
        "added": 0,
        "removed": 0,
        "changed": 1,
    }
    assert rows[("leave", "suppressed")]["new"] == 2


def test_identical_rules_give_an_empty_diff(tmp_path: Path) -> None:
    rules = (Path(__file__).resolve().parent.parent / "rules.example.toml").read_text()
    summary, diff = backtest(tmp_path, [DATA / "lifecycle.jsonl"], rules)
    assert diff == []
    assert summary["rule_changes"] == []
    assert summary["differences_total"] == {"added": 0, "removed": 0, "changed": 0, "customers": 0}
    assert summary["differences"] == []
    assert summary["actions"] and all(r["baseline"] == r["new"] > 0 for r in summary["actions"])
    assert summary["population"]["baseline"] == summary["population"]["new"]


def test_a_different_input_section_decodes_each_run_its_own_way(tmp_path: Path) -> None:
    events = [order("big", "2026-03-02 10:00", "6000.00"), order("small", "2026-03-02 11:00", "10")]
    summary, diff = backtest(
        tmp_path, [history(tmp_path / "h.jsonl", events)], "[input]\nmax_order_yuan = 5000\n"
    )
    assert summary["events"]["baseline"]["rejected"] == 0
    assert summary["events"]["new"]["rejected"] == 1
    assert {d["change"] for d in diff} == {"removed"}
    assert {d["baseline"]["customer_id"] for d in diff} == {"big"}


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_golden_lifecycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: str) -> None:
    # relative paths, as the golden summary names its inputs and rules files
    monkeypatch.chdir(DATA)
    out = tmp_path / "out"
    args = ["backtest", "lifecycle.jsonl", "--rules", "lifecycle.backtest.toml", *PINNED]
    until = ["--until", "2026-12-31T00:00:00Z"]
    assert main([*args, *until, "--out", str(out), "--jobs", jobs]) == 0
    for name in ("summary.json", "diff.jsonl"):
        golden = DATA / f"lifecycle.backtest.{name}"
        if UPDATE:
            golden.write_bytes((out / name).read_bytes())
        assert (out / name).read_bytes() == golden.read_bytes(), name
    assert (DATA / "lifecycle.backtest.diff.jsonl").read_bytes().count(b"\n") >= 3


def test_two_jobs_write_the_same_bytes_as_one_over_a_simulated_year(tmp_path: Path) -> None:
    """`--jobs 2`: each rule set in its own process, decoding the input its own way (the
    new rules refuse large orders at the edge), timers firing to past the end."""
    year = tmp_path / "year.jsonl"
    config = dataclasses.replace(history_config(3_000, 365, seed=11), bad_ratio=0.02)
    write_jsonl(generate(config, 3_000), year)
    rules = tmp_path / "new.toml"
    rules.write_text("[input]\nmax_order_yuan = 2000\n[silence]\nstreak = 2\n")
    args = ["backtest", str(year), "--rules", str(rules), "--partitions", "4"]
    args += ["--now", "2027-01-02T00:00:00Z", "--until", "2027-06-01T00:00:00Z"]
    outs = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}"
        assert main([*args, "--out", str(out), "--jobs", jobs]) == 0
        outs[jobs] = {n: (out / n).read_bytes() for n in ("summary.json", "diff.jsonl")}
    assert outs["1"]["diff.jsonl"].count(b"\n") > 100
    assert outs["2"] == outs["1"]


def test_a_failed_job_fails_the_backtest_by_name(tmp_path: Path) -> None:
    missing = tmp_path / "gone.jsonl"  # the command checks inputs first; the API does not
    with pytest.raises(BacktestError, match=r"backtest-(baseline|new) failed \(exit 1\)"):
        run_backtest([missing], Rules(), Rules(), now=0, jobs=2)
    assert multiprocessing.active_children() == []  # the other process stopped too


def test_an_empty_history_gives_empty_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary, diff = backtest(tmp_path, [history(tmp_path / "h.jsonl", [])], "")
    assert diff == [] and summary["actions"] == [] and summary["series"]["days"] == []
    assert summary["gift_cost"] == [
        {
            "code": "total",
            "baseline_count": 0,
            "new_count": 0,
            "baseline_fen": 0,
            "new_fen": 0,
            "delta_fen": 0,
            "delta_percent": None,
        }
    ]
    assert "tier       no customers" in capsys.readouterr().out
    assert "No action differs" in (tmp_path / "out" / "report.html").read_text()


@pytest.mark.parametrize("which", ["--rules", "--baseline"])
def test_a_bad_rules_file_is_refused_before_any_input_is_read(
    which: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[spend_tier]\nthresholds_yuan = [9000, 1000, 50000, 100000]\n")
    good = tmp_path / "good.toml"
    good.write_text("")
    rules = {"--rules": str(good), "--baseline": None, which: str(bad)}
    args = ["backtest", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "out")]
    args += [a for k, v in rules.items() if v is not None for a in (k, v)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: spend_tier.thresholds_yuan: must be increasing" in err
    assert "missing.jsonl" not in err
    assert not (tmp_path / "out").exists()


def test_files_and_from_kafka_together_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["backtest", str(DATA / "lifecycle.jsonl"), "--from-kafka", "--rules", os.devnull]
    assert main(args) == 2
    assert "either input files or --from-kafka" in capsys.readouterr().err
    assert main(["backtest", "--rules", os.devnull]) == 2
    assert "either input files or --from-kafka" in capsys.readouterr().err


def test_spill_sorts_across_chunks_and_the_diff_does_not_depend_on_the_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = "[contact_policy]\nmax_per_window = 1\n[third_order]\norder_number = 2\n"
    for name in ("one", "many"):
        (tmp_path / name).mkdir()
    _, whole = backtest(tmp_path / "one", [DATA / "lifecycle.jsonl"], rules)
    monkeypatch.setattr(actiondiff, "CHUNK_LINES", 3)  # every run spills many chunks
    _, chunked = backtest(tmp_path / "many", [DATA / "lifecycle.jsonl"], rules)
    assert len(whole) >= 3
    assert chunked == whole
    assert [d["action_id"] for d in whole] == sorted(d["action_id"] for d in whole)


def test_percentiles_are_nearest_rank() -> None:
    assert percentiles([]) == {"p50": 0, "p95": 0, "max": 0}
    assert percentiles([5]) == {"p50": 5, "p95": 5, "max": 5}
    assert percentiles(list(range(1, 21))) == {"p50": 10, "p95": 19, "max": 20}


def _peaks_by_bisection(dues: list[tuple[str, int]]) -> dict[str, int]:
    """The contact peaks as `Tally` first computed them: a bisection per window start."""
    recent: dict[str, list[int]] = {}
    peak: dict[str, int] = {}
    for customer, due in dues:
        times = recent.setdefault(customer, [])
        if times and due < times[-1] - 2 * WINDOW:
            peak[customer] = max(peak[customer], 1)
            continue
        bisect.insort(times, due)
        del times[: bisect.bisect_left(times, times[-1] - 2 * WINDOW)]
        first, last = bisect.bisect_right(times, due - WINDOW), bisect.bisect_right(times, due)
        best = max(bisect.bisect_left(times, times[i] + WINDOW) - i for i in range(first, last))
        peak[customer] = max(peak.get(customer, 0), best)
    return peak


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.sampled_from("ab"), st.integers(0, 40 * 4).map(lambda q: q * DAY // 4)),
        max_size=60,
    )
)
def test_contact_peak_is_the_bisections_for_any_order(
    tmp_path: Path, dues: list[tuple[str, int]]
) -> None:
    """Ties, a window's exact end, dues out of order and long gaps: quarter days over
    40 days, two customers."""
    tally = Tally(Calendar(Rules().zone), actiondiff.Spill(tmp_path, "run"))
    for customer, due in dues:
        tally._contact(customer, due)
    assert tally.peak == _peaks_by_bisection(dues)


def test_contact_peak_is_the_fullest_rolling_window_whatever_the_order(tmp_path: Path) -> None:
    tally = Tally(Calendar(Rules().zone), actiondiff.Spill(tmp_path, "run"))
    start = parse_rfc3339("2026-03-02T00:00:00Z")

    def remind(customer: str, day: float) -> None:
        due = start + int(day * DAY)
        detail = {
            "template": "reengage",
            "assignee": "s1",
            "not_before": format_rfc3339(due),
            "deadline": None,
        }
        tally.send(
            Action(
                f"{customer}{day}", "reminder", "silence", customer, due, "e", detail, "", "0" * 8
            )
        )

    # a: days 0, 3 and 6.9 in one window, then 20 and 21; sent up to a week out of order
    for day in (6.9, 0, 3, 21, 20):
        remind("a", day)
    # b: days 0, 7 and 14, each a whole window after the last: never two in [s, s + 7 d)
    for day in (0, 7, 14):
        remind("b", day)
    # c: a reminder due more than two windows before the latest is counted alone
    for day in (1, 30, 0):
        remind("c", day)
    assert tally.peak == {"a": 3, "b": 1, "c": 1}
    assert sum(tally.staff_day.values()) == 11
