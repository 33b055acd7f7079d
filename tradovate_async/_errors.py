"""The exceptions raised by tradovate-async.

Every error the library raises on purpose derives from :class:`TradovateError`, so a bot can
catch one class and keep running. No message, ``repr`` or attribute of these exceptions holds a
password, an API secret or a token: only server texts and short, scrubbed body excerpts.

The tree::

    TradovateError
    ├── ConfigError                  missing or invalid settings (names every one at once)
    ├── SessionClosedError           the session or socket was closed and cannot be reused
    ├── TransportError               no usable HTTP answer: connect/read timeout, reset, TLS failure
    ├── APIError                     the server answered, but not with what was asked for
    │   ├── InvalidResponseError     HTML, non-JSON, truncated or wrongly shaped body
    │   ├── RateLimitedError         HTTP 429: rolling one-hour lockout, never retried
    │   ├── LockoutWarningError      HTTP 423: the next failures lock the user out
    │   ├── OrderRejectedError       ``failureReason`` other than ``Success`` on an order result
    │   └── RequestFailedError       a 200 body with ``errorText``, or a WebSocket ``s`` not 2xx
    ├── AuthenticationError          the token endpoint said no, or a token was refused
    │   ├── InvalidCredentialsError  ``errorText`` on login, or 401 from the token endpoint
    │   ├── CaptchaRequiredError     penalty ticket with ``p-captcha``: wait about an hour
    │   ├── PenaltyLimitError        penalty rounds or wait exceed the configured bounds
    │   └── TokenRejectedError       a request or socket was refused its (renewed) token
    ├── TokenStoreError              a token store could not be read, written or locked
    ├── ProtocolError                a WebSocket frame that does not follow the protocol
    └── WebSocketError
        ├── ConnectFailedError       a socket could not be opened and authorized (transport,
        │                            handshake, timeout, or a non-401 authorize failure)
        ├── ConnectionLostError      the socket dropped while a request was pending
        └── RequestTimeoutError      no answer to a WebSocket request in time

``RateLimitedError`` and ``LockoutWarningError`` are :class:`APIError` subclasses because they
come from any endpoint; both are also "permanent" for the renewal logic (see ``is_permanent``).
"""

from __future__ import annotations

import datetime as _dt

__all__ = [
    "APIError",
    "AuthenticationError",
    "CaptchaRequiredError",
    "ConfigError",
    "ConnectFailedError",
    "ConnectionLostError",
    "InvalidCredentialsError",
    "InvalidResponseError",
    "LockoutWarningError",
    "OrderRejectedError",
    "PenaltyLimitError",
    "ProtocolError",
    "RateLimitedError",
    "RequestFailedError",
    "RequestTimeoutError",
    "SessionClosedError",
    "TokenRejectedError",
    "TokenStoreError",
    "TradovateError",
    "TransportError",
    "WebSocketError",
    "is_permanent",
]

EXCERPT_LIMIT = 200


def excerpt(text: str | bytes, limit: int = EXCERPT_LIMIT) -> str:
    """A short, single-line excerpt of a body for an error message."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class TradovateError(Exception):
    """Root of every error tradovate-async raises on purpose."""


class ConfigError(TradovateError):
    """Settings are missing or invalid. ``problems`` maps each variable name to what is wrong."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = dict(problems)
        lines = "\n".join(f"  - {name}: {why}" for name, why in self.problems.items())
        super().__init__(
            f"invalid Tradovate configuration ({len(self.problems)} problem(s)):\n{lines}"
        )


class SessionClosedError(TradovateError):
    """The object was closed; create a new one instead of reopening it."""


class TransportError(TradovateError):
    """The request did not get a usable HTTP answer (the httpx error is ``__cause__``)."""


class APIError(TradovateError):
    """The server answered with something other than the expected result."""

    def __init__(
        self, message: str, *, status: int | None = None, body_excerpt: str | None = None
    ) -> None:
        self.status = status
        self.body_excerpt = body_excerpt
        detail = message
        if status is not None:
            detail += f" (HTTP {status})"
        if body_excerpt:
            detail += f": {body_excerpt!r}"
        super().__init__(detail)


class InvalidResponseError(APIError):
    """The body was HTML, not JSON, truncated, or lacked the fields the call needs."""


class RateLimitedError(APIError):
    """HTTP 429: the user is locked out for a rolling hour; repeating requests extends it."""

    retry_after = _dt.timedelta(hours=1)


class LockoutWarningError(APIError):
    """HTTP 423: a lockout is near. Stop authenticating for about an hour."""

    retry_after = _dt.timedelta(hours=1)


class RequestFailedError(APIError):
    """A 200 answer that carries ``errorText`` (REST) or a non-2xx ``s`` (WebSocket)."""

    def __init__(
        self, message: str, *, status: int | None = None, error_text: str | None = None
    ) -> None:
        self.error_text = error_text
        super().__init__(message, status=status, body_excerpt=error_text)


class OrderRejectedError(APIError):
    """An order result with ``failureReason`` other than ``Success``."""

    def __init__(self, failure_reason: str, failure_text: str | None) -> None:
        self.failure_reason = failure_reason
        self.failure_text = failure_text
        text = f"order rejected: {failure_reason}"
        if failure_text:
            text += f" ({failure_text})"
        super().__init__(text)


class AuthenticationError(TradovateError):
    """Authentication failed."""


class InvalidCredentialsError(AuthenticationError):
    """The token endpoint rejected the credentials. Never retried: 5 failures an hour lock out."""

    def __init__(self, message: str, *, error_text: str | None = None) -> None:
        self.error_text = error_text
        super().__init__(message)


class CaptchaRequiredError(AuthenticationError):
    """A penalty ticket that needs a CAPTCHA, which a program cannot solve."""

    retry_after = _dt.timedelta(hours=1)

    def __init__(self) -> None:
        super().__init__(
            "Tradovate requires a CAPTCHA for this login (p-captcha); a program cannot solve it. "
            "Stop logging in and wait about an hour before trying again."
        )


class PenaltyLimitError(AuthenticationError):
    """Penalty tickets kept coming, or asked for a longer wait than allowed."""

    retry_after: _dt.timedelta | None = None


class TokenRejectedError(AuthenticationError):
    """A request or socket was refused its token even after one renewal."""


class TokenStoreError(TradovateError):
    """A token store failed (I/O error, Redis down, lock timeout). Sessions log it and go on
    with the token they hold; the store is retried at the next renewal."""


class ProtocolError(TradovateError):
    """A WebSocket frame that does not follow the Tradovate protocol."""


class WebSocketError(TradovateError):
    """A WebSocket-level failure."""


class ConnectFailedError(WebSocketError):
    """Opening or authorizing a socket failed for a reason other than a refused token.

    The first connect of a socket raises it (fail fast at start-up); later reconnects log it and
    try again with backoff. The underlying ``websockets``/``OSError`` error is ``__cause__``.
    """


class ConnectionLostError(WebSocketError):
    """The socket dropped while the request was waiting for its answer."""


class RequestTimeoutError(WebSocketError):
    """A WebSocket request got no answer in time."""


def is_permanent(error: BaseException) -> bool:
    """Whether retrying authentication soon would make things worse (lockout, captcha, bad password)."""
    return isinstance(
        error,
        InvalidCredentialsError
        | CaptchaRequiredError
        | PenaltyLimitError
        | RateLimitedError
        | LockoutWarningError,
    )
