"""Where the suite's long tests run under xdist, so that no worker is left with a tail.

pytest-xdist's ``load`` scheduler first deals a quarter of the collection out round robin: the
test at position ``p`` goes to worker ``p % n``, and each worker runs its share in order (only
later are tests handed out one at a time, ``--maxschedchunk=1``). So the order of the collection
decides which worker runs which long test. :func:`order` deals the long tests out greedily, the
longest first, each to the worker that would finish its long tests soonest, and lays them out so
that the round robin gives every worker its own.

A test's weight is its wall time plus its CPU time again: on a machine with fewer cores than
workers, a test that computes also slows the others down, while one that waits (on a warped clock,
on child processes, on a deadline) does not.

The figures live in tests/long_tests.json, written by ``pytest -n 0 --record-long-tests`` (the
:class:`Recorder` below): rerun it when tests are added or become slower.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar

import pytest

#: A test is long from this much wall time, or this much CPU time, on (seconds).
LONG_WALL: float = 1.4
LONG_CPU: float = 1.0


class LongTest(NamedTuple):
    """A test measured alone (``-n 0``) on a 2-core machine."""

    nodeid: str
    wall: float  # seconds from start to end
    cpu: float  # seconds on a core, its child processes' included

    @property
    def weight(self) -> float:
        return self.wall + self.cpu


def load(path: Path) -> tuple[LongTest, ...]:
    """The long tests recorded in ``path``, the heaviest first."""
    table = json.loads(path.read_text(encoding="utf-8"))
    return tuple(LongTest(nodeid, wall, cpu) for nodeid, (wall, cpu) in table.items())


class Recorder:
    """A pytest plugin that measures every test (setup and teardown included) and writes the
    long ones to ``path`` at the end of the session. Run alone (``-n 0``): under xdist the
    workers' figures would include each other's load."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tests: list[LongTest] = []

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, None, None]:
        started, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
        yield
        wall = time.perf_counter() - started
        used = time.process_time() - cpu + _children_cpu() - children
        if wall >= LONG_WALL or used >= LONG_CPU:
            self.tests.append(LongTest(item.nodeid, round(wall, 1), round(used, 1)))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        tests = sorted(self.tests, key=lambda t: (-t.weight, t.nodeid))
        table = {t.nodeid: [t.wall, t.cpu] for t in tests}
        self.path.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")


def _children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


T = TypeVar("T")


def deal(tests: Sequence[LongTest], workers: int) -> list[list[LongTest]]:
    """Each worker's long tests, the longest first (greedy: each to the least loaded worker)."""
    shares: list[list[LongTest]] = [[] for _ in range(max(1, workers))]
    loads = [0.0] * len(shares)
    for test in sorted(tests, key=lambda t: -t.weight):
        worker = loads.index(min(loads))
        shares[worker].append(test)
        loads[worker] += test.weight
    return shares


def order(
    items: Sequence[T], nodeid: Callable[[T], str], tests: Sequence[LongTest], workers: int
) -> list[T]:
    """``items`` reordered so that a round robin over ``workers`` gives each its share of the
    long tests first; the gaps in the round robin are filled with the other items, in order."""
    by_id = {nodeid(item): item for item in items}
    shares = deal([t for t in tests if t.nodeid in by_id], workers)
    dealt = {test.nodeid for share in shares for test in share}
    rest = iter([item for item in items if nodeid(item) not in dealt])
    laid_out: list[T] = []
    for row in range(max((len(share) for share in shares), default=0)):
        for share in shares:
            if row < len(share):
                laid_out.append(by_id[share[row].nodeid])
            else:
                filler = next(rest, None)
                if filler is not None:
                    laid_out.append(filler)
    laid_out.extend(rest)
    return laid_out
