"""RedisTokenStore against a real redis-server and real processes (no mocks).

Every test works under its own key prefix on the session's server (``redis_server``); the
restart test has a server of its own (``private_redis_server``).
"""

from __future__ import annotations

import json
import logging
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import pytest
import redis.asyncio

from tests.tokens import make_token
from tradovate_async._errors import TokenStoreError
from tradovate_async._redis_store import RedisTokenStore

KEY = "demo|bot-user|app"
LOGGER = "tradovate_async._redis_store"

if TYPE_CHECKING:
    from redis_server import RedisServer

Spawn = Callable[..., Awaitable[Any]]  # the spawn_python fixture (tests/conftest.py)


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain client, to look at and tamper with what the store wrote."""
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def make_store(
    redis_server: RedisServer, prefix: str
) -> AsyncIterator[Callable[..., RedisTokenStore]]:
    """Stores on the session server under this test's prefix; all closed at the end."""
    stores: list[RedisTokenStore] = []

    def make(**options: Any) -> RedisTokenStore:
        options.setdefault("prefix", prefix)
        options.setdefault("lock_ttl", 1.0)
        options.setdefault("lock_wait", 5.0)
        store = RedisTokenStore(redis_server.url, **options)
        stores.append(store)
        return store

    try:
        yield make
    finally:
        for store in stores:
            await store.aclose()


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING
    ]


# -- records -------------------------------------------------------------------------------------


async def test_round_trip_with_ttl_until_expiry(
    make_store: Callable[..., RedisTokenStore], raw: redis.asyncio.Redis, prefix: str
) -> None:
    store = make_store()
    assert await store.load(KEY) is None
    token = make_token(minutes=30)
    await store.save(KEY, token)
    assert await store.load(KEY) == token

    ttl_ms = await raw.pttl(f"{prefix}:token:{KEY}")
    assert 29 * 60_000 < ttl_ms <= 30 * 60_000
    record = json.loads(await raw.get(f"{prefix}:token:{KEY}"))
    assert record["format"] == "tradovate-async/token" and record["token"]["userId"] == 1

    await store.delete(KEY)
    assert await store.load(KEY) is None


async def test_save_never_replaces_a_token_that_expires_later(
    make_store: Callable[..., RedisTokenStore],
) -> None:
    one, other = make_store(), make_store()
    late = make_token(1, minutes=90)
    await one.save(KEY, late)
    await other.save(KEY, make_token(2, minutes=30))
    assert await one.load(KEY) == late
    newer = make_token(3, minutes=120)
    await other.save(KEY, newer)
    assert await one.load(KEY) == newer
    await other.save(KEY, make_token(4, minutes=-1))  # expired: not stored
    assert await one.load(KEY) == newer


@pytest.mark.parametrize(
    "garbage",
    [b"\xff\xfe not json", b'{"format": "something-else"}', b"[1, 2]", b'{"format": ', b"hash"],
    ids=["binary", "foreign", "list", "truncated", "another-redis-type"],
)
async def test_foreign_record_reads_as_none_then_save_replaces_it(
    make_store: Callable[..., RedisTokenStore],
    raw: redis.asyncio.Redis,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
    garbage: bytes,
) -> None:
    if garbage == b"hash":
        await raw.hset(f"{prefix}:token:{KEY}", "accessToken", "LEAKY-SECRET")
    else:
        await raw.set(f"{prefix}:token:{KEY}", garbage)
    store = make_store()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert await store.load(KEY) is None
    assert len(warnings_of(caplog)) == 1 and "LEAKY-SECRET" not in caplog.text
    token = make_token()
    await store.save(KEY, token)
    assert await store.load(KEY) == token


async def test_repr_masks_password_and_holds_no_token(
    make_store: Callable[..., RedisTokenStore], redis_server: RedisServer
) -> None:
    store = make_store()
    await store.save(KEY, make_token(secret="SUPER-SECRET-ACCESS"))
    assert "SUPER-SECRET" not in repr(store)
    assert redis_server.url in repr(store)
    masked = RedisTokenStore("redis://bot:pa55word@10.0.0.1:6380/2")
    try:
        assert "pa55word" not in repr(masked)
        assert "10.0.0.1:6380" in repr(masked)
    finally:
        await masked.aclose()


async def test_given_client_is_used_and_not_closed(
    redis_server: RedisServer, raw: redis.asyncio.Redis, prefix: str
) -> None:
    store = RedisTokenStore(client=raw, prefix=prefix)
    await store.save(KEY, make_token())
    await store.aclose()
    assert await raw.ping()  # still usable
    assert await raw.exists(f"{prefix}:token:{KEY}") == 1


# -- locking within one process ------------------------------------------------------------------


async def test_lock_excludes_other_tasks_and_stores(
    make_store: Callable[..., RedisTokenStore],
) -> None:
    stores = [make_store(), make_store()]
    inside = most = 0

    async def worker(n: int) -> None:
        nonlocal inside, most
        store = stores[n % 2]
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
    token = await stores[0].load(KEY)
    assert token is not None and token.user_id == 5


async def test_lock_wait_raises(make_store: Callable[..., RedisTokenStore]) -> None:
    holder, waiter = make_store(), make_store(lock_wait=0.3)
    async with holder.lock(KEY):
        start = anyio.current_time()
        with pytest.raises(TokenStoreError, match="timed out"):
            async with waiter.lock(KEY):
                pytest.fail("got a lock that is held")
        assert 0.25 < anyio.current_time() - start < 1.0
    async with waiter.lock(KEY):  # free again
        pass


async def test_a_long_holder_keeps_its_lock(
    make_store: Callable[..., RedisTokenStore], raw: redis.asyncio.Redis, prefix: str
) -> None:
    """The lock lives 0.5 s, the holder keeps it 1.5 s: the renewal task extends it."""
    holder = make_store(lock_ttl=0.5)
    waiter = make_store(lock_wait=1.2)
    async with holder.lock(KEY):
        with pytest.raises(TokenStoreError):
            async with waiter.lock(KEY):
                pytest.fail("got a lock that is held")
        await anyio.sleep(0.3)
        assert await raw.pttl(f"{prefix}:lock:{KEY}") > 0
        await holder.save(KEY, make_token())  # still ours: accepted
    assert await raw.exists(f"{prefix}:lock:{KEY}") == 0  # released on exit
    assert await waiter.load(KEY) is not None


async def test_errors_in_the_body_propagate_unchanged_and_release(
    make_store: Callable[..., RedisTokenStore], raw: redis.asyncio.Redis, prefix: str
) -> None:
    class Abort(BaseException):
        pass

    store = make_store()
    for error in (KeyError("boom"), Abort()):
        with pytest.raises(type(error)):  # not an ExceptionGroup from the renewal task group
            async with store.lock(KEY):
                raise error
        assert await raw.exists(f"{prefix}:lock:{KEY}") == 0
    with anyio.move_on_after(0.05):
        async with store.lock(KEY):
            await anyio.sleep(1)
    assert await raw.exists(f"{prefix}:lock:{KEY}") == 0
    async with store.lock(KEY):
        pass


async def test_a_holder_that_lost_its_lock_cannot_overwrite(
    make_store: Callable[..., RedisTokenStore], raw: redis.asyncio.Redis, prefix: str
) -> None:
    """The lock vanishes under its holder (as after a long pause); the next holder stores a
    token; the first holder's save of a later-expiring token is refused."""
    first, second = make_store(), make_store()
    async with first.lock(KEY):
        await raw.delete(f"{prefix}:lock:{KEY}")
        async with second.lock(KEY):
            mine = make_token(2, minutes=60)
            await second.save(KEY, mine)
        with pytest.raises(TokenStoreError, match="lock"):
            await first.save(KEY, make_token(1, minutes=600))
    assert await second.load(KEY) == mine
    # Outside any lock, the usual rule applies: a later token replaces an earlier one.
    await first.save(KEY, make_token(1, minutes=600))
    stored = await second.load(KEY)
    assert stored is not None and stored.user_id == 1


async def test_a_stale_holder_leaving_does_not_free_the_next_holders_lock(
    make_store: Callable[..., RedisTokenStore], raw: redis.asyncio.Redis, prefix: str
) -> None:
    first, second = make_store(), make_store()
    second_holds, first_left = anyio.Event(), anyio.Event()

    async def second_holder() -> None:
        async with second.lock(KEY):
            second_holds.set()
            await first_left.wait()
            await second.save(KEY, make_token(2))  # still ours

    async with anyio.create_task_group() as tg:
        async with first.lock(KEY):
            await raw.delete(f"{prefix}:lock:{KEY}")  # first's lock vanishes
            tg.start_soon(second_holder)
            await second_holds.wait()
        first_left.set()
        assert await raw.exists(f"{prefix}:lock:{KEY}") == 1
    stored = await first.load(KEY)
    assert stored is not None and stored.user_id == 2


async def test_fencing_numbers_increase_and_are_recorded(
    make_store: Callable[..., RedisTokenStore], raw: redis.asyncio.Redis, prefix: str
) -> None:
    store = make_store()
    fences = []
    for minutes in (10, 20, 30):
        async with store.lock(KEY):
            await store.save(KEY, make_token(minutes=minutes))
            fences.append(json.loads(await raw.get(f"{prefix}:token:{KEY}"))["fence"])
    assert fences == sorted(fences) and len(set(fences)) == 3
    assert int(await raw.get(f"{prefix}:fence:{KEY}")) == fences[-1]


# -- several processes -----------------------------------------------------------------------------

CHILD_PRELUDE = """
import datetime as dt, os, sys, time
import anyio
from tradovate_async._redis_store import RedisTokenStore
from tradovate_async._models import AccessToken
from tradovate_async._secret import Secret

def make_token(n, minutes=90.0):
    now = dt.datetime.now(dt.UTC)
    return AccessToken(access_token=Secret(f"child-secret-{n}"),
                       expiration_time=now + dt.timedelta(minutes=minutes),
                       user_id=n, name="bot-user", issued_at=now)

url, prefix, key = sys.argv[1:4]
"""

EXCLUSIVE_CHILD = (
    CHILD_PRELUDE
    + """
go = sys.argv[4]
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.002)

async def main():
    store = RedisTokenStore(url, prefix=prefix, lock_ttl=1.0, lock_wait=20)
    async with store.lock(key):
        if await store.load(key) is None:
            await anyio.sleep(0.3)  # a slow login: without the lock every child gets here
            await store.save(key, make_token(os.getpid()))
            print("wrote", flush=True)
        else:
            print("found", flush=True)
    await store.aclose()

anyio.run(main)
"""
)


async def test_eight_processes_make_exactly_one_login(
    redis_server: RedisServer,
    prefix: str,
    tmp_path: Any,
    spawn_python: Spawn,
    make_store: Callable[..., RedisTokenStore],
) -> None:
    go = tmp_path / "go"
    args = (redis_server.url, prefix, KEY, str(go))
    children = [await spawn_python(EXCLUSIVE_CHILD, *args) for _ in range(8)]
    for child in children:
        assert await child.readline() == "ready"
    go.touch()
    outcomes = [await child.readline() for child in children]
    for child in children:
        assert await child.wait() == 0
    writers = [child.pid for child, out in zip(children, outcomes, strict=True) if out == "wrote"]
    assert len(writers) == 1, outcomes
    assert outcomes.count("found") == 7
    token = await make_store().load(KEY)
    assert token is not None and token.user_id == writers[0]


HOLDER_CHILD = (
    CHILD_PRELUDE
    + """
async def main():
    store = RedisTokenStore(url, prefix=prefix, lock_ttl=1.0)
    async with store.lock(key):
        print("locked", flush=True)
        await anyio.sleep(60)

anyio.run(main)
"""
)


async def test_a_crashed_holder_blocks_others_at_most_lock_ttl(
    redis_server: RedisServer,
    prefix: str,
    spawn_python: Spawn,
    make_store: Callable[..., RedisTokenStore],
) -> None:
    child = await spawn_python(HOLDER_CHILD, redis_server.url, prefix, KEY)
    assert await child.readline() == "locked"
    await anyio.sleep(1.2)  # past its lock_ttl: only its renewals keep it
    with pytest.raises(TokenStoreError):
        async with make_store(lock_wait=0.3).lock(KEY):
            pytest.fail("got a lock that is held")
    await child.kill()
    killed = anyio.current_time()
    async with make_store(lock_wait=5.0).lock(KEY):
        waited = anyio.current_time() - killed
    assert waited < 1.0 + 0.6  # the rest of the lock's 1 s time to live, plus polling


PAUSED_CHILD = (
    CHILD_PRELUDE
    + """
from tradovate_async._errors import TokenStoreError

async def main():
    store = RedisTokenStore(url, prefix=prefix, lock_ttl=0.5)
    async with store.lock(key):
        print("locked", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)  # the parent pauses us meanwhile
        try:
            await store.save(key, make_token(666, minutes=600))
        except TokenStoreError:
            print("refused", flush=True)
        else:
            print("saved", flush=True)

anyio.run(main)
"""
)


async def test_a_paused_holder_cannot_overwrite_the_next_holder(
    redis_server: RedisServer,
    prefix: str,
    spawn_python: Spawn,
    make_store: Callable[..., RedisTokenStore],
) -> None:
    """SIGSTOP a holder past its lock's life (a GC pause, a suspended VM); another process
    takes the lock and stores a token; the resumed holder's save is refused although its
    token expires later."""
    child = await spawn_python(PAUSED_CHILD, redis_server.url, prefix, KEY)
    assert await child.readline() == "locked"
    child.signal(signal.SIGSTOP)
    try:
        store = make_store(lock_wait=3.0)
        async with store.lock(KEY):
            mine = make_token(1, minutes=60)
            await store.save(KEY, mine)
    finally:
        child.signal(signal.SIGCONT)
    await child.send("go")
    assert await child.readline() == "refused"
    assert await store.load(KEY) == mine


# -- Redis down and back ----------------------------------------------------------------------------


async def test_store_errors_while_redis_is_down_and_works_after_restart(
    private_redis_server: RedisServer,
) -> None:
    server = private_redis_server
    store = RedisTokenStore(server.url, prefix="restart", lock_ttl=1.0, lock_wait=1.0)
    try:
        await store.save(KEY, make_token(1))
        async with store.lock(KEY):
            pass
        await anyio.to_thread.run_sync(server.stop)

        with anyio.fail_after(5):
            with pytest.raises(TokenStoreError):
                await store.load(KEY)
            with pytest.raises(TokenStoreError):
                await store.save(KEY, make_token(2))
            with pytest.raises(TokenStoreError):
                async with store.lock(KEY):
                    pytest.fail("locked without Redis")
            with pytest.raises(TokenStoreError):
                await store.delete(KEY)

        await anyio.to_thread.run_sync(server.start)  # same port, empty (no persistence)
        assert await store.load(KEY) is None
        token = make_token(3)
        async with store.lock(KEY):
            await store.save(KEY, token)
        assert await store.load(KEY) == token
    finally:
        await store.aclose()
