"""The table of long tests that run first (tests/conftest.py) names tests that exist: a renamed
or removed test would otherwise drop out of it silently and run wherever it falls."""

from __future__ import annotations

import pytest

from tests.conftest import LONG_TESTS


def test_every_long_test_names_a_collected_test(request: pytest.FixtureRequest) -> None:
    config = request.config
    if config.option.keyword or config.option.markexpr:
        pytest.skip("-k or -m deselected tests: the table cannot be checked against the rest")
    if any("::" in arg for arg in config.args):
        pytest.skip("tests were picked by node id: the files' other tests are not collected")
    collected = {item.nodeid for item in request.session.items}
    files = {nodeid.split("::")[0] for nodeid in collected}
    # the entries of files this run did not collect (a subset of the suite) are not judged
    stale = [t for t in LONG_TESTS if t.split("::")[0] in files and t not in collected]
    assert stale == [], "LONG_TESTS names tests that are not collected"
    assert len(set(LONG_TESTS)) == len(LONG_TESTS), "LONG_TESTS names a test twice"


def test_the_long_tests_run_first(request: pytest.FixtureRequest) -> None:
    ids = [item.nodeid for item in request.session.items]
    long_ones = [nodeid for nodeid in ids if nodeid in LONG_TESTS]
    assert ids[: len(long_ones)] == long_ones
    assert long_ones == [t for t in LONG_TESTS if t in long_ones]
