"""The table of long tests (tests/conftest.py) names tests that exist, and tests/schedule.py
deals them out so that xdist's first round robin gives each worker its share."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests import schedule
from tests.conftest import LONG_TESTS
from tests.schedule import LongTest, deal, order


def test_every_long_test_names_a_collected_test(request: pytest.FixtureRequest) -> None:
    config = request.config
    if config.option.keyword or config.option.markexpr:
        pytest.skip("-k or -m deselected tests: the table cannot be checked against the rest")
    if any("::" in arg for arg in config.args):
        pytest.skip("tests were picked by node id: the files' other tests are not collected")
    collected = {item.nodeid for item in request.session.items}
    files = {nodeid.split("::")[0] for nodeid in collected}
    # the entries of files this run did not collect (a subset of the suite) are not judged
    stale = [t.nodeid for t in LONG_TESTS if t.nodeid.split("::")[0] in files]
    stale = [nodeid for nodeid in stale if nodeid not in collected]
    assert stale == [], "LONG_TESTS names tests that are not collected"
    assert len({t.nodeid for t in LONG_TESTS}) == len(LONG_TESTS), "LONG_TESTS names a test twice"


def _long(name: str, wall: float, cpu: float = 0.0) -> LongTest:
    return LongTest(name, wall, cpu)


def test_deal_gives_the_longest_to_separate_workers_and_balances_the_rest() -> None:
    tests = [_long("a", 9), _long("b", 9), _long("c", 4, 4), _long("d", 3), _long("e", 2)]
    shares = deal(tests, 3)
    # c weighs 8 (4 s waiting, 4 s computing), so d joins it and e goes to the first worker
    assert [[t.nodeid for t in share] for share in shares] == [["a", "e"], ["b"], ["c", "d"]]
    assert deal(tests, 1) == [sorted(tests, key=lambda t: -t.weight)]


def test_the_round_robin_hands_each_worker_its_share_first() -> None:
    tests = [_long("a", 9), _long("b", 8), _long("c", 3), _long("d", 2)]
    items = ["x1", "a", "x2", "b", "c", "x3", "d", "x4"]
    laid_out = order(items, str, tests, 2)
    assert sorted(laid_out) == sorted(items)  # nothing lost, nothing twice
    shares = deal(tests, 2)
    for worker, share in enumerate(shares):
        dealt = laid_out[worker::2][: len(share)]
        assert dealt == [t.nodeid for t in share]
    # the others keep their order after the long ones
    assert [i for i in laid_out if i.startswith("x")] == ["x1", "x2", "x3", "x4"]


def test_this_run_starts_with_the_long_tests(request: pytest.FixtureRequest) -> None:
    ids = [item.nodeid for item in request.session.items]
    long_ids = {t.nodeid for t in LONG_TESTS}
    present = [nodeid for nodeid in ids if nodeid in long_ids]
    if not present:
        pytest.skip("no long test was collected")
    last = ids.index(present[-1])
    workerinput = getattr(request.config, "workerinput", None)
    workers = int(workerinput["workercount"]) if workerinput else 1
    # the long tests fill the first rows of the round robin: at most a row's worth of others
    # per worker can be laid out among them
    assert last < len(present) * workers


def test_the_recorder_writes_what_load_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schedule, "LONG_WALL", 0.0)  # every test counts as long here
    recorder = schedule.Recorder(tmp_path / "long_tests.json")
    for nodeid in ("t.py::quick", "t.py::other"):
        item = SimpleNamespace(nodeid=nodeid)
        wrapper = recorder.pytest_runtest_protocol(item)  # type: ignore[arg-type]
        next(wrapper)
        with pytest.raises(StopIteration):
            next(wrapper)
    recorder.pytest_sessionfinish(None)  # type: ignore[arg-type]
    loaded = schedule.load(tmp_path / "long_tests.json")
    assert sorted(t.nodeid for t in loaded) == ["t.py::other", "t.py::quick"]
    assert all(t.wall >= 0 and t.cpu >= 0 for t in loaded)
