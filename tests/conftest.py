"""Shared fixtures: the asyncio backend, the simulator, and a config pointing at it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests import schedule
from tests.schedule import LongTest

# Bytecode caches on, even where PYTHONDONTWRITEBYTECODE is set (as on this project's CI
# machines): otherwise every xdist worker compiles the package and rewrites the test modules
# again, and so does each of the suite's ~100 child processes (the CLI, doctor, fleet and
# example runs): 15-19 s of CPU a run. The caches are ignored by git.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

import tradovate_async  # noqa: E402

# CI runs part of the suite against the installed wheel (see .ci/run): then the package must come
# from the virtual environment, never from a checkout that happens to be on sys.path.
if os.environ.get("TRADOVATE_ASYNC_TESTS_ON_WHEEL") == "1":
    _imported_from = Path(tradovate_async.__file__).resolve()
    if not _imported_from.is_relative_to(Path(sys.prefix).resolve()):
        raise pytest.UsageError(f"tests must import the installed wheel, not {_imported_from}")


@pytest.fixture
def anyio_backend() -> str:
    # The websockets asyncio client is asyncio-only.
    return "asyncio"


# --- scheduling: the long tests first ---------------------------------------------------------

#: Tests of 1.4 s or more, or 1 s of CPU or more, measured alone (``-n 0``) on a 2-core machine.
#: Under xdist a long test that starts late keeps one worker busy after the others have
#: finished, and that tail set the suite's wall time: tests/schedule.py deals these out to the
#: workers first. tests/test_schedule.py fails when an entry names no collected test.
LONG_TESTS = (
    LongTest(
        "tests/test_fleet.py::test_a_fleet_flat_out_stays_within_one_shared_budget[file]",
        8.9,
        0.2,
    ),
    LongTest(
        "tests/test_fleet.py::test_a_fleet_flat_out_stays_within_one_shared_budget[redis]",
        8.9,
        0.2,
    ),
    LongTest(
        "tests/test_docs.py::test_the_reference_builds_without_a_warning",
        4.3,
        4.3,
    ),
    LongTest(
        "tests/reliability/test_fuzz.py::test_any_token_file_loads_as_a_token_or_none",
        4.2,
        4.1,
    ),
    LongTest(
        "tests/reliability/test_secret_encodings.py::test_echoed_secrets_never_survive",
        3.5,
        3.6,
    ),
    LongTest(
        "tests/test_fleet.py::test_fleet_renews_once_per_lifetime[redis]",
        5.7,
        0.8,
    ),
    LongTest(
        "tests/test_fleet.py::test_fleet_renews_once_per_lifetime[file]",
        5.7,
        0.7,
    ),
    LongTest(
        "tests/reliability/test_fuzz.py::test_any_redis_record_parses_as_a_token_or_none",
        1.9,
        1.9,
    ),
    LongTest(
        "tests/reliability/test_fuzz.py::test_mutated_frames_decode_or_raise_protocol_error",
        1.9,
        1.9,
    ),
    LongTest(
        "tests/test_market_data.py::test_chart_stitches_across_two_reconnects",
        3.4,
        0.2,
    ),
    LongTest(
        "tests/reliability/test_fuzz.py::test_token_records_parse_or_raise_the_documented_errors",
        1.8,
        1.8,
    ),
    LongTest(
        "tests/test_redis_store.py::test_a_crashed_holder_blocks_others_at_most_lock_ttl",
        2.9,
        0.0,
    ),
    LongTest(
        "tests/test_logging.py::test_no_token_tail_survives_in_any_frame_form",
        1.5,
        1.5,
    ),
    LongTest(
        "tests/reliability/test_fuzz.py::test_api_answers_are_typed",
        1.4,
        1.4,
    ),
    LongTest(
        "tests/reliability/test_fuzz.py::test_token_endpoint_answers_are_typed",
        1.3,
        1.3,
    ),
    LongTest(
        "tests/test_server_time.py::test_floor_caps_logins_when_the_server_hands_out_short_lived_tokens",
        2.2,
        0.4,
    ),
    LongTest(
        "tests/test_event_buffer.py::test_props_flood_with_no_consumer_stays_bounded_and_resyncs",
        2.3,
        0.4,
    ),
    LongTest(
        "tests/reliability/test_faults.py::test_fault[redis-down-at-renewal]",
        2.3,
        0.2,
    ),
    LongTest(
        "tests/reliability/test_faults.py::test_fault[redis-restart]",
        2.3,
        0.2,
    ),
    LongTest(
        "tests/test_budget.py::test_a_store_outage_falls_back_to_a_local_budget",
        2.1,
        0.1,
    ),
    LongTest(
        "tests/reliability/test_faults.py::test_fault[token-timeout]",
        2.0,
        0.1,
    ),
    LongTest(
        "tests/test_orders.py::test_a_lost_socket_answer_reconciles_too",
        2.0,
        0.1,
    ),
    LongTest(
        "tests/test_market_data.py::test_chart_refetch_after_a_long_outage_takes_pages",
        1.9,
        0.1,
    ),
    LongTest(
        "tests/reliability/test_faults.py::test_fault[http-trickle]",
        2.0,
        0.0,
    ),
    LongTest(
        "tests/test_http_bounds.py::test_trickling_token_endpoint_cannot_keep_a_login_past_its_deadline",
        2.0,
        0.0,
    ),
    LongTest(
        "tests/test_fleet.py::test_eight_processes_through_redis_make_one_login",
        1.9,
        0.1,
    ),
    LongTest(
        "tests/test_fleet.py::test_eight_processes_on_one_file_store_make_one_login",
        1.9,
        0.0,
    ),
    LongTest(
        "tests/test_redis_store.py::test_store_errors_while_redis_is_down_and_works_after_restart",
        1.6,
        0.0,
    ),
    LongTest(
        "tests/test_redis_store.py::test_a_long_holder_keeps_its_lock",
        1.5,
        0.0,
    ),
    LongTest(
        "tests/test_aiohttp_backend.py::test_a_trickling_rest_answer_ends_at_the_deadline[httpx]",
        1.5,
        0.0,
    ),
    LongTest(
        "tests/test_aiohttp_backend.py::test_a_trickling_rest_answer_ends_at_the_deadline[aiohttp]",
        1.5,
        0.0,
    ),
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deal :data:`LONG_TESTS` out to the xdist workers first (tests/schedule.py); every worker
    computes the same order, as xdist requires."""
    workerinput = getattr(config, "workerinput", None)
    workers = int(workerinput["workercount"]) if workerinput else 1
    items[:] = schedule.order(items, {item: item.nodeid for item in items}, LONG_TESTS, workers)


# --- simulator fixtures (lead) -----------------------------------------------------------

import logging  # noqa: E402
from collections.abc import AsyncIterator, Iterator  # noqa: E402

from tradovate_async._config import TradovateConfig  # noqa: E402
from tradovate_async.sim import SimulatedTradovate, SimUser  # noqa: E402

SIM_USER = SimUser()


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedTradovate]:
    """A simulator with 90-minute tokens on a free loopback port."""
    async with SimulatedTradovate() as server:
        yield server


@pytest.fixture
def config(sim: SimulatedTradovate) -> TradovateConfig:
    return sim.config()


class RecordCollector(logging.Handler):
    """Keeps every record (formatted) of every logger, for secret scans."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.texts.append(f"{record.name} {text}")

    def find(self, *needles: str) -> list[str]:
        return [t for t in self.texts for n in needles if n and n in t]


@pytest.fixture
def debug_logs() -> Iterator[RecordCollector]:
    """Every logger at DEBUG (httpx, httpcore, websockets, ours) into one collector."""
    collector = RecordCollector()
    root = logging.getLogger()
    names = ["", "tradovate_async", "httpx", "httpcore", "websockets", "uvicorn"]
    saved = {name: logging.getLogger(name).level for name in names}
    root.addHandler(collector)
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield collector
    finally:
        root.removeHandler(collector)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


# --- token store fixtures: real redis-server, python child processes (token stores) -----------

import signal  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402

import anyio  # noqa: E402
import anyio.abc  # noqa: E402
from anyio.streams.buffered import BufferedByteReceiveStream  # noqa: E402

from tests.forked import ForkedProcess, spawn_code  # noqa: E402  (one fork server per process)

try:  # tests/ is a rootdir (no __init__.py) today; keep working if it becomes a package
    from redis_server import RedisServer
except ImportError:  # pragma: no cover
    from tests.redis_server import RedisServer

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the whole run (tests isolate themselves with a key prefix)."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def private_redis_server() -> Iterator[RedisServer]:
    """A redis-server of the test's own, for tests that stop or restart it."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


class ChildProcess:
    """A ``python -c`` child speaking lines on stdin/stdout (stderr goes to pytest's capture)."""

    def __init__(self, process: ForkedProcess) -> None:
        self.process = process
        assert process.stdout is not None
        self._stdout = BufferedByteReceiveStream(process.stdout)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def readline(self, within: float = 20.0) -> str:
        """The next line of stdout, without its newline."""
        with anyio.fail_after(within):
            return (await self._stdout.receive_until(b"\n", 1 << 16)).decode()

    async def send(self, line: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send(line.encode() + b"\n")

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    async def kill(self) -> None:
        """SIGKILL, then reap."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
        await self.wait()

    async def wait(self, within: float = 20.0) -> int:
        with anyio.fail_after(within):
            return await self.process.wait()


SpawnPython = Callable[..., Awaitable[ChildProcess]]


@pytest.fixture
async def spawn_python() -> AsyncIterator[SpawnPython]:
    """Start ``python -c code *args`` children that import this checkout; all killed at the end.
    They are forked from a server that has imported the library (tests/forked.py): each is a
    process of its own, without a fresh interpreter's 0.5 s of imports."""
    children: list[ChildProcess] = []
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"

    async def spawn(code: str, *args: str) -> ChildProcess:
        process = await spawn_code(code, args, env=env, cwd=REPO_ROOT)
        child = ChildProcess(process)
        children.append(child)
        return child

    try:
        yield spawn
    finally:
        with anyio.CancelScope(shield=True):
            for child in children:
                await child.kill()  # SIGKILL also ends a child stopped with SIGSTOP
                await child.process.aclose()
