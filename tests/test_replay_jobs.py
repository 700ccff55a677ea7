"""`replay --jobs N`: the same bytes, in the same order, and the same summary as one job,
on the golden inputs, on streams with late records and many referral credits that cross
jobs, and on hostile lines; plus the CLI's limits."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import pickle
import random
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siyu_stream.cli import main
from siyu_stream.core.clock import DAY, HOUR, MINUTE, format_rfc3339, parse_rfc3339
from siyu_stream.core.errors import SiyuError
from siyu_stream.core.events import decode
from siyu_stream.core.ruleset import Rules
from siyu_stream.core.schemas import (
    DEFERRED,
    SCHEMA_OF_TYPE,
    build_input_decoders,
    input_decoder,
    input_pattern,
    validator,
)
from siyu_stream.eventtime.keys import partition_for
from siyu_stream.observe.observer import Stats
from siyu_stream.replay import jobloop, outputs, spill
from siyu_stream.replay import jobs as replay_jobs
from siyu_stream.replay.engine import Engine, MemoryStore
from siyu_stream.replay.lines import line_partition
from siyu_stream.replay.run import JsonlSink, Merge, merged, replay, summary

DATA = Path(__file__).resolve().parent / "data"
RULES = Rules()
T0 = parse_rfc3339("2026-03-01T02:00:00Z")
NOW = T0 + 400 * DAY
GOLDEN = {
    "lifecycle": (["lifecycle.jsonl"], ["--until", "2026-12-31T00:00:00Z"]),
    "multi": (["multi/orders.jsonl", "multi/chats.jsonl", "multi/joins.jsonl"], []),
    "bad_input": (["bad_input.jsonl"], []),
}


def cli(tmp_path: Path, inputs: list[str], extra: list[str], jobs: int) -> tuple[bytes, bytes]:
    out, dead = tmp_path / f"out-{jobs}.jsonl", tmp_path / f"dead-{jobs}.jsonl"
    args = ["replay", *[str(DATA / i) for i in inputs], "--out", str(out), "--deadletter"]
    pinned = ["--now", "2026-06-01T00:00:00Z", "--partitions", "4", "--jobs", str(jobs)]
    assert main([*args, str(dead), *pinned, *extra]) == 0
    return out.read_bytes(), dead.read_bytes()


@pytest.mark.parametrize("name", sorted(GOLDEN))
@pytest.mark.parametrize("jobs", [2, 3, 4])
def test_golden_files_for_any_jobs(name: str, jobs: int, tmp_path: Path) -> None:
    actions, dead = cli(tmp_path, *GOLDEN[name], jobs)
    assert actions == (DATA / f"{name}.actions.jsonl").read_bytes()
    assert (
        dead.replace(str(DATA).encode() + b"/", b"")
        == (DATA / f"{name}.deadletter.jsonl").read_bytes()
    )


def run(
    path: Path | list[Path], jobs: int, partitions: int = 4, until: int | None = NOW
) -> tuple[bytes, bytes, Stats]:
    out, dead = io.BytesIO(), io.BytesIO()
    paths = path if isinstance(path, list) else [path]
    stats = replay(
        paths, out, RULES, until=until, now=NOW, partitions=partitions, deadletters=dead, jobs=jobs
    )
    return out.getvalue(), dead.getvalue(), stats


def same_for_jobs(
    path: Path | list[Path], partitions: int = 4, jobs: tuple[int, ...] = (2, 3)
) -> bytes:
    one = run(path, 1, partitions)
    for n in jobs:
        other = run(path, n, partitions)
        assert other[0] == one[0], f"actions differ with --jobs {n}"
        assert other[1] == one[1], f"dead letters differ with --jobs {n}"
        assert summary(other[2], 1.0) == summary(one[2], 1.0)
        assert other[2].timers_fired == one[2].timers_fired
    return one[0]


# ------------------------------------------------------------------ streams


def customers(partitions: int = 4) -> list[str]:
    """12 customers, 3 on each of 4 partitions."""
    found: dict[int, list[str]] = {p: [] for p in range(partitions)}
    n = 0
    while any(len(v) < 3 for v in found.values()):
        name = f"k{n}"
        found[partition_for(name.encode(), partitions)].append(name)
        n += 1
    return [c for group in found.values() for c in group[:3]]


def event(kind: str, eid: str, customer: str, at: int, **kw: Any) -> dict[str, Any]:
    base = {"event_id": eid, "customer_id": customer, "occurred_at": format_rfc3339(at)}
    if kind == "order":
        return {
            **base,
            "type": "order",
            "order_id": kw.pop("order_id", f"o-{eid}"),
            "status": "paid",
            "amount": "6000",
            "channel": "tmall",
            **kw,
        }
    if kind == "chat":
        return {**base, "type": "chat", "direction": "inbound", "channel": "wecom", **kw}
    return {**base, "type": "join", "action": "join", "carrier": "wecom", **kw}


def stream(seed: int, size: int, late: float = 0.2) -> list[dict[str, Any]]:
    """Referred customers joining and buying, their referrers (on other partitions) busy at
    the same instants, timers due in between, a share of records written out of order."""
    rng = random.Random(seed)
    people = customers()
    clock = T0
    events: list[dict[str, Any]] = []
    fresh = 0
    for n in range(size):
        clock += rng.choice([0, 0, 1, MINUTE, 31 * MINUTE, 5 * HOUR, 3 * DAY, 20 * DAY])
        at = clock - rng.choice([HOUR, DAY, 2 * DAY]) if rng.random() < late else clock
        roll = rng.random()
        if roll < 0.3:  # a new customer referred by anyone, then a first purchase
            fresh += 1
            new = f"new{seed}-{fresh}"
            referrer = rng.choice([*people, f"new{seed}-{max(1, fresh - 1)}"])
            events.append(event("join", f"j{n}", new, at, referrer_id=referrer))
            events.append(event("order", f"f{n}", new, at + rng.choice([0, 0, MINUTE, DAY])))
            if rng.random() < 0.5:  # the referrer is busy in the same millisecond
                kind = rng.choice(["order", "chat", "join"])
                events.append(event(kind, f"r{n}", referrer, at + rng.choice([0, 0, MINUTE])))
        elif roll < 0.55:
            events.append(event("order", f"e{n}", rng.choice(people), at))
        elif roll < 0.9:
            direction = rng.choice(["inbound", "outbound"])
            events.append(event("chat", f"e{n}", rng.choice(people), at, direction=direction))
        else:
            events.append(event("join", f"e{n}", rng.choice(people), at))
    return events


def write(tmp_path: Path, events: list[dict[str, Any]], name: str = "in.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


@pytest.mark.parametrize("seed", range(6))
def test_streams_with_crossing_credits_and_late_records(seed: int, tmp_path: Path) -> None:
    path = write(tmp_path, stream(seed, 150))
    actions = same_for_jobs(path, jobs=(2, 3, 4))
    gifts = [orjson.loads(a) for a in actions.splitlines() if b'"referral_reward"' in a]
    assert len(gifts) > 20


def test_a_credit_crosses_jobs_in_the_referrers_millisecond(tmp_path: Path) -> None:
    """The referred customer (job 0) buys in the same millisecond as the referrer (job 1)
    joins, writes and buys: the credit sorts right after the order that earned it, among
    the referrer's own records of that millisecond, as with one job."""
    people = customers()
    referrer = people[3]  # partition 1: job 1 of 2
    new = next(f"n{i}" for i in range(100) if partition_for(f"n{i}".encode(), 4) == 0)
    at = T0 + DAY
    events = [
        event("join", "a", new, at - HOUR, referrer_id=referrer),
        event("join", "b", referrer, at),
        event("chat", "c", referrer, at),
        event("order", "m", new, at),  # earns the credit: key (at, order, "m")
        event("order", "l", referrer, at),  # before the credit: "l" < "m"
        event("order", "z", referrer, at),  # after it
        event("chat", "d", new, at + MINUTE),
    ]
    path = write(tmp_path, events)
    actions = same_for_jobs(path, jobs=(2, 4))
    rows = [orjson.loads(a) for a in actions.splitlines()]
    causes = [r["cause_event_id"] for r in rows if r["customer_id"] == referrer]
    assert causes.index("l") < causes.index("m") < causes.index("z")
    assert any(r["rule"] == "referral" and r["kind"] == "gift" for r in rows)


def test_many_lines_and_far_look_ahead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small look-ahead (a partition goes on without an empty queue) and a short read
    ahead for the bound and while waiting change nothing between one job and several."""
    monkeypatch.setattr(jobloop, "LOOKAHEAD", 5)
    monkeypatch.setattr(jobloop, "READ_AHEAD", 7)
    monkeypatch.setattr(jobloop, "WAIT_READ_AHEAD", 9)
    events = stream(11, 300, late=0.4)
    events += [event("chat", f"x{i}", "solo", T0 + i * HOUR) for i in range(40)]
    same_for_jobs(write(tmp_path, events))


def test_the_merge_reads_the_indexes_in_chunks_and_copies_runs_of_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent reads each job's index a chunk at a time and copies a run of one job's
    steps in one go, cut at a buffer's size: with chunks of 1 to 3 entries and a run cut
    after every step, the bytes are the same."""
    path = write(tmp_path, stream(5, 200, late=0.3))
    actions = same_for_jobs(path, jobs=(2, 3))
    monkeypatch.setattr(outputs, "BUFFER", 2)
    for chunk in (1, 2, 3):
        monkeypatch.setattr(outputs, "INDEX_CHUNK", chunk)
        assert run(path, 2)[0] == actions
        assert run(path, 3)[0] == actions


def _one_chunk_then(go_on: Any, directory: Path, tell: Any) -> None:
    """A job that writes one chunk of its index, and a second only if the parent lets it:
    the parent does so once it has read the first, while this job still runs."""
    with outputs.job_file(directory, "index", 0).open("wb") as index:
        for n in (1, 2):
            entry = (1, (n, 0, "", 0), n, 0, 0, 0)
            pickle.dump([entry], index, protocol=pickle.HIGHEST_PROTOCOL)
            index.flush()
            tell.send_bytes(replay_jobs.CHUNK_WRITTEN)
            if not go_on.wait(60):
                break
    tell.send_bytes(replay_jobs.ENDED)


def test_the_parent_reads_a_chunk_while_its_job_still_runs(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    reader, writer = context.Pipe(duplex=False)
    go_on = context.Event()
    outputs.job_file(tmp_path, "index", 0).touch()
    job = context.Process(target=_one_chunk_then, args=(go_on, tmp_path, writer))
    job.start()
    writer.close()
    with replay_jobs.Feed(tmp_path, [reader]) as feed:
        assert [entry[2] for entry in feed.next_chunk(0)] == [1]
        assert job.is_alive()  # (it waits for `go_on`)
        go_on.set()
        assert [entry[2] for entry in feed.next_chunk(0)] == [2]
        assert feed.next_chunk(0) == []
    job.join()


def test_a_job_killed_mid_run_fails_the_replay_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent merges while the jobs run: a job that dies after it wrote part of its
    index stops the merge and the other job, and the replay fails naming a job."""
    path = write(tmp_path, stream(3, 3000))
    monkeypatch.setattr(outputs, "INDEX_CHUNK", 1)
    real_dump = pickle.dump
    chunks = [0]  # counted in each forked job's own copy

    def dump_then_die(obj: Any, file: Any, *args: Any, **kwargs: Any) -> None:
        # Job 1 SIGKILLs itself as it writes its second chunk, so its first chunk was
        # flushed and announced, and it dies mid-run on any machine: a killer thread in
        # the parent could lose the race to a job that ended first.
        if str(getattr(file, "name", "")).endswith("index-1"):
            chunks[0] += 1
            if chunks[0] == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        real_dump(obj, file, *args, **kwargs)

    # Output writes its index with `pickle.dump`, looked up at each call in both builds;
    # the jobs are forked, so they inherit the patch.
    monkeypatch.setattr(pickle, "dump", dump_then_die)
    with pytest.raises(SiyuError, match=r"replay-job-\d failed \(exit code -?\d+\)"):
        run(path, 2)
    assert chunks == [0]  # the parent wrote no index
    assert multiprocessing.active_children() == []


def partition(customer: str, partitions: int = 4) -> int:
    return partition_for(customer.encode(), partitions)


def test_lines_held_past_their_bounds_wait_in_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A partition whose customers stop early (its next fill reads the rest of the file for
    the others) and a run of garbage before the first step: with a few lines held in
    memory and the rest in temporary files, the bytes are the same for any jobs."""
    people = customers()
    first, rest = people[:3], people[3:]  # partition 0's customers, the others'
    events = [event("order", f"a{i}", first[i % 3], T0 + i * MINUTE) for i in range(6)]
    events += stream(7, 150, late=0.3)
    events = [e for e in events if e["event_id"][0] == "a" or partition(e["customer_id"]) != 0]
    events += [event("chat", f"z{i}", rest[i % 9], T0 + 40 * DAY + i * HOUR) for i in range(90)]
    lines = [b'{"customer_id": "%s", "type": "like"}' % c.encode() for c in people * 4]
    lines += [orjson.dumps(e) for e in events]
    lines.insert(len(lines) // 2, b'{"type": "like", "customer_id": "%s"}' % rest[4].encode())
    lines.insert(len(lines) // 2, orjson.dumps(event("chat", "late", rest[5], NOW + DAY)))
    assert all(partition(e["customer_id"]) != 0 for e in events[len(events) // 5 :])
    path = tmp_path / "skewed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    expected = [run(path, n) for n in (1, 2, 3)]
    monkeypatch.setattr(jobloop, "HELD", 4)
    monkeypatch.setattr(spill, "CHUNK", 3)
    monkeypatch.setattr(outputs, "START_HELD", 5)
    files = 0
    real = tempfile.TemporaryFile

    def temporary() -> IO[bytes]:
        nonlocal files
        files += 1
        return real()

    monkeypatch.setattr(tempfile, "TemporaryFile", temporary)
    for n, (actions, dead, _) in zip((1, 2, 3), expected, strict=True):
        got = run(path, n)
        assert (got[0], got[1]) == (actions, dead), f"--jobs {n}"
    assert files >= 4  # (one job, in this process) the start's runs and backlogs spilled
    assert dead.count(b"'like'") == len(people) * 4 + 1


def test_every_input_decoder_is_built_before_the_jobs_fork() -> None:
    """Else each job builds its own on first use (the slow path's validators: ~15 ms)."""
    for cached in (input_decoder, validator, input_pattern):
        cached.cache_clear()
    build_input_decoders()
    assert input_decoder.cache_info().currsize == 1
    assert validator.cache_info().currsize == len(SCHEMA_OF_TYPE)
    assert input_pattern.cache_info().currsize == len(DEFERRED)


def test_only_the_forked_jobs_leave_their_runs_to_their_exit(tmp_path: Path) -> None:
    """A job process skips freeing its states (it exits right after); a process that runs
    one job itself, or merges several, frees them (`tests/test_gc.py`) unless it promised
    to end by os._exit, as the program does (the two tests below)."""
    path = write(tmp_path, stream(2, 60))
    for jobs in (1, 2):
        run(path, jobs)
        assert replay_jobs._LEFT_TO_EXIT == []


def test_runs_are_kept_to_the_exit_only_once_the_process_promised_it() -> None:
    code = (
        "from siyu_stream.replay import jobs\n"
        "jobs.leave_to_exit(object()); print(jobs.left_to_exit())\n"
        "jobs.ends_by_exit(); jobs.leave_to_exit(object()); print(jobs.left_to_exit())\n"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    assert ran.stdout.split() == [b"False", b"True"]


def program(*argv: str) -> subprocess.CompletedProcess[bytes]:
    """`python -m siyu_stream.cli` with its standard output buffered, as by default."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    command = [sys.executable, "-m", "siyu_stream.cli", *argv]
    return subprocess.run(command, env=env, capture_output=True, check=True)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_the_program_ends_by_exit_with_every_byte_written(
    jobs: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """One job: `siyu-stream replay` and `backtest` end by os._exit with their states alive
    (`cli.entry`), and what they wrote to standard output, still in a buffer, must be out.
    Two: the states live in the jobs, and the program exits as usual, with the same bytes."""
    lifecycle = str(DATA / "lifecycle.jsonl")
    pinned = ["--now", "2026-06-01T00:00:00Z", "--until", "2026-12-31T00:00:00Z"]
    ran = program("replay", lifecycle, *pinned, "--jobs", jobs, "--deadletter", os.devnull)
    assert ran.stdout == (DATA / "lifecycle.actions.jsonl").read_bytes()
    assert ran.stderr.decode().splitlines()[-1].startswith("replay: --now 2026-06-01")
    backtest = ["backtest", lifecycle, *pinned, "--rules", os.devnull, "--jobs", jobs]
    ran = program(*backtest)
    assert main(backtest) == 0
    report = capsys.readouterr().out
    assert report.startswith("backtest: ") and "membership" in report
    assert ran.stdout.decode() == report


def test_hostile_lines_and_several_files(tmp_path: Path) -> None:
    events = stream(3, 80)
    lines = [orjson.dumps(e) for e in events]
    bad = [
        b"{",
        b"[1, 2]",
        b'{"customer_id": 5}',
        b'{"type": "coupon", "customer_id": "k1"}',
        b'{"detail": {"customer_id": "k2"}}',
        b'{"detail":{"customer_id":"k6"}}',
        b'{"event_id": "z", "customer_id":"k3", "occ',
        b'{"customer\\u005fid": "k4", "x": {"customer_id":"k5"}}',
    ]
    rng = random.Random(5)
    for line in bad * 5:
        lines.insert(rng.randrange(len(lines)), line)
    lines.insert(10, orjson.dumps({**events[0], "occurred_at": "2031-01-01T00:00:00Z"}))
    for i in range(20, 60, 8):  # valid, with a field only the event decoder's parser skips
        lines[i] = lines[i][:-1] + (b',"x":1e999}' if i % 16 else b', "x": "\xff"}')
    half = len(lines) // 2
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_bytes(b"\n".join(lines[:half]) + b"\n")
    second.write_bytes(b"\n\n".join(lines[half:]) + b"\n")
    same_for_jobs(first)
    same_for_jobs([first, second])
    _, dead, _ = run([first, second], 3)
    files = {Path(orjson.loads(line)["file"]).name for line in dead.splitlines()}
    assert len(dead.splitlines()) == 1 + len(bad) * 5  # each bad line once, in one job
    assert files == {"a.jsonl", "b.jsonl"}


_TEXT = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["customer_id", '"customer_id":"x"', "customer\\id"]
)
_JSON = st.recursive(
    st.none() | st.integers(-(2**63), 2**63 - 1) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300)
@given(
    customer=_TEXT,
    before=st.dictionaries(_TEXT, _JSON, max_size=3),
    after=st.dictionaries(_TEXT, _JSON, max_size=3),
    style=st.sampled_from([(",", ":"), (", ", ": ")]),
    ascii_only=st.booleans(),
)
def test_a_lines_partition_is_its_top_level_customer_id(
    customer: str,
    before: dict[str, Any],
    after: dict[str, Any],
    style: tuple[str, str],
    ascii_only: bool,
) -> None:
    """Whatever else the line holds (the id's name nested, in text, escaped), only the
    top level counts."""
    before.pop("customer_id", None)
    after.pop("customer_id", None)
    data = {**before, "customer_id": customer, **after}
    raw = json.dumps(data, ensure_ascii=ascii_only, separators=style).encode()
    for partitions in (2, 4, 7):
        assert line_partition(raw, partitions, 1 << 20) == partition_for(
            customer.encode(), partitions
        )


_CHAT = (
    b'{"event_id":"e1","type":"chat","customer_id":"c1","occurred_at":"2026-03-01T02:00:00Z",'
    b'"direction":"inbound","channel":"wecom"'
)


@pytest.mark.parametrize(
    "raw",
    [
        _CHAT + b"}",
        _CHAT + b',"x":1e999}',  # the event decoder skips it; another parser refuses it
        _CHAT + b',"x":"\xff"}',  # likewise (invalid UTF-8)
        _CHAT + b', "x": 1e999, "y": "\\u00e9"}',  # both, with a parse
        _CHAT + b', "x": "\xff", "y": "\\u00e9"}',
        _CHAT + b',"customer_id":"c2"}',  # the last one counts
        _CHAT + b',"note":"customer_id"}',
        _CHAT.replace(b'"customer_id":"c1"', b'"customer_id" : "c1"') + b"}",
        # the name also nested: a search of the bytes for it must not decide
        _CHAT.replace(b'"customer_id":"c1"', b'"customer_id" : "c1"')
        + b',"x":{"customer_id":"c5"}}',
        _CHAT + b',"x":{"customer_id":"c5"}}',
        _CHAT.replace(b'"customer_id"', b'"customer\\u005fid"') + b',"x":{"customer_id":"c3"}}',
        _CHAT.replace(b"02:00:00Z", b"02:00:00.5+08:00") + b',"customer_id":"c4"}',  # slow path
    ],
)
def test_a_valid_events_partition_is_its_customers(raw: bytes) -> None:
    """Every line the event decoder accepts gets its customer's partition, whichever way
    `line_partition` reads it: any other answer would put it in another job."""
    customer = decode(raw, RULES.input).customer_id
    for partitions in (2, 4, 7):
        expected = partition_for(customer.encode(), partitions)
        assert line_partition(raw, partitions, RULES.input.max_message_bytes) == expected


def test_one_partition_per_job_and_two_partitions(tmp_path: Path) -> None:
    path = write(tmp_path, stream(7, 100))
    same_for_jobs(path, partitions=2, jobs=(2,))
    same_for_jobs(path, partitions=8, jobs=(2, 5, 8))


def test_one_job_takes_records_in_backtests_merge_order(tmp_path: Path) -> None:
    """The job loop (replay) and `Merge` (backtest) are one merge order, written twice."""
    for seed in range(4):
        path = write(tmp_path, stream(seed, 120, late=0.3))
        actions, _, _ = run(path, 1, until=None)
        out = io.BytesIO()
        engine = Engine(RULES, MemoryStore(), JsonlSink(out), partitions=4, now=NOW)
        for _ in Merge(engine, merged([path], RULES), lambda line, reason: None).run():
            pass
        engine.advance(None)
        assert actions == out.getvalue()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(1, 60), late=st.sampled_from([0.0, 0.5]))
def test_any_stream_gives_the_same_bytes(tmp_path: Path, seed: int, size: int, late: float) -> None:
    same_for_jobs(write(tmp_path, stream(seed, size, late)), jobs=(2, 4))


@pytest.mark.parametrize(
    ("jobs", "message"),
    [("0", "--jobs: expected 1..4"), ("5", "--jobs: expected 1..4"), ("-1", "got -1")],
)
def test_cli_rejects_jobs_out_of_range(
    jobs: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["replay", str(DATA / "lifecycle.jsonl"), "--partitions", "4", "--jobs", jobs]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_summary_is_the_same(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = {}
    for jobs in ("1", "3"):
        out = tmp_path / f"out{jobs}.jsonl"
        args = ["replay", str(DATA / "bad_input.jsonl"), "--out", str(out), "--jobs", jobs]
        assert main([*args, "--partitions", "4", "--now", "2026-06-01T00:00:00Z"]) == 0
        err = capsys.readouterr().err
        lines[jobs] = (
            [line.split(", 0.")[0] for line in err.splitlines() if "actions" in line],
            err,
        )
    assert lines["1"][0] == lines["3"][0]
    rejected = [line for line in lines["3"][1].splitlines() if ": rejected:" in line]
    assert [line for line in lines["1"][1].splitlines() if ": rejected:" in line] == rejected


def test_a_failed_job_stops_the_others_and_fails_the_replay_by_name(tmp_path: Path) -> None:
    missing = tmp_path / "gone.jsonl"  # the command checks inputs first; the API does not
    with pytest.raises(SiyuError, match=r"replay-job-\d failed \(exit code 1\)"):
        replay([missing], io.BytesIO(), Rules(), now=0, partitions=4, jobs=2)
    assert multiprocessing.active_children() == []
