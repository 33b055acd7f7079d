"""One HTTP exchange, bounded in time and size.

httpx bounds each network operation (``timeout``), not the exchange: a server that sends one
byte every few seconds never trips a 10 s read timeout and keeps a login waiting for as long as
it trickles, and ``response.content`` buffers a body of any size. Every exchange of the library
(token request, renewal, REST call) goes through :func:`bounded_exchange`, which

- ends the whole exchange (connection, request, headers, body) at a **deadline**, and
- reads at most **max_body** bytes of the (decoded) body, refusing a larger ``Content-Length``
  before reading anything,

raising :class:`~tradovate_async.ExchangeDeadlineError` (a ``RequestTimeoutError``) or
:class:`~tradovate_async.ResponseTooLargeError` (an ``InvalidResponseError``). httpx transport
failures become the library's "no answer" errors (:func:`translate_transport_error`). ``session.http`` stays a plain
``httpx.AsyncClient`` for those who want it; calls made on it directly are not bounded.

Errors that leave this module never carry the ``httpx.Request``: its body holds the password
and API secret of a login and its headers the bearer token. The httpx error is replaced by a
copy of the same type with a scrubbed message and no request, raised outside the ``except``
block so that ``__context__`` does not keep the original either.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final

import anyio
import httpx

from ._errors import (
    ConnectFailedError,
    ConnectionLostError,
    ExchangeDeadlineError,
    ProtocolError,
    RequestTimeoutError,
    ResponseTooLargeError,
    TransportError,
)
from ._exports import publish

__all__ = [
    "REQUEST_BOUNDS",
    "TOKEN_BOUNDS",
    "Answer",
    "ExchangeBounds",
    "bounded_exchange",
    "translate_transport_error",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class ExchangeBounds:
    """The most one HTTP exchange may take: ``deadline`` seconds from the first byte sent to
    the last byte read (waiting for a connection included), and ``max_body`` bytes of body."""

    deadline: float
    max_body: int

    def __post_init__(self) -> None:
        if not self.deadline > 0:
            raise ValueError("deadline must be positive")
        if self.max_body < 1024:
            raise ValueError("max_body must be at least 1024 bytes")


#: Token request and renewal: answers are a few hundred bytes (a token pair, a penalty or an
#: error text), so 64 KiB leaves room for any proxy's error page. 30 s is three times the
#: default per-operation timeout: a slow but honest answer fits, a trickle does not.
TOKEN_BOUNDS: Final = ExchangeBounds(deadline=30.0, max_body=64 * 1024)
#: REST calls: list endpoints of a busy account (fills, orders, execution reports) can run to
#: megabytes; 64 MiB is far above that and still a bound. 60 s for the same reason as above,
#: doubled for large answers on slow links.
REQUEST_BOUNDS: Final = ExchangeBounds(deadline=60.0, max_body=64 * 1024 * 1024)


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """What the interpretation of an answer needs: status, headers and the whole body."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes


def translate_transport_error(exc: httpx.TransportError, where: str) -> TransportError:
    """The library's "no answer" error for an httpx transport failure (``raise ... from exc``).

    The message names the httpx class only: its own text may hold the URL or request details.
    """
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.ProxyError):
        return ConnectFailedError(f"{where}: could not connect ({name})")
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeoutError(f"{where}: no answer in time ({name})")
    if isinstance(exc, httpx.LocalProtocolError):
        return ProtocolError(f"{where}: HTTP protocol error ({name})")
    # RemoteProtocolError is what h11 says when the server closes mid-answer ("Server
    # disconnected", "peer closed connection without sending complete message body").
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return ConnectionLostError(f"{where}: connection lost ({name})")
    return TransportError(f"{where} failed: {name}")


def _scrubbed_copy(exc: httpx.HTTPError, scrub: Callable[[str], str]) -> httpx.HTTPError:
    """An error of the same type, without the request (and its body and headers)."""
    message = scrub(str(exc))
    try:
        return type(exc)(message)
    except TypeError:  # an httpx error type with another constructor
        return httpx.TransportError(message)


def exchange_label(method: str, url: str) -> str:
    """``GET /account/list``: how errors name an exchange (no host, no query)."""
    return f"{method} /{url.split('?', 1)[0].rsplit('/v1/', 1)[-1].lstrip('/')}"


def deadline_error(where: str, bounds: ExchangeBounds) -> ExchangeDeadlineError:
    return ExchangeDeadlineError(
        f"{where}: no complete answer within {bounds.deadline:g} s (deadline); the server may "
        "have received the request"
    )


async def read_capped(
    declared: int | None,
    chunks: AsyncIterator[bytes],
    *,
    status: int,
    limit: int,
    where: str,
    progress: Callable[[], object] | None = None,
) -> bytes:
    """The body from ``chunks`` (decoded), refused when ``declared`` (``Content-Length``) or
    what arrives passes ``limit``; shared by both HTTP stacks. ``progress`` is called for
    every piece (the aiohttp exchange's read timeout starts again)."""
    if declared is not None and declared > limit:
        raise ResponseTooLargeError(
            f"{where}: the answer announces {declared} bytes, more than the {limit} allowed "
            "(max_body)",
            status=status,
        )
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        if progress is not None:
            progress()
        size += len(chunk)
        if size > limit:
            raise ResponseTooLargeError(
                f"{where}: the answer is larger than the {limit} bytes allowed (max_body)",
                status=status,
            )
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _content_length(headers: Mapping[str, str]) -> int | None:
    declared = headers.get("content-length")
    return int(declared) if declared is not None and declared.strip().isdigit() else None


async def bounded_exchange(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    bounds: ExchangeBounds,
    scrub: Callable[[str], str],
    json: Any = None,
    headers: Mapping[str, str] | None = None,
    **options: Any,
) -> Answer:
    """Send one request and read its answer within ``bounds``.

    Raises :class:`~tradovate_async.ExchangeDeadlineError` (a :class:`TransportError`) when the
    deadline passes, :class:`~tradovate_async.ResponseTooLargeError` for a body over
    ``max_body``, and :class:`TransportError` for any httpx transport failure. None of them
    keeps the ``httpx.Request``.
    """
    where = exchange_label(method, url)
    failure: httpx.HTTPError | None = None
    with anyio.move_on_after(bounds.deadline) as scope:
        try:
            async with client.stream(method, url, json=json, headers=headers, **options) as rsp:
                body = await read_capped(
                    _content_length(rsp.headers),
                    rsp.aiter_bytes(),
                    status=rsp.status_code,
                    limit=bounds.max_body,
                    where=where,
                )
                return Answer(rsp.status_code, rsp.headers, body)
        except (httpx.TransportError, httpx.DecodingError, httpx.TooManyRedirects) as exc:
            failure = _scrubbed_copy(exc, scrub)
    if failure is not None:  # raised here, not in the except block: no __context__ either
        if isinstance(failure, httpx.TransportError):
            raise translate_transport_error(failure, where) from failure
        raise ProtocolError(f"{where}: unusable answer ({type(failure).__name__})") from failure
    assert scope.cancelled_caught
    raise deadline_error(where, bounds)


publish(globals())  # its public classes show tradovate_async.X (see _exports)
