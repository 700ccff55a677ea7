"""`siyu-stream bootstrap`, its pure parts without a broker: the history through the replay
engine with the go-live rules, what it writes per partition, and in which transactions.

The central property: a bootstrap over the first part of a history, its changelog
restored as a worker restores it, then the rest of the history, emits what `replay
--go-live` emits over the whole history, partition by partition, byte for byte, and ends
with the same states."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import orjson
import pytest

from siyu_stream.bootstrap import plan
from siyu_stream.bootstrap.build import DESTINATIONS, Built, Outputs, build, line_partition
from siyu_stream.bootstrap.publish import refusal
from siyu_stream.bootstrap.spill import Spill
from siyu_stream.cli import main
from siyu_stream.core import stored
from siyu_stream.core.clock import DAY, parse_rfc3339
from siyu_stream.core.golive import GoLive
from siyu_stream.core.ruleset import Rules
from siyu_stream.eventtime.keys import partition_for
from siyu_stream.live.records import CLOCK_KEY, Out
from siyu_stream.replay.engine import Engine, MemoryStore
from siyu_stream.replay.jobloop import Job
from siyu_stream.replay.lines import Line, owned_lines
from siyu_stream.replay.run import replay
from siyu_stream.settings import Settings
from siyu_stream.simulate import generate, history, write_jsonl
from siyu_stream.topology import Topology

DATA = Path(__file__).resolve().parent / "data"
PARTITIONS = 4
TOPOLOGY = Topology(Settings(api_auth=False, partitions=PARTITIONS))


def _history(tmp_path: Path, events: int = 3_000) -> tuple[list[bytes], int]:
    """A simulated purchase history sorted by event time (no late or bad lines: a split
    by time then keeps each partition's merge order), and its last event time."""
    config = dataclasses.replace(history(events, 90, seed=11), jitter_ratio=0, bad_ratio=0)
    path = tmp_path / "sim.jsonl"
    write_jsonl(generate(config, events), path)
    lines = path.read_bytes().splitlines()
    lines.sort(key=lambda raw: parse_rfc3339(orjson.loads(raw)["occurred_at"]))
    return lines, parse_rfc3339(orjson.loads(lines[-1])["occurred_at"])


def _write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(raw + b"\n" for raw in lines))
    return path


def _outputs(built: Built) -> list[list[bytes]]:
    """Each partition's spilled records, as (topic) + value lines."""
    return [
        [f"{o.topic} ".encode() + o.value for o in plan.output_records(built, TOPOLOGY, p)]
        for p in range(PARTITIONS)
    ]


def _changelog(built: Built) -> dict[int, list[Out]]:
    ids = plan.ids_by_partition(built)
    return {p: list(plan.changelog_records(built, TOPOLOGY, p, ids[p])) for p in range(PARTITIONS)}


def test_a_bootstrap_then_the_rest_emits_what_replay_emits_over_the_whole_history(
    tmp_path: Path,
) -> None:
    lines, last = _history(tmp_path)
    times = [parse_rfc3339(orjson.loads(raw)["occurred_at"]) for raw in lines]
    split = times[len(times) * 2 // 3]
    go_live = GoLive(split, 3 * DAY)
    rules = Rules().going_live(go_live)
    now = last + DAY
    first = _write(
        tmp_path / "first.jsonl", [r for r, t in zip(lines, times, strict=True) if t < split]
    )
    rest = _write(
        tmp_path / "rest.jsonl", [r for r, t in zip(lines, times, strict=True) if t >= split]
    )
    whole = _write(tmp_path / "whole.jsonl", lines)

    (tmp_path / "boot").mkdir()
    booted = build([first], rules, partitions=PARTITIONS, now=now, spill_dir=tmp_path / "boot")
    changelog = _changelog(booted)
    # the part after go-live, on an engine restored from the changelog (a worker's place)
    (tmp_path / "live").mkdir()
    continued, resumed = _resume(changelog, rules, rest, now, tmp_path / "live")

    expected = io.BytesIO()
    replay([whole], expected, rules, now=now, partitions=PARTITIONS, deadletters=io.BytesIO())
    by_partition: list[list[bytes]] = [[] for _ in range(PARTITIONS)]
    for raw in expected.getvalue().splitlines():
        action = orjson.loads(raw)
        topic = TOPOLOGY.output(action["kind"])
        p = partition_for(action["customer_id"].encode(), PARTITIONS)
        by_partition[p].append(f"{topic} ".encode() + raw)
    got = [a + b for a, b in zip(_outputs(booted), continued, strict=True)]
    assert got == by_partition  # each partition's records in replay's order, the same bytes

    kinds = booted.outputs.kinds
    assert booted.outputs.suppressed["before_go_live"] > 0  # the history's reminders held
    assert kinds["gift"] > 0  # gifts earned in the grant window still go out
    # and the states end where replay's do
    (tmp_path / "full").mkdir()
    full = build([whole], rules, partitions=PARTITIONS, now=now, spill_dir=tmp_path / "full")
    assert _states(resumed) == _states(full.store)
    assert len(resumed.data) > 100  # not vacuous


def _states(store: MemoryStore) -> dict[str, bytes]:
    return {cid: stored.dumps(s) for cid, s in store.items()}


def _resume(
    changelog: dict[int, list[Out]], rules: Rules, rest: Path, now: int, spill_dir: Path
) -> tuple[list[list[bytes]], MemoryStore]:
    """The rest of the history on a replay engine restored from `changelog` as a worker
    restores its partitions (states decoded, their timers indexed, the clock from its
    record); its outputs per partition and its states."""
    store = MemoryStore()
    spill = Spill(spill_dir, PARTITIONS)
    outputs = Outputs(spill, PARTITIONS)
    engine = Engine(rules, store, outputs, partitions=PARTITIONS, now=now)
    for p, records in changelog.items():
        for record in records:
            assert record.partition == p and record.key is not None
            if record.key == CLOCK_KEY.encode():
                engine.partitions[p].clock = orjson.loads(record.value)["clock"]
                continue
            state = stored.loads(record.value)
            store.put(record.key.decode(), state)
            engine.partitions[p].timers.index(record.key.decode(), state)
    owned = frozenset(range(PARTITIONS))
    job = Job(
        engine, owned_lines([rest], rules, PARTITIONS, owned), owned, [0] * PARTITIONS, outputs
    )
    job.run()
    job.finish(None)
    spill.close()
    topics = [
        TOPOLOGY.deadletter if k == "deadletter" else TOPOLOGY.output(k) for k in DESTINATIONS
    ]
    spilled = [
        [f"{topics[code]} ".encode() + value for code, _, value in spill.read(p)]
        for p in range(PARTITIONS)
    ]
    return spilled, store


def test_an_event_in_a_file_and_in_the_topics_is_taken_once(tmp_path: Path) -> None:
    """The same history from two sources (a file and the topics' copy): every event of
    the second is a counted duplicate, and the states and outputs are those of one."""
    lifecycle = DATA / "lifecycle.jsonl"
    copy = _write(tmp_path / "copy.jsonl", lifecycle.read_bytes().splitlines())
    rules = Rules().going_live(GoLive(parse_rfc3339("2026-04-01T00:00:00Z")))
    now = parse_rfc3339("2026-06-01T00:00:00Z")
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = build([lifecycle], rules, partitions=PARTITIONS, now=now, spill_dir=tmp_path / "one")
    two = build(
        [lifecycle, copy], rules, partitions=PARTITIONS, now=now, spill_dir=tmp_path / "two"
    )
    valid = one.engine.stats.by_outcome()
    doubled = two.engine.stats.by_outcome()
    assert doubled["duplicate"] == valid["duplicate"] + valid["ok"] + valid["duplicate"]
    assert doubled["ok"] == valid["ok"]
    assert _states(two.store) == _states(one.store)
    assert _outputs(two) == _outputs(one)
    assert sum(map(len, _outputs(one))) > 0


def test_the_changelog_is_the_workers_records_on_each_customers_partition(
    tmp_path: Path,
) -> None:
    rules = Rules().going_live(GoLive(parse_rfc3339("2026-04-01T00:00:00Z")))
    now = parse_rfc3339("2026-06-01T00:00:00Z")
    built = build(
        [DATA / "lifecycle.jsonl"], rules, partitions=PARTITIONS, now=now, spill_dir=tmp_path
    )
    changelog = _changelog(built)
    customers = {}
    for p, records in changelog.items():
        assert all(r.topic == TOPOLOGY.changelog and r.partition == p for r in records)
        clocks = [r for r in records if r.key == b""]
        clock = built.engine.partitions[p].clock
        if clock is None:
            assert not records
            continue
        assert [orjson.loads(r.value) for r in clocks] == [{"clock": clock}]
        assert records[-1] is clocks[0]  # the clock last, after the states
        for r in records[:-1]:
            assert r.key is not None and partition_for(r.key, PARTITIONS) == p
            customers[r.key.decode()] = stored.loads(r.value)
    assert set(customers) == set(built.store.data) and len(customers) == 6
    assert {c: stored.dumps(s) for c, s in customers.items()} == _states(built.store)


def test_a_rejected_line_is_dead_lettered_on_its_customers_partition(tmp_path: Path) -> None:
    bad = [
        b'{"event_id":"x1","type":"order","customer_id":"zed","occurred_at":"nope"}',
        b"not json at all",
    ]
    path = _write(tmp_path / "bad.jsonl", bad)
    now = parse_rfc3339("2026-06-01T00:00:00Z")
    rules = Rules().going_live(GoLive(now))
    (tmp_path / "s").mkdir()
    built = build([path], rules, partitions=PARTITIONS, now=now, spill_dir=tmp_path / "s")
    dead = {
        p: [orjson.loads(o.value) for o in plan.output_records(built, TOPOLOGY, p)]
        for p in range(PARTITIONS)
    }
    zed = partition_for(b"zed", PARTITIONS)
    assert [d["line"] for d in dead[zed]] == [1]
    assert [d["line"] for d in dead[0]] == ([1, 2] if zed == 0 else [2])
    assert built.outputs.kinds["deadletter"] == 2
    lines = [Line("f", 1, bad[0], None, None), Line("f", 2, bad[1], None, None)]
    assert [line_partition(line, PARTITIONS) for line in lines] == [zed, 0]


def test_chunks_keep_the_order_and_the_bound() -> None:
    records = [Out("t", b"k", b"x" * n, 0) for n in (3, 3, 3, 10, 1, 1)]
    got = list(plan.chunks(records, limit=8))
    assert [[plan.size(r) for r in chunk] for chunk in got] == [[4, 4], [4], [11], [2, 2]]
    assert [r for chunk in got for r in chunk] == records
    assert list(plan.chunks([], limit=8)) == [[]]  # one (empty) transaction for the offsets


def test_start_offsets_end_or_the_first_record_from_go_live() -> None:
    a, b = plan.Where("siyu.orders", 0), plan.Where("siyu.orders", 1)
    ends = {a: 10, b: 5}
    assert plan.start_offsets("end", ends, {a: 3, b: None}) == {a: 10, b: 5}
    assert plan.start_offsets("go-live", ends, {a: 3, b: None}) == {a: 3, b: 5}
    with pytest.raises(ValueError, match="--start"):
        plan.start_offsets("beginning", ends, {})


def test_a_group_with_members_is_refused_by_name() -> None:
    member = {"member_id": "m1"}
    running = [{"group": "brand-app", "state": "Stable", "members": [member]}]
    reason = refusal("brand-app", running)
    assert reason is not None and "'brand-app'" in reason and "1 member" in reason
    rebalancing = [{"group": "brand-app", "state": "PreparingRebalance", "members": []}]
    assert refusal("brand-app", rebalancing) is not None
    for state in ("Empty", "Dead"):
        assert refusal("brand-app", [{"group": "brand-app", "state": state, "members": []}]) is None
    assert (
        refusal("brand-app", [{"group": "other", "state": "Stable", "members": [member]}]) is None
    )


def test_the_spill_gives_back_what_it_took_in_order(tmp_path: Path) -> None:
    spill = Spill(tmp_path, 2)
    items = [(1, 0, b"a\nb", b"{}"), (0, 4, None, b"dead"), (1, 2, b"", b"")]
    for p, code, key, value in items:
        spill.add(p, code, key, value)
    spill.close()
    assert list(spill.read(1)) == [(0, b"a\nb", b"{}"), (2, b"", b"")]
    assert list(spill.read(0)) == [(4, None, b"dead")]
    assert spill.records == [1, 2]


def test_the_cli_wants_a_history_and_a_go_live(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bootstrap", "--go-live", "2026-04-01T00:00:00Z"]) == 2
    assert "history files, --from-kafka" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bootstrap", str(DATA / "lifecycle.jsonl")])
    assert "--go-live" in capsys.readouterr().err
