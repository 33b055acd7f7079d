"""The library's own REST calls over aiohttp: the same bounded exchange, at aiohttp's speed.

Why a second HTTP stack: with 50 requests in flight, httpx's connection pool spends about
1.9 ms of CPU per request (its pool rescans every connection for each request) and httpx over
the ``httpx-aiohttp`` transport about 0.3 ms, against 0.09 ms for aiohttp itself
(``bench/session.py``). A bot that fans out reads across accounts pays for that, so the
session's own calls (``session.get``/``post``/``request`` and ``session.api``) go through
:class:`AiohttpExchanger` by default, while ``session.http`` stays the ``httpx.AsyncClient``
users know, and token requests stay on httpx (rare, and tested byte for byte).

The exchange keeps every rule of :func:`~tradovate_async._http.bounded_exchange`: one deadline
for the whole exchange and a read timeout (``Timeouts.request``) that starts again when the
request went out, when the answer's head came and with every piece of its body (both kept by
an :class:`~tradovate_async._exchange_watch.ExchangeWatch`, not by aiohttp's timers), a cap on
the (decoded) body checked against ``Content-Length`` before reading, no redirects followed,
TLS verified with the same context httpx would build, and the same "no answer" errors. The
read timeout differs from httpx's (per socket read) in one way: a head that trickles in must
be complete within it. :class:`~tradovate_async.ConnectFailedError` is raised only when no
connection carried the request (aiohttp's connector errors and connect timeouts), so a caller
may treat it as "not sent". aiohttp's exceptions carry the request's headers (the bearer
token): they are never chained, and their messages are not shown, only their type names.
"""

from __future__ import annotations

import asyncio
import functools
import json as jsonlib
import logging
import ssl
from collections.abc import Mapping
from typing import Any

import aiohttp
import anyio
import httpx

from ._errors import (
    ConnectFailedError,
    ConnectionLostError,
    ProtocolError,
    RequestTimeoutError,
    TradovateError,
    TransportError,
)
from ._exchange_watch import ExchangeWatch, Limit
from ._http import Answer, ExchangeBounds, deadline_error, exchange_label, read_capped
from ._options import Timeouts

__all__ = ["AiohttpExchanger", "translate_aiohttp_error"]

logger = logging.getLogger(__name__)


def translate_aiohttp_error(exc: BaseException, where: str) -> TransportError:
    """The library's "no answer" error for an aiohttp failure (never ``raise ... from exc``:
    aiohttp's errors hold the request headers)."""
    name = type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return ConnectFailedError(f"{where}: could not connect ({name})")
    if isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        return RequestTimeoutError(f"{where}: no answer in time ({name})")
    if isinstance(exc, aiohttp.ClientResponseError):
        return ProtocolError(f"{where}: HTTP protocol error ({name})")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | OSError):
        return ConnectionLostError(f"{where}: connection lost ({name})")
    return TransportError(f"{where} failed: {name}")


def _encode_json(value: Any) -> bytes:
    """The body httpx would send for ``json=value`` (compact, UTF-8, no NaN)."""
    return jsonlib.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


class AiohttpExchanger:
    """One aiohttp connection pool and the bounded exchange over it (open, use, close)."""

    def __init__(
        self, *, ssl_context: ssl.SSLContext | None, limits: httpx.Limits, timeouts: Timeouts
    ) -> None:
        # httpx's own default trust (certifi) when the user gave none: the same CAs either way.
        self._ssl = ssl_context if ssl_context is not None else httpx.create_ssl_context()
        self._limits = limits
        self._read_timeout = timeouts.request
        # Only connecting keeps an aiohttp timer: the deadline and the read timeout of every
        # exchange are the watch's (see _exchange_watch), which costs a timer for all of them.
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.connect_seconds, sock_read=None
        )
        self._session: aiohttp.ClientSession | None = None
        self._watch: ExchangeWatch | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._watch = ExchangeWatch(self._loop, self._read_timeout)
        connector = aiohttp.TCPConnector(
            ssl=self._ssl,
            limit=self._limits.max_connections or 0,
            keepalive_timeout=self._limits.keepalive_expiry or 0.0,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"Accept": "application/json"},
            timeout=self._timeout,
            trust_env=False,
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if self._watch is not None:
            self._watch.close()
        if session is not None:
            with anyio.CancelScope(shield=True):
                await session.close()

    async def exchange(
        self,
        method: str,
        url: str,
        *,
        bounds: ExchangeBounds,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """Send one request and read its answer within ``bounds`` (see the module docstring)."""
        session, watch = self._session, self._watch
        if session is None or watch is None:
            raise TransportError("the HTTP connection pool is closed")
        where = exchange_label(method, url)
        sent = headers  # aiohttp copies them into the request's own headers
        body: bytes | None = None
        if json is not None:
            body = _encode_json(json)
            sent = {**(headers or {}), "Content-Type": "application/json"}
        task = asyncio.current_task(self._loop)  # the loop given: no getpid() (see _session_http)
        assert task is not None
        watch.start(task, bounds.deadline)
        try:
            async with session.request(
                method, url, data=body, headers=sent, allow_redirects=False
            ) as response:
                watch.progress(task)
                content = await read_capped(
                    response.content_length,
                    response.content.iter_any(),
                    status=response.status,
                    limit=bounds.max_body,
                    where=where,
                    progress=functools.partial(watch.progress, task),
                )
                return Answer(response.status, response.headers, content)
        except asyncio.CancelledError:
            limit = watch.expired(task)
            if limit is None or task.uncancel() > 0:
                raise  # not the watch's, or cancelled by someone else as well
            failure = self._expired(limit, where, bounds)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            failure = translate_aiohttp_error(exc, where)
        finally:
            watch.finish(task)
            if watch.expired(task) is not None:  # the exchange swallowed the cancellation
                task.uncancel()
        raise failure

    def _expired(self, limit: Limit, where: str, bounds: ExchangeBounds) -> TradovateError:
        if limit == "deadline":
            return deadline_error(where, bounds)
        return RequestTimeoutError(
            f"{where}: no answer in time (nothing arrived for {self._read_timeout:g} s)"
        )
