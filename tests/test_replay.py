"""Replay end to end: golden files, dead letters, determinism, CLI errors."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from siyu_stream.cli import main
from siyu_stream.core.schemas import DEADLETTER_SCHEMA, validator

DATA = Path(__file__).resolve().parent / "data"
UPDATE = os.environ.get("SIYU_UPDATE_GOLDEN") == "1"

PINNED = ["--now", "2026-06-01T00:00:00Z", "--partitions", "4"]
"""What else decides the bytes: the time events may not be far ahead of, the partitions."""
CASES = {
    # name: (inputs, extra args)
    "lifecycle": (["lifecycle.jsonl"], [*PINNED, "--until", "2026-12-31T00:00:00Z"]),
    "multi": (["multi/orders.jsonl", "multi/chats.jsonl", "multi/joins.jsonl"], PINNED),
    "bad_input": (["bad_input.jsonl"], PINNED),
}


def run(tmp_path: Path, inputs: list[str], extra: list[str]) -> tuple[bytes, bytes]:
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    args = ["replay", *[str(DATA / i) for i in inputs], "--out", str(out)]
    assert main([*args, "--deadletter", str(dead), *extra]) == 0
    # file paths in dead letters are made relative so the golden files travel
    return out.read_bytes(), dead.read_bytes().replace(str(DATA).encode() + b"/", b"")


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str, tmp_path: Path) -> None:
    inputs, extra = CASES[name]
    actions, dead = run(tmp_path, inputs, extra)
    golden_actions = DATA / f"{name}.actions.jsonl"
    golden_dead = DATA / f"{name}.deadletter.jsonl"
    if UPDATE:
        golden_actions.write_bytes(actions)
        golden_dead.write_bytes(dead)
    assert actions == golden_actions.read_bytes()
    assert dead == golden_dead.read_bytes()


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_output_matches_its_topic_schema(name: str, tmp_path: Path) -> None:
    actions, dead = run(tmp_path, *CASES[name])
    for line in actions.splitlines():
        action = orjson.loads(line)
        topic = {
            "gift": "siyu.actions.gifts",
            "reminder": "siyu.actions.reminders",
            "change": "siyu.customers.changes",
            "suppressed": "siyu.actions.suppressed",
        }[action["kind"]]
        validator(topic)(action)
    for line in dead.splitlines():
        validator(DEADLETTER_SCHEMA)(orjson.loads(line))


def test_lifecycle_covers_every_rule(tmp_path: Path) -> None:
    actions, _ = run(tmp_path, *CASES["lifecycle"])
    rules = {orjson.loads(line)["rule"] for line in actions.splitlines()}
    assert rules >= {
        "welcome",
        "reply_sla",
        "spend_tier",
        "membership",
        "third_order",
        "referral",
        "invite_to_join",
        "repurchase_due",
        "silence",
        "leave",
        "dormant",
    }
    kinds = {orjson.loads(line)["kind"] for line in actions.splitlines()}
    assert kinds == {"gift", "reminder", "change", "suppressed"}


def test_bad_lines_are_dead_lettered_with_file_line_and_reason(tmp_path: Path) -> None:
    actions, dead = run(tmp_path, *CASES["bad_input"])
    records = [orjson.loads(line) for line in dead.splitlines()]
    by_line = {r["line"]: r for r in records}
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 8, 9, 12]
    assert "amount" in by_line[2]["reason"]
    assert "2 decimals" in by_line[3]["reason"]
    assert "occurred_at" in by_line[4]["reason"]
    assert "ahead of --now (2026-06-01T00:00:00Z)" in by_line[5]["reason"]
    assert "type" in by_line[6]["reason"]
    assert "carrier" in by_line[7]["reason"]
    assert "invalid JSON" in by_line[8]["reason"]
    assert by_line[12]["encoding"] == "base64"
    assert all(r["file"] == "bad_input.jsonl" for r in records)
    # the valid lines around the bad ones were processed: zoe's order and inbound chat
    customers = {orjson.loads(line)["customer_id"] for line in actions.splitlines()}
    assert customers == {"zoe"}


def test_rejections_go_to_stderr_without_deadletter_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.jsonl"
    assert main(["replay", str(DATA / "bad_input.jsonl"), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "bad_input.jsonl:2: rejected: amount" in err
    assert "9 rejected" in err


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_blank_lines_are_skipped_and_nothing_else(tmp_path: Path, jobs: str) -> None:
    """Empty and white-space lines are no events (nor rejections); a line that only starts
    with white space is one."""
    lines = (DATA / "lifecycle.jsonl").read_bytes().splitlines()
    spaced = [b"", b"   ", b"\t \r", b" " + lines[0], *[line + b"\r" for line in lines[1:]]]
    spaced[4:4] = [b"\x0b\x0c", b" \t"]
    source = tmp_path / "spaced.jsonl"
    source.write_bytes(b"\n".join(spaced) + b"\n")
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    args = ["replay", str(source), "--out", str(out), "--deadletter", str(dead)]
    extra = [*CASES["lifecycle"][1], "--jobs", jobs]
    assert main([*args, *extra]) == 0
    assert dead.read_bytes() == b""
    assert out.read_bytes() == (DATA / "lifecycle.actions.jsonl").read_bytes()


def test_same_input_gives_byte_identical_output(tmp_path: Path) -> None:
    first = run(tmp_path, *CASES["lifecycle"])
    second = run(tmp_path, *CASES["lifecycle"])
    assert first == second


def test_stdout_is_the_default_output(capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    assert main(["replay", str(DATA / "multi" / "orders.jsonl")]) == 0
    lines = capfdbinary.readouterr().out.splitlines()
    assert lines and all(orjson.loads(line)["customer_id"] == "mia" for line in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay", "missing.jsonl"], "missing.jsonl: no such input file"),
        (["replay", str(DATA / "lifecycle.jsonl"), "--until", "soon"], "--until"),
    ],
)
def test_cli_errors_are_named(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_rules_file_changes_the_outcome(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        "[spend_tier]\nthresholds_yuan = [1000, 2000, 3000, 4000]\n[gifts_yuan]\n"
        "tier_1000 = 1\ntier_2000 = 2\ntier_3000 = 3\ntier_4000 = 4\n"
    )
    out = tmp_path / "out.jsonl"
    src = str(DATA / "multi" / "orders.jsonl")
    assert main(["replay", src, "--out", str(out), "--rules", str(rules)]) == 0
    codes = [
        orjson.loads(line)["detail"]["code"]
        for line in out.read_bytes().splitlines()
        if orjson.loads(line)["kind"] == "gift"
    ]
    assert codes == ["tier_1000", "tier_2000", "tier_3000", "tier_4000"]
