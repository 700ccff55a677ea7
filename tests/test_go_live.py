"""Going live on a history: what falls due before the go-live instant T is withheld, what
falls due from T on goes out exactly as a plain run emits it, and the state is the same.

The properties compare two runs of the same random history: a plain one and one going
live at a random T (`--go-live`, `SIYU_GO_LIVE`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from scenario import START, ListSink, histories

from siyu_stream.cli import main
from siyu_stream.core import stored
from siyu_stream.core.actions import Action
from siyu_stream.core.clock import DAY, Millis, parse_rfc3339
from siyu_stream.core.events import from_dict
from siyu_stream.core.golive import GoLive
from siyu_stream.core.ruleset import Rules
from siyu_stream.core.step import BEFORE_GO_LIVE
from siyu_stream.replay.engine import Engine, MemoryStore

RULES = Rules()
DATA = Path(__file__).resolve().parent / "data"
PINNED = ["--now", "2026-06-01T00:00:00Z", "--partitions", "4", "--until", "2026-12-31T00:00:00Z"]
"""The golden lifecycle run's arguments (test_replay)."""


def _run(events: list[dict[str, Any]], rules: Rules) -> tuple[list[Action], MemoryStore]:
    sink = ListSink()
    store = MemoryStore()
    engine = Engine(rules, store, sink)
    for event in events:
        engine.handle(from_dict(event, rules.input))
    engine.advance((engine.clock or START) + 400 * DAY)  # every timer the history set
    return sink.actions, store


def _due(action: Action | dict[str, Any]) -> Millis:
    """When a gift or reminder falls due: a reminder's not_before (customer-facing) or
    deadline (a staff task), a gift's cause time."""
    if isinstance(action, Action):
        action = action.to_dict()
    if action["kind"] == "reminder":
        detail = action["detail"]
        return parse_rfc3339(detail["not_before"] or detail["deadline"])
    return parse_rfc3339(action["occurred_at"])


def _cutoff(action: dict[str, Any], go_live: GoLive) -> Millis:
    return go_live.grant_from if action["kind"] == "gift" else go_live.at


def _wire(action: Action) -> bytes:
    return orjson.dumps(action.to_dict())


@settings(max_examples=150, deadline=None)
@given(
    events=histories(),
    at=st.integers(-2 * DAY, 120 * DAY).map(lambda offset: START + offset),
    grant_days=st.sampled_from([0, 1, 7, 30]),
)
def test_nothing_before_go_live_and_everything_after_it(
    events: list[dict[str, Any]], at: Millis, grant_days: int
) -> None:
    go_live = GoLive(at, grant_days * DAY)
    plain, plain_store = _run(events, RULES)
    live, live_store = _run(events, RULES.going_live(go_live))

    emitted = [a for a in live if a.kind in ("gift", "reminder")]
    # 1. nothing due before T reaches a customer or staff member
    for action in emitted:
        assert _due(action) >= _cutoff(action.to_dict(), go_live), action

    # 2. what a plain run emits (or its policy holds back) due from T on is emitted, or
    #    held back by the contact policy with its reason, byte for byte the same action
    live_wire = {a.action_id: _wire(a) for a in emitted}
    held = {
        a.detail["action"]["action_id"]: (a.detail["reason"], orjson.dumps(a.detail["action"]))
        for a in live
        if a.kind == "suppressed"
    }
    plain_firings = [a.to_dict() for a in plain if a.kind in ("gift", "reminder")]
    plain_firings += [a.detail["action"] for a in plain if a.kind == "suppressed"]
    for firing in plain_firings:
        wire = orjson.dumps(firing)
        if _due(firing) >= _cutoff(firing, go_live):
            assert (
                live_wire.get(firing["action_id"]) == wire
                or held.get(firing["action_id"], ("", b""))[1] == wire
            ), firing
            assert held.get(firing["action_id"], ("",))[0] != BEFORE_GO_LIVE
        else:
            # 3. ... and what fell due before T is withheld for that reason, never sent
            assert firing["action_id"] not in live_wire
            assert held[firing["action_id"]] == (BEFORE_GO_LIVE, wire)

    # 4. a tier crossed before the grant window is never granted after it
    crossed_before = {
        (a.customer_id, a.detail["code"])
        for a in plain
        if a.kind == "gift" and a.rule == "spend_tier" and a.occurred_at < go_live.grant_from
    }
    for action in emitted:
        if action.kind == "gift":
            assert (action.customer_id, action.detail["code"]) not in crossed_before

    # 5. state changes as usual, and the same state but for the contact counters
    assert [_wire(a) for a in live if a.kind == "change"] == [
        _wire(a) for a in plain if a.kind == "change"
    ]
    assert live_store.data.keys() == plain_store.data.keys()
    for customer_id, theirs in plain_store.items():
        ours = live_store.data[customer_id]
        ours.touches = theirs.touches = []
        assert stored.dumps(ours) == stored.dumps(theirs)


@settings(max_examples=60, deadline=None)
@given(events=histories())
def test_contact_counters_count_only_what_was_emitted(events: list[dict[str, Any]]) -> None:
    # going live after every timer: nothing reaches a customer, so nothing is counted
    _, store = _run(events, RULES.going_live(GoLive(START + 10_000 * DAY)))
    assert all(not state.touches for _, state in store.items())


def test_go_live_before_the_history_changes_nothing(tmp_path: Path) -> None:
    args = [str(DATA / "lifecycle.jsonl"), *PINNED]
    assert main(["replay", *args, "--out", str(tmp_path / "plain.jsonl")]) == 0
    early = ["--go-live", "2000-01-01T00:00:00Z", "--out", str(tmp_path / "early.jsonl")]
    assert main(["replay", *args, *early]) == 0
    plain = (tmp_path / "plain.jsonl").read_bytes()
    assert plain == (DATA / "lifecycle.actions.jsonl").read_bytes()
    assert (tmp_path / "early.jsonl").read_bytes() == plain


def test_replay_go_live_withholds_the_lifecycle_history(tmp_path: Path) -> None:
    args = [str(DATA / "lifecycle.jsonl"), *PINNED]
    out = tmp_path / "live.jsonl"
    go_live = "2026-03-20T00:00:00+08:00"
    assert main(["replay", *args, "--go-live", go_live, "--out", str(out)]) == 0
    actions = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    held = [a for a in actions if a["kind"] == "suppressed"]
    reasons = {a["detail"]["reason"] for a in held}
    assert BEFORE_GO_LIVE in reasons
    cut = parse_rfc3339(go_live)
    for action in actions:
        if action["kind"] == "reminder":
            assert _due(action) >= cut
        if action["kind"] == "gift":
            assert parse_rfc3339(action["occurred_at"]) >= cut - 7 * DAY


def test_bad_go_live_names_the_option(capsys: Any) -> None:
    args = [str(DATA / "lifecycle.jsonl"), "--go-live", "yesterday"]
    assert main(["replay", *args]) == 2
    assert "--go-live yesterday" in capsys.readouterr().err
