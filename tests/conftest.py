"""Shared fixtures: the asyncio backend, the simulator, and a config pointing at it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests import schedule

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

#: Tests of 1.4 s or more, or 1 s of CPU or more, measured alone on a 2-core machine. Under xdist
#: a long test that starts late keeps one worker busy after the others have finished, and that
#: tail set the suite's wall time: tests/schedule.py deals these out to the workers first.
#: tests/test_schedule.py fails when an entry names no collected test.
LONG_TESTS_FILE = Path(__file__).with_name("long_tests.json")
LONG_TESTS = schedule.load(LONG_TESTS_FILE)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--record-long-tests",
        action="store_true",
        help=f"measure every test and write the long ones to {LONG_TESTS_FILE.name} (with -n 0)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("record_long_tests"):
        return
    if config.getoption("numprocesses", default=None):
        raise pytest.UsageError("--record-long-tests measures tests alone: add -n 0")
    config.pluginmanager.register(schedule.Recorder(LONG_TESTS_FILE), "long-tests-recorder")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deal :data:`LONG_TESTS` out to the xdist workers first (tests/schedule.py); every worker
    computes the same order, as xdist requires."""
    workerinput = getattr(config, "workerinput", None)
    workers = int(workerinput["workercount"]) if workerinput else 1
    items[:] = schedule.order(items, lambda item: item.nodeid, LONG_TESTS, workers)


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
