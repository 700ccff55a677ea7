"""How far the protocol of `replay --jobs 2` lets two jobs run apart, with its costs taken out.

    .venv/bin/python bench/jobs_model.py INPUT [--partitions 4]

Replays INPUT in one job (interpreted: the source, whatever build is installed), timing
every step of the merge and noting which steps earn a referral credit for which
partition. Then it schedules those steps on two simulated jobs (partition p on job
p mod 2), each taking its steps in the merge order, with no cost for reading ahead,
bounds or pipes and a look-ahead that sees every future credit:

- job-level bound (the protocol `replay/jobloop.py` implements): a job takes a step of
  group g once the other job has taken every step that earns a credit for it with a
  smaller group;
- per-partition bound: a partition takes a step of group g once every step of another
  partition (of either job) that earns a credit for it with a smaller group is taken;
  a job takes the smallest such step of its partitions.

It prints each schedule's length, its speedup over one job and the time each job waited.
The difference between a schedule's speedup and the measured one is what reading every
line in each job, the bookkeeping and the pipes cost; the difference between the two
schedules is what a bound per partition could win (docs/design.md §7).
"""

from __future__ import annotations

import argparse
import io
import time
from bisect import bisect_right
from pathlib import Path
from typing import Any, ClassVar

from siyu_stream.core.clock import parse_rfc3339
from siyu_stream.core.ruleset import Rules
from siyu_stream.replay import jobs
from siyu_stream.replay.jobloop import Job
from siyu_stream.replay.run import collector_paused

JOBS = 2
Step = tuple[int, Any, bool, tuple[int, ...], int]
"""(partition whose queue holds it, group, a credit?, partitions it credits, ns)."""


class Traced(Job):
    """The job loop, its steps timed (interpreted: a compiled class takes no subclass)."""

    steps: ClassVar[list[Step]] = []

    def _input(self, part: Any, kind: int, group: Any) -> None:
        began = time.perf_counter_ns()
        super()._input(part, kind, group)
        self.steps.append((part.index, group, False, self._targets, time.perf_counter_ns() - began))

    def _credit(self, credit: Any, tag: Any) -> None:
        began = time.perf_counter_ns()
        super()._credit(credit, tag)
        target = self._partition(credit.referrer_id)
        self.steps.append((target, tag[1], True, (), time.perf_counter_ns() - began))

    def _route(self, group: Any) -> None:
        self._targets = tuple(self._partition(c.referrer_id) for c in self.engine.credits)
        super()._route(group)


def trace(path: Path, partitions: int) -> list[Step]:
    jobs.Job = Traced  # type: ignore[misc]  # the one job `jobs.run` builds, traced
    with collector_paused():
        jobs.run(
            [path],
            io.BytesIO(),
            Rules(),
            until=None,
            now=parse_rfc3339("2100-01-01T00:00:00Z"),
            partitions=partitions,
            deadletters=io.BytesIO(),
            progress=None,
            jobs=1,
        )
    return Traced.steps


def schedule(steps: list[Step], per_partition: bool) -> tuple[float, list[float]]:
    """The simulated jobs' end, and how long each waited."""
    unit = (lambda p: p) if per_partition else (lambda p: p % JOBS)
    queues: dict[int, list[int]] = {}
    earners: dict[tuple[int, int], list[int]] = {}  # (from unit, to unit): steps in order
    earns: dict[int, list[tuple[int, int]]] = {}
    source: dict[int, int] = {}
    last: dict[tuple[int, Any], int] = {}
    for i, (p, group, credit, targets, _) in enumerate(steps):
        queues.setdefault(unit(p), []).append(i)
        if credit:
            source[i] = last[(p, group)]
        for q in targets:
            last[(q, group)] = i
            if unit(q) != unit(p):
                earners.setdefault((unit(p), unit(q)), []).append(i)
                earns.setdefault(i, []).append((unit(p), unit(q)))
    done: list[float | None] = [None] * len(steps)
    # when each unit took its earning steps (a unit takes its steps in order: ascending)
    taken_at: dict[tuple[int, int], list[float]] = {key: [] for key in earners}
    heads = dict.fromkeys(queues, 0)
    clock, waited = [0.0] * JOBS, [0.0] * JOBS

    def blocker(u: int, i: int, now: float) -> int | None:
        """The step that step i of unit u waits for at `now`, if any."""
        group, credit = steps[i][1], steps[i][2]
        if credit and (done[source[i]] is None or done[source[i]] > now):  # type: ignore[operator]
            return source[i]
        for key, earning in earners.items():
            if key[1] != u:
                continue
            taken = bisect_right(taken_at[key], now)
            if taken < len(earning) and steps[earning[taken]][1] < group:
                return earning[taken]
        return None

    left = len(steps)
    while left:
        j = 0 if clock[0] <= clock[1] else 1
        now, best, waits = clock[j], None, []
        for u in (u for u in queues if u % JOBS == j):
            if heads[u] == len(queues[u]):
                continue
            i = queues[u][heads[u]]
            b = blocker(u, i, now)
            if b is not None:
                waits.append(b)
            elif best is None or steps[i][1] < steps[best[1]][1]:
                best = (u, i)
        if best is not None:
            u, i = best
            clock[j] = done[i] = now + steps[i][4]
            for key in earns.get(i, ()):
                taken_at[key].append(now + steps[i][4])
            heads[u] += 1
            left -= 1
        elif not waits:
            clock[j] = float("inf")  # this job is through
        else:
            ahead = [d for b in waits if (d := done[b]) is not None and d > now]
            until = min(ahead) if ahead else max(clock[1 - j], now + 1)
            waited[j] += until - now
            clock[j] = until
    return max(d for d in done if d is not None), waited


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    steps = trace(args.input, args.partitions)
    total = sum(s[4] for s in steps)
    print(f"{len(steps):,} steps, {total / 1e9:.2f} s in one job")
    for name, per_partition in (("job-level bound", False), ("per-partition bound", True)):
        end, waited = schedule(steps, per_partition)
        waits = ", ".join(f"{w / 1e9:.2f}" for w in waited)
        print(f"{name}: {end / 1e9:.2f} s, x{total / end:.2f} of one job; waited {waits} s")


if __name__ == "__main__":
    main()
