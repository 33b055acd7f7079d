"""Tokens in Redis, shared by every process on every machine that reaches the server.

Why Redis: bots of one user spread over several machines must still make one login and one
renewal per token lifetime (each login opens a server session, two at most; failed logins and
renewals are rate limited). Redis gives them one shared record and one lock per key.

Keys, for a ``prefix`` (default ``tradovate-async``) and a token key ``K``:

- ``{prefix}:token:K``: the token record as JSON, with a TTL that ends when the token expires.
- ``{prefix}:lock:K``: the lock, ``SET NX PX lock_ttl`` with a random owner value.
- ``{prefix}:fence:K``: the fencing counter, incremented at every acquisition.

Design choices, and why:

- The holder extends its lock every ``lock_ttl / 3`` from a background task, so a slow
  login does not lose it; a holder that crashes stops extending it, so it blocks the others at
  most ``lock_ttl``.
- ``save`` runs one Lua script that, for the holder, first checks that the lock still holds the
  holder's owner value, and in every case refuses to replace a token that expires later. Both
  checks and the write are atomic on the server, so a holder that was paused past its lock
  (GC pause, suspended VM, SIGSTOP) and lost it cannot overwrite what the next holder stored:
  its ``save`` raises :class:`~tradovate_async.TokenStoreError` (chosen over a silent skip so
  the session logs it and keeps its in-memory token). The fencing number taken with the lock is
  written into the record, which tells which acquisition stored it.
- Every Redis failure becomes :class:`~tradovate_async.TokenStoreError`; the session logs it and
  goes on with the token it holds. The client reconnects by itself, so once Redis is back (even
  restarted and empty) the same store works again, and the Lua scripts are reloaded on demand.
- The token and lock keys of one token key are not hash-tagged: Redis Cluster is not supported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import random
import re
import secrets
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import anyio

from ._budget import RedisBudget
from ._clock import SYSTEM_CLOCK
from ._errors import TokenStoreError, excerpt
from ._exports import publish
from ._models import AccessToken, token_from_record

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisTokenStore"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

FORMAT: Final = "tradovate-async/token"
VERSION: Final = 1

_REDIS_HINT: Final = (
    "RedisTokenStore needs the 'redis' package: pip install 'tradovate-async[redis]'"
)
_SOCKET_TIMEOUT: Final = 5.0
_POLL_MIN: Final = 0.01
_POLL_MAX: Final = 0.25
_RELEASE_TIMEOUT: Final = 2.0

# KEYS: lock, fence. ARGV: owner, ttl ms. Returns the fencing number, or nil if the lock is taken.
_ACQUIRE: Final = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return false
"""

# KEYS: lock. ARGV: owner, ttl ms. Returns 1 if extended, 0 if the lock is not ours any more.
_EXTEND: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS: lock. ARGV: owner. Deletes the lock only if it is still ours.
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: token, lock. ARGV: record JSON, expiry (epoch ms), ttl ms, owner ('' outside the lock).
# Returns 1 if stored, 0 if the stored token expires later, -1 if the caller's lock is lost.
# Whatever else is under the token key (foreign JSON, another Redis type) is replaced.
_SAVE: Final = """
if ARGV[4] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[4] then
  return -1
end
local current = false
if redis.call('TYPE', KEYS[1])['ok'] == 'string' then
  current = redis.call('GET', KEYS[1])
end
if current then
  local ok, doc = pcall(cjson.decode, current)
  if ok and type(doc) == 'table' then
    local expires = tonumber(doc['expiresAtMs'])
    if expires and expires > tonumber(ARGV[2]) then
      return 0
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""


@dataclasses.dataclass(slots=True)
class _Hold:
    """One acquisition of a key's lock by one task."""

    owner: str
    fence: int
    task: int


class RedisTokenStore:
    """A :class:`~tradovate_async.TokenStore` in Redis, locked across machines.

    ``lock_ttl`` is the lock's time to live in seconds: the longest a crashed holder blocks
    the others (a live holder extends it). ``lock_wait`` bounds the wait for the lock,
    then :class:`~tradovate_async.TokenStoreError`. ``client`` is an existing
    ``redis.asyncio.Redis`` to use instead of one made from ``url``; :meth:`aclose` closes only
    a client the store made itself.

    The lock is re-entrant for the task that holds it; other tasks, even its children, wait.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "tradovate-async",
        lock_ttl: float = 10.0,
        lock_wait: float = 30.0,
        client: Redis | None = None,
    ) -> None:
        if not lock_ttl > 0:
            raise ValueError("lock_ttl must be positive")
        if not lock_wait > 0:
            raise ValueError("lock_wait must be positive")
        try:
            import redis.asyncio
            from redis.asyncio.retry import Retry
            from redis.backoff import ExponentialBackoff
        except ImportError as exc:  # pragma: no cover - the test environment has redis
            raise ImportError(_REDIS_HINT) from exc
        self._url = url
        self._prefix = prefix
        self._lock_ttl = float(lock_ttl)
        self._lock_wait = float(lock_wait)
        self._owns_client = client is None
        if client is None:
            # Short timeouts and few quick retries: a store error only delays sharing (the
            # session keeps its token), while a hung call would delay the session itself.
            client = redis.asyncio.Redis.from_url(
                url,
                socket_timeout=_SOCKET_TIMEOUT,
                socket_connect_timeout=_SOCKET_TIMEOUT,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
            )
        self._client: Redis = client
        self._acquire_script = client.register_script(_ACQUIRE)
        self._extend_script = client.register_script(_EXTEND)
        self._release_script = client.register_script(_RELEASE)
        self._save_script = client.register_script(_SAVE)
        self._holds: dict[str, _Hold] = {}
        self._local: dict[str, anyio.Lock] = {}
        self._budget: RedisBudget | None = None

    def __repr__(self) -> str:
        where = f"url={_mask_url(self._url)!r}" if self._owns_client else "client=<given>"
        return f"RedisTokenStore({where}, prefix={self._prefix!r})"

    def _key(self, kind: str, key: str) -> str:
        return f"{self._prefix}:{kind}:{key}"

    # -- TokenStore -------------------------------------------------------------------------

    async def load(self, key: str) -> AccessToken | None:
        """The stored token, ``None`` if there is none or it is unreadable (logged)."""
        from redis.exceptions import RedisError, ResponseError

        try:
            raw = await self._client.get(self._key("token", key))
        except ResponseError as exc:
            if "WRONGTYPE" not in str(exc):
                raise TokenStoreError(f"Redis GET failed: {_reason(exc)}") from exc
            raw = b"not a string"  # another Redis type under our key: a foreign record
        except (RedisError, OSError) as exc:
            raise TokenStoreError(f"Redis GET failed: {_reason(exc)}") from exc
        if raw is None:
            return None
        token = _parse(raw)
        if token is None:
            logger.warning(
                "ignoring a malformed or foreign token record in Redis under prefix %r; "
                "the next save replaces it",
                self._prefix,
            )
        return token

    async def save(self, key: str, token: AccessToken) -> None:
        """Store ``token`` with a TTL until it expires, unless Redis holds one expiring later.

        Called by the task holding :meth:`lock` for ``key``, the write happens only if the lock
        is still ours; if it was lost, :class:`~tradovate_async.TokenStoreError` and nothing is
        written. An already expired token is not stored. The TTL is counted on the server's
        clock where the token says when the server issued it (``issued_on_server_clock``: the
        lifetime from receipt, which a session saves at once), else on this host's clock, so a
        host whose clock is hours off neither drops a fresh token nor keeps a dead one for
        hours; readers judge freshness themselves on their own estimate of the server's clock.
        """
        expires_ms = int(token.expiration_time.timestamp() * 1000)
        if token.issued_on_server_clock and token.issued_at is not None:
            now_ms = int(token.issued_at.timestamp() * 1000)
        else:
            now_ms = int(SYSTEM_CLOCK.now().timestamp() * 1000)
        ttl_ms = expires_ms - now_ms
        if ttl_ms <= 0:
            logger.debug("not storing a token that has already expired")
            return
        hold = self._own_hold(key)
        payload = json.dumps(
            {
                "format": FORMAT,
                "version": VERSION,
                "expiresAtMs": expires_ms,
                "fence": hold.fence if hold else None,
                "token": token.to_record(),
            },
            separators=(",", ":"),
        )
        result = await self._call(
            "save",
            self._save_script(
                keys=[self._key("token", key), self._key("lock", key)],
                args=[payload, expires_ms, ttl_ms, hold.owner if hold else ""],
            ),
        )
        if result == -1:
            raise TokenStoreError(
                "the Redis token lock expired before the save (held past lock_ttl without "
                "renewal); the token was not stored so as not to overwrite the next holder's"
            )
        if result == 0:
            logger.debug("kept the stored token: it expires later than the one offered")

    async def delete(self, key: str) -> None:
        """Remove the token stored under ``key`` (nothing if there is none)."""
        await self._call("DEL", self._client.delete(self._key("token", key)))

    def rate_budget(self) -> RedisBudget:
        """The request budget shared by every process on this Redis: ``{prefix}:budget:K``."""
        if self._budget is None:
            self._budget = RedisBudget(self._client, self._prefix)
        return self._budget

    def lock(self, key: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Exclusive use of ``key`` across every user of the Redis server."""
        return self._lock(key)

    async def aclose(self) -> None:
        """Close the client if this store created it."""
        if self._owns_client:
            await self._client.aclose()

    # -- locking ----------------------------------------------------------------------------

    def _own_hold(self, key: str) -> _Hold | None:
        hold = self._holds.get(key)
        if hold is not None and hold.task == anyio.get_current_task().id:
            return hold
        return None

    @contextlib.asynccontextmanager
    async def _lock(self, key: str) -> AsyncIterator[None]:
        task = anyio.get_current_task().id
        if self._own_hold(key) is not None:
            yield
            return
        deadline = anyio.current_time() + self._lock_wait
        # Tasks of this process queue here instead of all polling Redis.
        local = self._local.setdefault(key, anyio.Lock())
        try:
            with anyio.fail_after(self._lock_wait):
                await local.acquire()
        except TimeoutError:
            raise TokenStoreError(self._timeout_message()) from None
        try:
            hold = await self._acquire(key, task, deadline)
            self._holds[key] = hold
            error: BaseException | None = None
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._keep_alive, key, hold)
                    try:
                        yield
                    except (anyio.get_cancelled_exc_class(), GeneratorExit):
                        raise  # cancellation is the task group's business
                    except BaseException as exc:
                        # Re-raised below, outside the task group, so that the caller gets
                        # its own exception rather than an ExceptionGroup.
                        error = exc
                    finally:
                        tg.cancel_scope.cancel()
            finally:
                if self._holds.get(key) is hold:
                    del self._holds[key]
                await self._release(key, hold)
            if error is not None:
                try:
                    raise error
                finally:
                    error = None
        finally:
            local.release()

    async def _acquire(self, key: str, task: int, deadline: float) -> _Hold:
        owner = secrets.token_hex(16)
        ttl_ms = max(1, int(self._lock_ttl * 1000))
        keys = [self._key("lock", key), self._key("fence", key)]
        delay = _POLL_MIN
        cap = min(_POLL_MAX, self._lock_ttl / 4)
        while True:
            try:
                fence = await self._call(
                    "lock", self._acquire_script(keys=keys, args=[owner, ttl_ms])
                )
            except BaseException:
                # The SET may have happened before the failure or cancellation: undo it.
                await self._release(key, _Hold(owner, 0, task), quiet=True)
                raise
            if fence is not None:
                return _Hold(owner, int(fence), task)
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                raise TokenStoreError(self._timeout_message())
            await anyio.sleep(min(remaining, delay * random.uniform(0.5, 1.5)))
            delay = min(delay * 1.5, cap)

    async def _keep_alive(self, key: str, hold: _Hold) -> None:
        """Extend the lock while it is held; on loss, log it (saves then refuse to write)."""
        interval = self._lock_ttl / 3
        ttl_ms = max(1, int(self._lock_ttl * 1000))
        lock_key = self._key("lock", key)
        while True:
            await anyio.sleep(interval)
            extended: object = None
            with anyio.move_on_after(interval):
                try:
                    extended = await self._extend_script(keys=[lock_key], args=[hold.owner, ttl_ms])
                except Exception as exc:
                    logger.warning(
                        "could not extend the Redis token lock (%s); retrying", _reason(exc)
                    )
                    continue
            if extended == 0:
                logger.warning(
                    "lost the Redis token lock while holding it (paused longer than "
                    "lock_ttl=%g s, or Redis lost the key); a save under it will be refused",
                    self._lock_ttl,
                )
                return

    async def _release(self, key: str, hold: _Hold, *, quiet: bool = False) -> None:
        """Delete the lock if it is still ours; never raises (the lock expires anyway)."""
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + _RELEASE_TIMEOUT
            try:
                await self._release_script(keys=[self._key("lock", key)], args=[hold.owner])
            except Exception as exc:
                if not quiet:
                    logger.warning(
                        "could not release the Redis token lock (%s); it expires within %g s",
                        _reason(exc),
                        self._lock_ttl,
                    )
        if scope.cancelled_caught and not quiet:
            logger.warning(
                "releasing the Redis token lock timed out; it expires within %g s",
                self._lock_ttl,
            )

    def _timeout_message(self) -> str:
        return f"timed out after {self._lock_wait:g} s waiting for the Redis token lock"

    async def _call(self, what: str, call: Awaitable[_T]) -> _T:
        from redis.exceptions import RedisError

        try:
            return await call
        except (RedisError, OSError) as exc:
            raise TokenStoreError(f"Redis {what} failed: {_reason(exc)}") from exc


def _parse(raw: object) -> AccessToken | None:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        if not isinstance(text, str):
            return None
        document: Any = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        return None
    if document.get("version") != VERSION:
        return None
    return token_from_record(document.get("token"))


def _reason(exc: BaseException) -> str:
    text = excerpt(str(exc), 160)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_CREDENTIAL_PARAM: Final = re.compile(r"pass|secret|token|auth|key|cred|user", re.IGNORECASE)


def _mask_url(url: str) -> str:
    """The URL with every credential masked: the userinfo (``redis://***@host``) and the value
    of each query parameter that may hold one (``?password=***``); the fragment is dropped."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = "***@" + netloc.rpartition("@")[2]
        query = "&".join(
            f"{name}=***" if _CREDENTIAL_PARAM.search(unquote_plus(name)) else field
            for field in parts.query.split("&")
            if field
            for name in (field.partition("=")[0],)
        )
        return urlunsplit(parts._replace(netloc=netloc, query=query, fragment=""))
    except ValueError:
        return "<unparsable url>"


publish(globals())  # its public classes show tradovate_async.X (see _exports)
