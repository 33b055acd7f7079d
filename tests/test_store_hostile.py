"""Token stores against hostile neighbours: planted files, colliding names, leaky URLs."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import threading
import tracemalloc
from pathlib import Path

import anyio
import pytest

from tests.test_session import session_on
from tests.tokens import make_token
from tradovate_async import (
    AccessToken,
    FileTokenStore,
    MemoryTokenStore,
    RedisTokenStore,
    TokenStore,
    TokenStoreError,
    TradovateSession,
)
from tradovate_async.sim import SimulatedTradovate, SimUser, WarpClock

KEY = "demo|bot-user|app"


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6380/0?password=Q-Secret-Pass",
        "redis://bot:Q-Secret-Pass@127.0.0.1:6380/0",
        "redis://Q-Secret-Pass@127.0.0.1:6380/0",
        "rediss://:Q-Secret-Pass@127.0.0.1:6380/0?ssl_cert_reqs=none&username=bot",
        "redis://127.0.0.1:6380/0?db=1&Password=Q-Secret-Pass#Q-Secret-Pass",
        "redis://127.0.0.1:6380/0?pass%77ord=Q-Secret-Pass",
    ],
)
async def test_redis_repr_masks_every_credential(url: str) -> None:
    store = RedisTokenStore(url)
    try:
        shown = repr(store)
    finally:
        await store.aclose()
    assert "Q-Secret" not in shown
    assert "127.0.0.1:6380" in shown


async def test_users_whose_names_contain_the_separator_do_not_share_a_token() -> None:
    first = SimUser(username="alice|ops", app_id="bot", password="pw-first", user_id=1)
    second = SimUser(
        username="alice", app_id="ops|bot", password="pw-second", user_id=2, accounts=()
    )
    clock = WarpClock(speed=1.0)
    store = MemoryTokenStore()
    async with SimulatedTradovate(clock=clock.time, users=(first, second)) as sim:
        one = TradovateSession(sim.config(first), store=store, clock=clock)
        two = TradovateSession(sim.config(second), store=store, clock=clock)
        async with one, two:
            assert one.token.access_token != two.token.access_token
            assert (await one.me()).user_id == 1
            assert (await two.me()).user_id == 2
        assert sim.logins == 2


# ------------------------------------------------------------------ token files


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def _valid_file(path: Path, token: AccessToken, key: str = KEY) -> None:
    doc = {"format": "tradovate-async/tokens", "version": 1, "tokens": {key: token.to_record()}}
    path.write_text(json.dumps(doc))


class _FifoWatchdog:
    """Unblocks a reader stuck on a FIFO after ``delay`` s (by opening it for writing), so a
    library that hangs on the FIFO makes the test fail instead of hanging the suite."""

    def __init__(self, path: Path, delay: float = 10.0) -> None:
        self.fired = False
        self._path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(delay,), daemon=True)
        self._thread.start()

    def _run(self, delay: float) -> None:
        if self._stop.wait(delay):
            return
        self.fired = True
        with contextlib.suppress(OSError):
            fd = os.open(self._path, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


async def test_fifo_at_the_token_path_does_not_hang_the_session_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tokens.json"
    os.mkfifo(path, 0o600)
    watchdog = _FifoWatchdog(path)
    clock = WarpClock(speed=1.0)
    try:
        async with SimulatedTradovate(clock=clock.time) as sim:
            with anyio.move_on_after(5) as scope:
                async with session_on(sim, clock, store=FileTokenStore(path)) as session:
                    await session.get("account/list")
    finally:
        watchdog.stop()
    assert not watchdog.fired and not scope.cancelled_caught
    assert any("not a regular file" in m for m in _warnings(caplog))
    assert path.is_file() and not path.is_symlink()  # replaced by the first save
    assert await FileTokenStore(path).load(sim.config().token_key) is not None


async def test_caller_move_on_after_is_not_held_up_by_a_hung_read(tmp_path: Path) -> None:
    # The caller's own deadline is the bound: load() returns (or is abandoned) within it.
    path = tmp_path / "tokens.json"
    os.mkfifo(path, 0o600)
    watchdog = _FifoWatchdog(path)
    try:
        with anyio.move_on_after(3):
            assert await FileTokenStore(path).load(KEY) is None
    finally:
        watchdog.stop()
    assert not watchdog.fired


async def test_symlink_planted_at_the_token_path_is_not_followed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    elsewhere = tmp_path / "victim.json"
    _valid_file(elsewhere, make_token(7, secret="planted-token-of-someone-else"))
    before = elsewhere.read_bytes()
    path = tmp_path / "tokens.json"
    path.symlink_to(elsewhere)
    store = FileTokenStore(path)
    assert await store.load(KEY) is None
    assert any("symbolic link" in m for m in _warnings(caplog))
    await store.save(KEY, make_token(1))
    assert not path.is_symlink() and elsewhere.read_bytes() == before
    stored = await store.load(KEY)
    assert stored is not None and stored.access_token.reveal() == "access-secret-1"


async def test_huge_token_file_is_not_read_whole(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tokens.json"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.truncate(fd, 64 << 20)  # sparse: 64 MiB that take no disk space
    os.close(fd)
    store = FileTokenStore(path)
    tracemalloc.start()
    try:
        assert await store.load(KEY) is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"peak {peak} bytes"
    assert any("larger than 1048576 bytes" in m for m in _warnings(caplog))
    await store.save(KEY, make_token(1))
    assert path.stat().st_size < 4096


async def test_token_file_readable_by_others_gets_mode_0600(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tokens.json"
    _valid_file(path, make_token(1))
    path.chmod(0o644)
    assert await FileTokenStore(path).load(KEY) is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert any("had mode 0644" in m for m in _warnings(caplog))


async def test_token_file_of_another_user_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    path = tmp_path / "tokens.json"
    _valid_file(path, make_token(1, secret="token-planted-by-uid-4321"))
    path.chmod(0o600)
    os.chown(path, 4321, 4321)
    store = FileTokenStore(path)
    with pytest.raises(TokenStoreError, match=r"owned by another user \(uid 4321"):
        await store.load(KEY)
    with pytest.raises(TokenStoreError, match="owned by another user"):
        await store.save(KEY, make_token(2))
    assert path.stat().st_uid == 4321  # not replaced
    clock = WarpClock(speed=1.0)
    async with SimulatedTradovate(clock=clock.time) as sim:
        async with session_on(sim, clock, store=FileTokenStore(path)) as session:
            assert session.token.access_token.reveal() != "token-planted-by-uid-4321"
            assert session.stats.store_errors == 2  # the load and the save
    assert any("owned by another user" in m for m in _warnings(caplog))


async def test_lock_file_planted_as_a_symlink_is_a_clear_error(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    path = tmp_path / "tokens.json"
    os.symlink(victim, f"{path}.lock")
    store = FileTokenStore(path, lock_wait=2)
    with pytest.raises(TokenStoreError, match="symbolic link.*planted"):
        async with store.lock(KEY):
            pass
    with pytest.raises(TokenStoreError, match="symbolic link"):
        await store.save(KEY, make_token(1))
    assert victim.read_text() == "keep me"


async def test_lock_file_of_another_user_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    path = tmp_path / "tokens.json"
    lock = f"{path}.lock"
    os.close(os.open(lock, os.O_CREAT | os.O_WRONLY, 0o600))
    os.chown(lock, 4321, 4321)
    with pytest.raises(TokenStoreError, match=r"owned by another user \(uid 4321\)"):
        await FileTokenStore(path, lock_wait=2).save(KEY, make_token(1))


# ------------------------------------------------------------------ several event loops


def _hammer(
    store: TokenStore, rounds: int, start: threading.Barrier, errors: list[BaseException]
) -> None:
    """In a thread with its own event loop: lock, check and save, ``rounds`` times."""

    async def main() -> None:
        start.wait(10)
        with anyio.fail_after(30):
            for i in range(rounds):
                async with store.lock(KEY):
                    inside.append(threading.get_ident())
                    await anyio.sleep(0.001)
                    assert len(inside) == 1, "two holders at once"
                    await store.save(KEY, make_token(i))
                    inside.pop()

    try:
        anyio.run(main)
    except BaseException as exc:
        errors.append(exc)


inside: list[int] = []


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_store_shared_by_threads_with_their_own_event_loops(tmp_path: Path, kind: str) -> None:
    store: TokenStore = (
        MemoryTokenStore() if kind == "memory" else FileTokenStore(tmp_path / "tokens.json")
    )
    inside.clear()
    errors: list[BaseException] = []
    start = threading.Barrier(2)
    threads = [
        threading.Thread(target=_hammer, args=(store, 100, start, errors), daemon=True)
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert errors == []

    async def final() -> AccessToken | None:
        return await store.load(KEY)

    assert anyio.run(final) is not None
