"""The rules file: defaults are docs/design.md §4; errors name file, line and key; every
number has a range, and no rules inside the ranges can make replay raise."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from siyu_stream.cli import main
from siyu_stream.core.clock import parse_rfc3339
from siyu_stream.core.errors import RulesError
from siyu_stream.core.rules import largest_state
from siyu_stream.core.ruleset import (
    RULE_SECTIONS,
    Rules,
    load_rules,
    parse_rules,
    range_of,
    range_text,
)
from siyu_stream.core.stored import dumps
from siyu_stream.replay.run import replay

EXAMPLE = Path(__file__).resolve().parent.parent / "rules.example.toml"
LIFECYCLE = Path(__file__).resolve().parent / "data" / "lifecycle.jsonl"


def test_defaults_are_the_design_numbers() -> None:
    r = Rules()
    assert r.spend_tier.thresholds_yuan == (5_000, 10_000, 50_000, 100_000)
    assert (r.reply_sla.minutes, r.welcome.due_minutes, r.silence.streak) == (30, 5, 5)
    assert (r.membership.days, r.membership.renewal_notice_days) == (365, 30)
    assert (r.dormant.days, r.invite_to_join.max_order_age_days) == (180, 7)
    assert (r.contact_policy.max_per_window, r.contact_policy.window_days) == (2, 7)
    assert r.contact_policy.holdout_percent == 0
    assert r.engine.timezone == "Asia/Shanghai"


def test_example_file_is_the_defaults() -> None:
    assert load_rules(EXAMPLE) == Rules()


def test_partial_file_overrides_only_its_keys() -> None:
    rules = parse_rules("[reply_sla]\nminutes = 15\n[gifts_yuan]\nreferral_reward = 150\n")
    assert rules.reply_sla.minutes == 15
    assert rules.gifts_yuan["referral_reward"] == 150
    assert rules.gifts_yuan["tier_5000"] == 200
    assert rules.silence == Rules().silence


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[silence]\nstreaks = 6\n", "r.toml:2: silence.streaks: unknown key"),
        ("\n[silence]\nstreak = 'x'\n", "r.toml:3: silence.streak: expected int"),
        ("[silence]\nstreak = 0\n", "r.toml:2: silence.streak: must be between 1 and 1000, got 0"),
        (
            "[welcome]\n\ndue_minutes = 9223372036854775807\n",
            "r.toml:3: welcome.due_minutes: must be between 1 and 10_080, got 9223372036854775807",
        ),
        ("[membership]\ndays = 1e8\n", "r.toml:2: membership.days: expected int, got 100000000.0"),
        ("[membership]\ndays = true\n", "r.toml:2: membership.days: expected int, got True"),
        ("[contact_policy]\nholdout_percent = nan\n", "contact_policy.holdout_percent: must be"),
        ("[contact_policy]\nholdout_percent = inf\n", "contact_policy.holdout_percent: must be"),
        ("[input]\nmax_clock_jump_days = 9\n", "r.toml:2: input.max_clock_jump_days: unknown key"),
        ("[gifts_yuan]   # comment\nx = -1\n", "r.toml:2: gifts_yuan.x: must be between 0 and"),
        (
            "[engine]\nmax_member_ahead_days = 300\n",
            "r.toml:2: engine.max_member_ahead_days: must be at least [membership] days (365)",
        ),
        ("[nope]\n", "r.toml:1: nope: unknown section"),
        ("[spend_tier]\nthresholds_yuan = [5, 1, 7, 9]\n", "spend_tier.thresholds_yuan"),
        ("[contact_policy]\nquiet_start = '25:00'\n", "r.toml:2: contact_policy.quiet_start"),
        ("[contact_policy]\nholdout_percent = 101\n", "contact_policy.holdout_percent"),
        ("[engine]\ntimezone = 'Mars/Olympus'\n", "r.toml:2: engine.timezone"),
        ("[membership]\nrenewal_notice_days = 400\n", "membership.renewal_notice_days"),
        ("[gifts_yuan]\ntier_5000 = 1.5\n", "r.toml:2: gifts_yuan.tier_5000"),
        ("silence = 3\n", "silence: expected a [table]"),
        ("[silence\n", "r.toml: invalid TOML"),
    ],
)
def test_errors_name_file_line_and_key(text: str, where: str) -> None:
    with pytest.raises(RulesError) as info:
        parse_rules(text, "r.toml")
    assert where in str(info.value)


def test_check_rules_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[dormant]\ndays = 90\n")
    assert main(["check-rules", str(good)]) == 0
    assert "ok" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[dormant]\ndays = -1\n")
    assert main(["check-rules", str(bad)]) == 2
    assert f"{bad}:2: dormant.days: must be between 1 and 3650, got -1" in capsys.readouterr().err
    assert main(["check-rules", str(tmp_path / "missing.toml")]) == 2


SECTION_FIELDS = [f for f in dataclasses.fields(Rules) if f.name in RULE_SECTIONS]
"""The rules file's sections (the run's go-live is a field of Rules, not a section)."""


def _ranged() -> Iterator[tuple[str, dataclasses.Field[Any], tuple[float, float]]]:
    """(section, field, range) of every number in the rules file."""
    for section_field in SECTION_FIELDS:
        bounds = range_of(section_field)
        if bounds is not None:  # a table of numbers (gifts_yuan)
            yield section_field.name, section_field, bounds
        section = getattr(Rules(), section_field.name)
        if dataclasses.is_dataclass(section):
            for f in dataclasses.fields(section):
                inner = range_of(f)
                if inner is not None:
                    yield section_field.name, f, inner


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def test_every_number_has_a_range_and_its_default_is_inside() -> None:
    defaults = Rules()
    ranged = {(section, f.name) for section, f, _ in _ranged()}
    for section_field in SECTION_FIELDS:
        section = getattr(defaults, section_field.name)
        if isinstance(section, dict):
            assert all(_is_number(v) for v in section.values())
            assert (section_field.name, section_field.name) in ranged
            continue
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            numbers = value if isinstance(value, tuple) else (value,)
            if any(_is_number(v) for v in numbers):
                assert (section_field.name, f.name) in ranged, f"{section_field.name}.{f.name}"
                low, high = range_of(f) or (0, 0)
                assert all(low <= v <= high for v in numbers)


def test_the_largest_state_the_ranges_allow_fits_the_smallest_max_state_bytes() -> None:
    """max_state_bytes is checked by no event (docs/design.md §3): the ranges of the bounds
    on a customer's collections must keep every state the rules allow below it."""
    rules = build_rules(lambda low, high: high)
    fields = {f.name: f for f in dataclasses.fields(rules.engine)}
    smallest, _ = range_of(fields["max_state_bytes"]) or (0, 0)
    assert len(dumps(largest_state(rules))) < smallest


def _outside(low: float, high: float) -> list[float]:
    return [low - 0.5, high + 0.5] if isinstance(low, float) else [low - 1, high + 1]


def _out_of_range_cases() -> Iterator[Any]:
    for section, f, (low, high) in _ranged():
        for bad in _outside(low, high):
            if section == f.name:  # the gifts_yuan table: one of its codes
                key, text = "tier_5000", f"tier_5000 = {bad}"
            elif isinstance(f.default, tuple):  # thresholds: one bad element is enough
                key, text = f.name, f"{f.name} = [{bad}, {high - 2}, {high - 1}, {high}]"
            else:
                key, text = f.name, f"{f.name} = {bad}"
            each = "each " if isinstance(f.default, tuple) else ""
            shown_low, shown_high = range_text(low, high).split("..")
            expected = (
                f"r.toml:3: {section}.{key}: {each}"
                f"must be between {shown_low} and {shown_high}, got {bad}"
            )
            yield pytest.param(f"# rules\n[{section}]\n{text}\n", expected, id=f"{key}={bad}")


@pytest.mark.parametrize(("text", "expected"), list(_out_of_range_cases()))
def test_check_rules_refuses_each_number_outside_its_range(text: str, expected: str) -> None:
    with pytest.raises(RulesError) as info:
        parse_rules(text, "r.toml")
    assert expected in str(info.value)


def test_example_file_states_each_range() -> None:
    lines = EXAMPLE.read_text().splitlines()
    where: dict[tuple[str, str], str] = {}
    section = ""
    for line in lines:
        header = re.match(r"^\[(\w+)\]", line)
        if header:
            section = header.group(1)
            where[(section, section)] = line
        elif "=" in line and not line.startswith("#"):
            where[(section, line.split("=")[0].strip())] = line
    for section, f, (low, high) in _ranged():
        line = where[(section, f.name)]
        assert line.rstrip().endswith(f"({range_text(low, high)})"), line


Pick = Callable[[float, float], Any]
"""Chooses a number in [low, high]: the low end, the high end, or a hypothesis draw."""


def build_rules(pick: Pick) -> Rules:
    """Rules with every number chosen by `pick` inside its range, and the cross-field
    constraints kept (increasing thresholds, renewal notice shorter than the membership)."""
    defaults = Rules()
    sections: dict[str, Any] = {}
    for section_field in SECTION_FIELDS:
        section = getattr(defaults, section_field.name)
        if not dataclasses.is_dataclass(section):
            continue
        values = {
            f.name: pick(*bounds)
            for f in dataclasses.fields(section)
            if (bounds := range_of(f)) is not None and not isinstance(f.default, tuple)
        }
        sections[section_field.name] = dataclasses.replace(section, **values)  # type: ignore[type-var]  # is_dataclass narrows to the instance
    by_name = {f.name: f for f in dataclasses.fields(defaults.spend_tier)}
    low, high = range_of(by_name["thresholds_yuan"]) or (0, 0)
    thresholds: list[int] = []
    for n in range(4):  # each above the one before, leaving room for the ones after
        thresholds.append(pick(thresholds[-1] + 1 if thresholds else low, high - 3 + n))
    sections["spend_tier"] = dataclasses.replace(
        sections["spend_tier"], thresholds_yuan=tuple(thresholds)
    )
    membership = sections["membership"]
    by_name = {f.name: f for f in dataclasses.fields(membership)}
    low, high = range_of(by_name["renewal_notice_days"]) or (0, 0)
    notice = pick(low, min(high, membership.days - 1))
    sections["membership"] = dataclasses.replace(membership, renewal_notice_days=notice)
    gifts_field = {f.name: f for f in dataclasses.fields(Rules)}["gifts_yuan"]
    low, high = range_of(gifts_field) or (0, 0)
    codes = [*defaults.gifts_yuan, *(defaults.tier_code(t) for t in thresholds)]
    sections["gifts_yuan"] = {code: pick(low, high) for code in codes}
    rules = dataclasses.replace(defaults, **sections)
    # the engine bound that must cover what the rules above allow
    engine = rules.engine
    by_name = {f.name: f for f in dataclasses.fields(engine)}
    low, high = range_of(by_name["max_member_ahead_days"]) or (0, 0)
    ahead = pick(max(low, rules.membership.days), high)
    engine = dataclasses.replace(engine, max_member_ahead_days=ahead)
    return dataclasses.replace(rules, engine=engine)


@st.composite
def rules_in_range(draw: st.DrawFn) -> Rules:
    def pick(low: float, high: float) -> Any:
        inside = st.floats(low, high) if isinstance(low, float) else st.integers(low, high)
        return draw(st.one_of(st.just(low), st.just(high), inside))  # the ends, often

    return build_rules(pick)


def as_toml(rules: Rules) -> str:
    """The rules file that sets every key of `rules`."""

    def value(v: Any) -> str:
        if isinstance(v, str):
            return json.dumps(v)  # a TOML basic string, for these ASCII values
        if isinstance(v, tuple):
            return "[" + ", ".join(map(str, v)) + "]"
        return repr(v)

    lines = []
    for section_field in SECTION_FIELDS:
        section = getattr(rules, section_field.name)
        items = (
            section.items()
            if isinstance(section, dict)
            else ((f.name, getattr(section, f.name)) for f in dataclasses.fields(section))
        )
        lines.append(f"[{section_field.name}]")
        lines += [f"{key} = {value(v)}" for key, v in items]
    return "\n".join(lines) + "\n"


NOW = parse_rfc3339("2026-04-01T00:00:00Z")  # after the file's events: none is in the future
UNTIL = parse_rfc3339("2046-04-01T00:00:00Z")
LIFECYCLE_LINES = sum(1 for line in LIFECYCLE.read_bytes().splitlines() if line.strip())


@settings(max_examples=40, deadline=None)
@given(rules=rules_in_range())
@example(rules=build_rules(lambda low, high: low))
@example(rules=build_rules(lambda low, high: high))
def test_rules_that_check_rules_accepts_never_make_replay_raise(rules: Rules) -> None:
    assert parse_rules(as_toml(rules), "drawn.toml") == rules  # check-rules accepts them
    assert len(dumps(largest_state(rules))) < rules.engine.max_state_bytes
    out, dead = io.BytesIO(), io.BytesIO()
    # `until` 20 years on fires every timer the ranges allow (the farthest is 10 years out)
    counts = replay([LIFECYCLE], out, rules, now=NOW, until=UNTIL, deadletters=dead)
    assert sum(counts.events.values()) == LIFECYCLE_LINES  # every line ok, duplicate or rejected
    assert all(orjson.loads(line)["kind"] for line in out.getvalue().splitlines())
