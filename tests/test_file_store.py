"""FileTokenStore against the real file system and real processes (no mocks).

The multi-process tests start ``python -c`` children through the ``spawn_python`` fixture;
each child prints one line per step so that the parent can follow it.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import stat
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from tests.tokens import make_token
from tradovate_async._errors import ConfigError, TokenStoreError
from tradovate_async._file_store import ENCRYPTION_KEY_ENV, FileTokenStore
from tradovate_async._models import AccessToken

KEY = "demo|bot-user|app"
LOGGER = "tradovate_async._file_store"

Spawn = Callable[..., Awaitable[Any]]  # the spawn_python fixture (tests/conftest.py)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """A permissive umask, so that modes 0700/0600 can only come from the store."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def names_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def read_document(path: Path) -> Any:
    """The file's JSON; raises if it is torn."""
    return json.loads(path.read_bytes())


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING
    ]


# -- basics ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("umask_022")
async def test_creates_private_directories_and_file(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "tokens.json"
    os.chmod(tmp_path, 0o755)
    store = FileTokenStore(path)
    await store.save(KEY, make_token())

    for directory in (tmp_path / "a", tmp_path / "a" / "b"):
        assert mode(directory) == 0o700
    assert mode(path) == 0o600
    assert mode(Path(f"{path}.lock")) == 0o600
    # An existing directory keeps its mode: the store only restricts what it creates.
    assert mode(tmp_path) == 0o755


@pytest.mark.usefixtures("umask_022")
async def test_rewrite_restores_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    store = FileTokenStore(path)
    await store.save(KEY, make_token(1))
    path.chmod(0o644)
    await store.save(KEY, make_token(2, minutes=100))
    assert mode(path) == 0o600


async def test_expands_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    store = FileTokenStore("~/.tradovate/tokens.json")
    assert store.path == tmp_path / ".tradovate" / "tokens.json"
    await store.save(KEY, make_token())
    assert (tmp_path / ".tradovate" / "tokens.json").is_file()


async def test_round_trip_many_keys_and_envelope(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    store = FileTokenStore(path)
    assert await store.load(KEY) is None
    first, second = make_token(1), make_token(2)
    await store.save(KEY, first)
    await store.save("live|other|app", second)

    assert await store.load(KEY) == first
    assert await store.load("live|other|app") == second
    document = json.loads(path.read_text())
    assert document["format"] == "tradovate-async/tokens"
    assert document["version"] == 1
    assert set(document["tokens"]) == {KEY, "live|other|app"}

    await store.delete(KEY)
    assert await store.load(KEY) is None
    assert await store.load("live|other|app") == second
    await store.delete("missing")  # no error


async def test_save_never_replaces_a_token_that_expires_later(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    one, other = FileTokenStore(path), FileTokenStore(path)
    late = make_token(1, minutes=90)
    await one.save(KEY, late)
    await other.save(KEY, make_token(2, minutes=30))
    assert await one.load(KEY) == late
    newer = make_token(3, minutes=120)
    await other.save(KEY, newer)
    assert await one.load(KEY) == newer


async def test_repr_and_errors_hold_no_secret(tmp_path: Path) -> None:
    key = FileTokenStore.generate_key()
    store = FileTokenStore(tmp_path / "tokens.json", encryption_key=key)
    await store.save(KEY, make_token(secret="SUPER-SECRET-ACCESS"))
    text = repr(store)
    assert str(tmp_path / "tokens.json") in text
    assert "SUPER-SECRET" not in text and key not in text
    with pytest.raises(ConfigError) as info:
        FileTokenStore(tmp_path / "x.json", encryption_key="not-a-key-but-a-secret-phrase")
    assert "secret-phrase" not in str(info.value)


# -- damaged files -------------------------------------------------------------------------------


def _valid_document() -> bytes:
    record = make_token(7, secret="OLD-SECRET-IN-FILE").to_record()
    doc = {"format": "tradovate-async/tokens", "version": 1, "tokens": {KEY: record}}
    return json.dumps(doc).encode()


DAMAGED = {
    "garbage": b"\x00\x01not json at all{{",
    "truncated": _valid_document()[:60],
    "empty": b"",
    "foreign-object": b'{"hello": "world", "tokens": []}',
    "foreign-list": b"[1, 2, 3]",
    "newer-version": b'{"format": "tradovate-async/tokens", "version": 2, "tokens": {}}',
    "bad-table": b'{"format": "tradovate-async/tokens", "version": 1, "tokens": [1]}',
    "encrypted-but-no-key": (
        b'{"format": "tradovate-async/tokens", "version": 1, "encryption": "fernet", '
        b'"tokens": "gAAAAABnot-really"}'
    ),
}


@pytest.mark.parametrize("content", DAMAGED.values(), ids=DAMAGED.keys())
async def test_damaged_file_reads_as_empty_then_save_replaces_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    path = tmp_path / "tokens.json"
    path.write_bytes(content)
    store = FileTokenStore(path)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert await store.load(KEY) is None
    messages = warnings_of(caplog)
    assert len(messages) == 1 and str(path) in messages[0]
    assert "OLD-SECRET" not in caplog.text

    token = make_token(1)
    await store.save(KEY, token)
    assert await store.load(KEY) == token


async def test_malformed_record_is_ignored_and_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tokens.json"
    doc = {
        "format": "tradovate-async/tokens",
        "version": 1,
        "tokens": {KEY: {"accessToken": "LEAKY-SECRET"}, "other": make_token(2).to_record()},
    }
    path.write_text(json.dumps(doc))
    path.chmod(0o600)  # a mode readable by others would add its own WARNING
    store = FileTokenStore(path)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert await store.load(KEY) is None
    assert len(warnings_of(caplog)) == 1 and "LEAKY-SECRET" not in caplog.text
    await store.save(KEY, make_token(1))
    assert (await store.load(KEY)) is not None
    assert (await store.load("other")) == AccessToken.from_record(doc["tokens"]["other"])


async def test_unreadable_path_loads_none_and_save_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tokens.json"
    path.mkdir()  # reading a directory fails with an OSError, even for root
    store = FileTokenStore(path)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert await store.load(KEY) is None
    assert len(warnings_of(caplog)) == 1
    with pytest.raises(TokenStoreError):
        await store.save(KEY, make_token())


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
async def test_permission_denied_loads_none_and_save_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tokens.json"
    store = FileTokenStore(path)
    await store.save(KEY, make_token())
    path.chmod(0)
    try:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            assert await store.load(KEY) is None
        assert len(warnings_of(caplog)) == 1
        with pytest.raises(TokenStoreError):
            await store.save(KEY, make_token(2, minutes=200))
    finally:
        path.chmod(0o600)


async def test_unwritable_location_raises_token_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    store = FileTokenStore(blocker / "tokens.json", lock_wait=1.0)
    with pytest.raises(TokenStoreError):
        await store.save(KEY, make_token())
    assert await store.load(KEY) is None


# -- encryption --------------------------------------------------------------------------------


async def test_encryption_round_trip_leaves_no_token_text(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    key = FileTokenStore.generate_key()
    store = FileTokenStore(path, encryption_key=key)
    assert store.encrypted
    token = make_token(4242, secret="eyJhbGciOiJIUzI1NiJ9.SECRET-PAYLOAD")
    await store.save(KEY, token)

    raw = path.read_bytes()
    for needle in (b"SECRET-PAYLOAD", b"md-secret-4242", b"bot-user", b"accessToken", b"4242"):
        assert needle not in raw
    assert key.encode() not in raw
    assert json.loads(raw)["encryption"] == "fernet"
    assert await store.load(KEY) == token
    # bytes keys work as well
    assert await FileTokenStore(path, encryption_key=key.encode()).load(KEY) == token


async def test_wrong_key_or_plain_file_reads_as_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tokens.json"
    await FileTokenStore(path, encryption_key=FileTokenStore.generate_key()).save(KEY, make_token())
    other = FileTokenStore(path, encryption_key=FileTokenStore.generate_key())
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert await other.load(KEY) is None
        assert len(warnings_of(caplog)) == 1
        assert await FileTokenStore(path).load(KEY) is None  # encrypted file, no key
        assert len(warnings_of(caplog)) == 2

    plain = tmp_path / "plain.json"
    await FileTokenStore(plain).save(KEY, make_token())
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert (
            await FileTokenStore(plain, encryption_key=FileTokenStore.generate_key()).load(KEY)
            is None
        )
    assert len(warnings_of(caplog)) == 3

    replacement = make_token(9)
    await other.save(KEY, replacement)
    assert await other.load(KEY) == replacement


def test_from_env(tmp_path: Path) -> None:
    key = FileTokenStore.generate_key()
    assert FileTokenStore.from_env(tmp_path / "t.json", environ={ENCRYPTION_KEY_ENV: key}).encrypted
    assert not FileTokenStore.from_env(tmp_path / "t.json", environ={}).encrypted
    with pytest.raises(ConfigError) as missing:
        FileTokenStore.from_env(tmp_path / "t.json", environ={}, required=True)
    assert ENCRYPTION_KEY_ENV in str(missing.value)
    with pytest.raises(ConfigError) as bad:
        FileTokenStore.from_env(tmp_path / "t.json", environ={ENCRYPTION_KEY_ENV: "hunter2-pass"})
    assert ENCRYPTION_KEY_ENV in str(bad.value) and "hunter2" not in str(bad.value)


# -- locking within one process ------------------------------------------------------------------


async def test_lock_excludes_other_tasks_and_is_reentrant_for_its_holder(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path / "tokens.json", lock_wait=5.0)
    inside = 0
    most = 0

    async def worker(n: int) -> None:
        nonlocal inside, most
        async with store.lock(KEY):
            inside += 1
            most = max(most, inside)
            await anyio.sleep(0.02)
            async with store.lock(KEY):  # re-entrant for the holder
                await store.save(KEY, make_token(n, minutes=60 + n))
            inside -= 1

    async with anyio.create_task_group() as tg:
        for n in range(6):
            tg.start_soon(worker, n)
    assert most == 1
    token = await store.load(KEY)
    assert token is not None and token.user_id == 5


async def test_lock_wait_raises_and_load_does_not_wait(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path / "tokens.json", lock_wait=0.3)
    await store.save(KEY, make_token())
    other_instance = FileTokenStore(tmp_path / "tokens.json", lock_wait=0.3)
    async with store.lock(KEY):
        for contender in (store, other_instance):  # another task; another open file
            with anyio.fail_after(2):
                async with anyio.create_task_group() as tg:

                    async def try_lock(s: FileTokenStore = contender) -> None:
                        with pytest.raises(TokenStoreError, match="timed out"):
                            async with s.lock(KEY):
                                pytest.fail("got a lock that is held")

                    tg.start_soon(try_lock)
        # A load that waited for the lock would take reader's 30 s: it does not wait.
        reader = FileTokenStore(tmp_path / "tokens.json", lock_wait=30.0)
        with anyio.fail_after(5):
            assert await reader.load(KEY) is not None
    async with other_instance.lock(KEY):  # free again
        pass


async def test_cancelled_waiter_and_failing_holder_leave_the_lock_free(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path / "tokens.json", lock_wait=2.0)
    with pytest.raises(RuntimeError):
        async with store.lock(KEY):
            raise RuntimeError("boom")
    async with store.lock(KEY):
        with anyio.move_on_after(0.1):
            async with anyio.create_task_group() as tg:

                async def waiter() -> None:
                    async with store.lock(KEY):
                        pytest.fail("got a lock that is held")

                tg.start_soon(waiter)
    with anyio.fail_after(1):
        async with store.lock(KEY):
            pass


async def test_concurrent_saves_of_many_keys_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    stores = [FileTokenStore(path), FileTokenStore(path)]
    async with anyio.create_task_group() as tg:
        for n in range(30):
            tg.start_soon(stores[n % 2].save, f"key-{n}", make_token(n))
    document = json.loads(path.read_text())
    assert len(document["tokens"]) == 30


# -- several processes -----------------------------------------------------------------------------

CHILD_PRELUDE = """
import datetime as dt, os, sys, time
import anyio
from tradovate_async._file_store import FileTokenStore
from tradovate_async._models import AccessToken
from tradovate_async._secret import Secret

def make_token(n, minutes=90.0, name="bot-user"):
    now = dt.datetime.now(dt.UTC)
    return AccessToken(access_token=Secret(f"child-secret-{n}"),
                       expiration_time=now + dt.timedelta(minutes=minutes),
                       user_id=n, name=name, issued_at=now)
"""

EXCLUSIVE_CHILD = (
    CHILD_PRELUDE
    + """
path, key, go = sys.argv[1:4]
store = FileTokenStore(path, lock_wait=20)
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.002)

async def main():
    async with store.lock(key):
        if await store.load(key) is None:
            await anyio.sleep(0.3)  # a slow login: without the lock every child gets here
            await store.save(key, make_token(os.getpid()))
            print("wrote", flush=True)
        else:
            print("found", flush=True)

anyio.run(main)
"""
)


async def test_eight_processes_make_exactly_one_login(tmp_path: Path, spawn_python: Spawn) -> None:
    path, go = tmp_path / "tokens.json", tmp_path / "go"
    children = [await spawn_python(EXCLUSIVE_CHILD, str(path), KEY, str(go)) for _ in range(8)]
    for child in children:
        assert await child.readline() == "ready"
    go.touch()
    outcomes = [await child.readline() for child in children]
    for child in children:
        assert await child.wait() == 0
    writers = [child.pid for child, out in zip(children, outcomes, strict=True) if out == "wrote"]
    assert len(writers) == 1, outcomes
    assert outcomes.count("found") == 7
    token = await FileTokenStore(path).load(KEY)
    assert token is not None and token.user_id == writers[0]


WRITER_CHILD = (
    CHILD_PRELUDE
    + """
path, key = sys.argv[1:3]
store = FileTokenStore(path, lock_wait=20)

padding = "x" * 200_000  # a big file makes a long write, easy to interrupt or to read torn

async def main():
    n = 0
    while True:
        n += 1
        # Later saves expire later (wall clock), so that none is skipped as older.
        await store.save(key, make_token(os.getpid(), minutes=60, name=padding))
        if n == 1:
            print("ready", flush=True)
            sys.stdin.readline()  # the test says go once every writer is ready

anyio.run(main)
"""
)


async def test_killed_writers_never_leave_a_broken_file(
    tmp_path: Path, spawn_python: Spawn, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGKILL writers in the middle of their write loops: readers (which take no lock) and
    the survivors always find the old or the new file, never a torn one."""
    path = tmp_path / "tokens.json"
    store = FileTokenStore(path)
    rng = random.Random(1234)
    seen: set[int] = set()
    kills = reads = 0
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _round in range(3):
            children = [await spawn_python(WRITER_CHILD, str(path), KEY) for _ in range(5)]
            for child in children:
                assert await child.readline() == "ready"
            for child in children:  # all five write from here on, until killed
                await child.send("go")
            for child in children:
                until = anyio.current_time() + rng.uniform(0.0, 0.04)
                while anyio.current_time() < until:  # read while the others write
                    assert read_document(path)["format"] == "tradovate-async/tokens"
                    reads += 1
                    await anyio.lowlevel.checkpoint()
                await child.kill()
                kills += 1
                assert read_document(path)["format"] == "tradovate-async/tokens"
                token = await store.load(KEY)
                assert token is not None
                seen.add(token.user_id)
    assert kills == 15 and reads > 50
    assert len(seen) > 1  # the writers really were writing while killed
    assert warnings_of(caplog) == []
    # The temporary files of killed writers are swept by the next save.
    await store.save(KEY, make_token(1, minutes=600))
    assert names_in(tmp_path) == ["tokens.json", "tokens.json.lock"]


HOLDER_CHILD = (
    CHILD_PRELUDE
    + """
path, key = sys.argv[1:3]
store = FileTokenStore(path, lock_wait=20)

async def main():
    async with store.lock(key):
        print("locked", flush=True)
        await anyio.sleep(60)

anyio.run(main)
"""
)


async def test_a_holder_killed_with_sigkill_does_not_block_others(
    tmp_path: Path, spawn_python: Spawn
) -> None:
    path = tmp_path / "tokens.json"
    child = await spawn_python(HOLDER_CHILD, str(path), KEY)
    assert await child.readline() == "locked"
    with pytest.raises(TokenStoreError):  # it really holds the lock
        async with FileTokenStore(path, lock_wait=0.3).lock(KEY):
            pass
    child.signal(signal.SIGKILL)
    await child.wait()
    start = anyio.current_time()
    async with FileTokenStore(path, lock_wait=10.0).lock(KEY):
        # far less than lock_wait: the OS released the dead holder's lock (no threshold under
        # 1 s: the machine may be loaded)
        assert anyio.current_time() - start < 5.0


SAVER_CHILD = (
    CHILD_PRELUDE
    + """
path, name, go = sys.argv[1:4]
store = FileTokenStore(path, lock_wait=20)
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.002)

async def main():
    for n in range(15):
        await store.save(f"{name}-{n}", make_token(n))
    print("done", flush=True)

anyio.run(main)
"""
)


async def test_processes_saving_different_keys_lose_no_update(
    tmp_path: Path, spawn_python: Spawn
) -> None:
    path, go = tmp_path / "tokens.json", tmp_path / "go"
    children = [await spawn_python(SAVER_CHILD, str(path), f"p{i}", str(go)) for i in range(4)]
    for child in children:
        assert await child.readline() == "ready"
    go.touch()
    for child in children:
        assert await child.readline() == "done"
    assert len(json.loads(path.read_text())["tokens"]) == 60
