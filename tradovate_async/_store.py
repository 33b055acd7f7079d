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
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

import anyio

from ._models import AccessToken

__all__ = ["MemoryTokenStore", "TokenStore"]

logger = logging.getLogger(__name__)


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

    async def load(self, key: str) -> AccessToken | None: ...

    async def save(self, key: str, token: AccessToken) -> None: ...

    async def delete(self, key: str) -> None: ...

    def lock(self, key: str) -> AbstractAsyncContextManager[None]: ...

    async def aclose(self) -> None: ...


class MemoryTokenStore:
    """Tokens in this process's memory: shared by every session given the same instance."""

    def __init__(self) -> None:
        self._tokens: dict[str, AccessToken] = {}
        self._locks: dict[str, anyio.Lock] = {}

    def __repr__(self) -> str:
        return f"MemoryTokenStore(keys={len(self._tokens)})"

    async def load(self, key: str) -> AccessToken | None:
        return self._tokens.get(key)

    async def save(self, key: str, token: AccessToken) -> None:
        current = self._tokens.get(key)
        if current is not None and current.expiration_time > token.expiration_time:
            logger.debug("kept the stored token: it expires later than the one offered")
            return
        self._tokens[key] = token

    async def delete(self, key: str) -> None:
        self._tokens.pop(key, None)

    @contextlib.asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:
            yield

    async def aclose(self) -> None:
        return None
