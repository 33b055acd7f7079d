"""Where tokens live between requests, sockets, restarts and processes.

A :class:`TokenStore` keeps one :class:`~tradovate_async.AccessToken` per key (environment,
user, app id: ``TradovateConfig.token_key``) and offers an exclusive lock per key. The session
takes the lock around every authentication call and looks in the store again inside it, so the
holder of the lock is the only one that talks to the token endpoint and everybody else adopts
what it saved: one login and one renewal per token lifetime, whatever the number of requests,
sockets or processes sharing the store.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Final, Protocol, runtime_checkable

import anyio
import anyio.lowlevel

from ._budget import MemoryBudget
from ._exports import publish
from ._models import AccessToken

__all__ = ["AnyLoopLock", "MemoryTokenStore", "TokenStore"]

logger = logging.getLogger(__name__)

_POLL_MIN: Final = 0.001
_POLL_MAX: Final = 0.05


class AnyLoopLock:
    """An async lock shared by tasks of every thread and event loop of the process.

    A store instance may be shared by threads that each run their own event loop (the README's
    "one instance per file in a process" invites it). An ``anyio.Lock`` belongs to one loop:
    a waiter in another loop is never woken. Here each loop queues its own tasks on its own
    ``anyio.Lock`` (first come, first served, woken at once), and the task at the head of each
    loop's queue takes a ``threading.Lock`` by polling with a short backoff, which no loop has
    to be woken for.
    """

    def __init__(self) -> None:
        self._thread_lock = threading.Lock()
        self._meta = threading.Lock()
        # thread id -> (the loop's token, that loop's queue)
        self._loop_locks: dict[int, tuple[object, anyio.Lock]] = {}

    def _loop_lock(self) -> anyio.Lock:
        token = anyio.lowlevel.current_token()
        ident = threading.get_ident()
        with self._meta:
            entry = self._loop_locks.get(ident)
            if entry is None or entry[0] != token:  # a new loop in this thread
                entry = (token, anyio.Lock())
                self._loop_locks[ident] = entry
            return entry[1]

    async def acquire(self) -> None:
        loop_lock = self._loop_lock()
        await loop_lock.acquire()
        try:
            delay = _POLL_MIN
            while not self._thread_lock.acquire(blocking=False):
                await anyio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, _POLL_MAX)
        except BaseException:
            loop_lock.release()
            raise

    def release(self) -> None:
        """Release from the task (and so the loop) that acquired it."""
        self._thread_lock.release()
        self._loop_lock().release()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()


@runtime_checkable
class TokenStore(Protocol):
    """The contract every token store meets.

    - ``load`` returns the stored token or ``None`` (also for an unreadable or foreign record,
      which is logged at WARNING, never raised).
    - ``save`` stores the token; it never replaces a stored token that expires later (a slow
      writer cannot roll the fleet back to an older token).
    - ``lock`` is exclusive for the key across every user of the same store (tasks, processes,
      machines), and is released even if its holder crashes (after the store's lock timeout).
    - Failures of the backing medium raise :class:`~tradovate_async.TokenStoreError`.
    """

    async def load(self, key: str) -> AccessToken | None:
        """The token stored under ``key``, or ``None``."""

    async def save(self, key: str, token: AccessToken) -> None:
        """Store ``token`` under ``key`` unless a later-expiring one is stored."""

    async def delete(self, key: str) -> None:
        """Remove the token stored under ``key``."""

    def lock(self, key: str) -> AbstractAsyncContextManager[None]:
        """An exclusive lock for ``key`` across every user of the store."""

    async def aclose(self) -> None:
        """Release the store's connections and files."""


class MemoryTokenStore:
    """Tokens in this process's memory: shared by every session given the same instance,
    also by sessions of other threads running their own event loops."""

    def __init__(self) -> None:
        self._tokens: dict[str, AccessToken] = {}
        self._locks: dict[str, AnyLoopLock] = {}
        self._meta = threading.Lock()
        self._budget = MemoryBudget()

    def __repr__(self) -> str:
        return f"MemoryTokenStore(keys={len(self._tokens)})"

    def rate_budget(self) -> MemoryBudget:
        """The request budget shared by every session on this store (see ``RateLimits``)."""
        return self._budget

    async def load(self, key: str) -> AccessToken | None:
        """The token stored under ``key``, or ``None``."""
        return self._tokens.get(key)

    async def save(self, key: str, token: AccessToken) -> None:
        """Store ``token`` under ``key`` unless a later-expiring one is stored."""
        with self._meta:  # another thread may save the same key at the same moment
            current = self._tokens.get(key)
            if current is not None and current.expiration_time > token.expiration_time:
                logger.debug("kept the stored token: it expires later than the one offered")
                return
            self._tokens[key] = token

    async def delete(self, key: str) -> None:
        """Remove the token stored under ``key``."""
        self._tokens.pop(key, None)

    @contextlib.asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        """An exclusive lock for ``key`` among the tasks of this process."""
        with self._meta:
            lock = self._locks.setdefault(key, AnyLoopLock())
        async with lock:
            yield

    async def aclose(self) -> None:
        """Nothing to release."""
        return None


publish(globals())  # its public classes show tradovate_async.X (see _exports)
