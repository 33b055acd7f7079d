"""Token store access that never takes a session down.

A token store is shared infrastructure (a file, Redis): when it fails, the session goes on
with the token it holds and counts the failure in ``SessionStats.store_errors``. Split out of
the token keeper (issue 8) so that the keeper reads as the token lifecycle only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Protocol

from ._errors import TokenStoreError
from ._models import AccessToken
from ._store import TokenStore

__all__ = ["StoreAccess"]

logger = logging.getLogger(__name__)


class _ErrorCount(Protocol):
    store_errors: int


class StoreAccess:
    """Lock, load and save one user's token record, logging and counting store failures."""

    __slots__ = ("_key", "_stats", "store")

    def __init__(self, store: TokenStore, key: str, stats: _ErrorCount) -> None:
        self.store = store
        self._key = key
        self._stats = stats

    @contextlib.asynccontextmanager
    async def lock(self, *, may_defer: bool = False) -> AsyncIterator[None]:
        """Hold the store's lock of the user; without it (store down) go on unlocked, unless
        ``may_defer``: then the :class:`TokenStoreError` is raised so the caller waits."""
        lock_cm = self.store.lock(self._key)
        try:
            await lock_cm.__aenter__()
        except TokenStoreError as exc:
            self._stats.store_errors += 1
            if may_defer:
                logger.warning("token store lock unavailable (%s); renewal deferred", exc)
                raise
            logger.warning("token store lock unavailable (%s); going on without it", exc)
            yield
            return
        try:
            yield
        finally:
            try:
                await lock_cm.__aexit__(None, None, None)
            except TokenStoreError as exc:
                self._stats.store_errors += 1
                logger.warning("token store lock release failed: %s", exc)

    async def load(self) -> AccessToken | None:
        """The stored token, or ``None`` (none stored, or the store is unreadable)."""
        try:
            return await self.store.load(self._key)
        except TokenStoreError as exc:
            self._stats.store_errors += 1
            logger.warning("token store unreadable (%s); going on without it", exc)
            return None

    async def save(self, token: AccessToken) -> None:
        """Share ``token``; a failed write keeps it in memory only."""
        try:
            await self.store.save(self._key, token)
        except TokenStoreError as exc:
            self._stats.store_errors += 1
            logger.warning("token store write failed (%s); the token is kept in memory", exc)
