"""The exceptions raised by tradovate-async.

Every error the library raises on purpose derives from :class:`TradovateError`, so a bot can
catch one class and keep running. No message, ``repr`` or attribute of these exceptions holds a
password, an API secret or a token: only server texts and short, scrubbed body excerpts.

The tree has three branches, one per question a bot asks after a failure. REST calls and
sockets raise the same classes::

    TradovateError
    │
    ├── TransportError               NO ANSWER: nothing usable came back (the request may or
    │   │                            may not have reached the server; never resent blindly)
    │   ├── ConnectFailedError       could not connect: DNS, TCP, TLS, upgrade, socket authorize
    │   ├── RequestTimeoutError      connected, but no answer in time
    │   │   └── ExchangeDeadlineError  an HTTP exchange outlasted its total deadline (trickle)
    │   ├── ConnectionLostError      the connection dropped before the answer came
    │   ├── OrderOutcomeUnknownError an order command's answer was lost (timeout, drop, 5xx,
    │   │                            unreadable): not resent; ``reconcile_order`` finds out
    │   └── ProtocolError            what came back does not follow the protocol
    │       └── InvalidResponseError HTML, non-JSON, truncated or wrongly shaped REST body
    │           └── ResponseTooLargeError  a body larger than the exchange's ``max_body``
    │
    ├── APIError                     AN ANSWER THAT SAYS NO (``status``, ``body_excerpt``)
    │   ├── RequestFailedError       HTTP 4xx/5xx, a 200 with ``errorText``/``violations``,
    │   │                            a socket ``s`` not 2xx
    │   ├── OrderRejectedError       ``failureReason`` other than ``Success`` on an order result
    │   ├── AuthenticationError      the token endpoint said no, or a token was refused
    │   │   ├── InvalidCredentialsError  ``errorText`` on login, or 401 from the token endpoint
    │   │   └── TokenRejectedError       a request or socket refused its (renewed) token
    │   └── RetryLaterError          the server says "not now": ``retry_after`` (a timedelta)
    │       ├── RateLimitedError     HTTP/socket 429: a rolling one-hour lockout
    │       │   └── BudgetExhaustedError  (also a LocalError) the user's local request budget
    │       │                        is spent: NOT sent, no lockout; ``retry_after`` = room again
    │       ├── LockoutWarningError  HTTP 423: the next failures lock the user out
    │       └── PenaltyLimitError    a penalty (``p-ticket``) longer or more often than allowed
    │           └── CaptchaRequiredError  a penalty with ``p-captcha``: no program can serve it
    │
    └── LocalError                   OUR OWN REFUSAL: nothing was sent, or the answer is not
        │                            acted on
        ├── ConfigError              missing or invalid settings (names every one at once)
        ├── ValidationError          an argument the library refuses before sending it
        │   └── OrderValidationError an invalid order (no price, bad quantity, brackets...)
        ├── LoginPacedError          the login pacing floor refused one more login for now
        ├── TokenStoreError          a token store could not be read, written or locked
        └── SessionClosedError       the session or socket was closed (also raised to requests
                                     in flight when it closes)

:attr:`RetryLaterError.retry_after` is a real attribute on every error of that branch. Whether an
error should stop authentication for a while is the renewal schedule's decision (see
``_schedule.is_permanent``), not a property of the error.
"""

from __future__ import annotations

import datetime as _dt

from ._exports import publish

__all__ = [
    "APIError",
    "AuthenticationError",
    "BudgetExhaustedError",
    "CaptchaRequiredError",
    "ConfigError",
    "ConnectFailedError",
    "ConnectionLostError",
    "ExchangeDeadlineError",
    "InvalidCredentialsError",
    "InvalidResponseError",
    "LocalError",
    "LockoutWarningError",
    "LoginPacedError",
    "OrderOutcomeUnknownError",
    "OrderRejectedError",
    "OrderValidationError",
    "PenaltyLimitError",
    "ProtocolError",
    "RateLimitedError",
    "RequestFailedError",
    "RequestTimeoutError",
    "ResponseTooLargeError",
    "RetryLaterError",
    "SessionClosedError",
    "TokenRejectedError",
    "TokenStoreError",
    "TradovateError",
    "TransportError",
    "ValidationError",
]

EXCERPT_LIMIT = 200

_HOUR = _dt.timedelta(hours=1)


def excerpt(text: str | bytes, limit: int = EXCERPT_LIMIT) -> str:
    """A short, single-line excerpt of a body for an error message."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _detail(message: str, status: int | None, body_excerpt: str | None) -> str:
    detail = message
    if status is not None:
        detail += f" (HTTP {status})"
    if body_excerpt:
        detail += f": {body_excerpt!r}"
    return detail


class TradovateError(Exception):
    """Root of every error tradovate-async raises on purpose."""


# -- no answer ---------------------------------------------------------------------------------


class TransportError(TradovateError):
    """No usable answer came back. The underlying error (httpx, websockets, OSError) is
    ``__cause__``; a request that may have changed state is never resent after one."""


class ConnectFailedError(TransportError):
    """No connection: DNS, TCP, TLS, the WebSocket upgrade, or a socket's authorize step.

    The first connect of a socket raises it (fail fast at start-up); later reconnects log it and
    try again with backoff.
    """


class RequestTimeoutError(TransportError):
    """Connected (or waiting to be), but no answer within the request's deadline."""


class ExchangeDeadlineError(RequestTimeoutError):
    """An HTTP exchange took longer than its total deadline (``ExchangeBounds.deadline``),
    e.g. a server that trickles its answer. The request may have reached the server."""


class ConnectionLostError(TransportError):
    """The connection dropped while the request was waiting for its answer."""


class OrderOutcomeUnknownError(TransportError):
    """An order command was sent but its answer was lost; it is **never resent**.

    The server may or may not have acted on it. ``cl_ord_id`` is the client order id the
    library attached (``None`` for commands that have no such field, e.g.
    ``order/liquidateposition``); pass this error (or the id) to
    ``TradovateSession.reconcile_order``, which returns the order or ``None`` if the command
    never reached Tradovate. ``body`` is the JSON that was sent (orders carry no secrets),
    ``sent_at`` when (session clock), ``reason`` what happened to the answer. The underlying
    error, if any, is ``__cause__``.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        cl_ord_id: str | None,
        reason: str,
        body: dict[str, object] | None = None,
        sent_at: _dt.datetime | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.cl_ord_id = cl_ord_id
        self.reason = reason
        self.body = dict(body) if body is not None else None
        self.sent_at = sent_at
        how = f"reconcile with clOrdId {cl_ord_id!r}" if cl_ord_id else "check orders/positions"
        super().__init__(
            f"{endpoint}: outcome unknown ({reason}); not resent, it may have been executed: {how}"
        )


class ProtocolError(TransportError):
    """What came back does not follow the protocol (a malformed WebSocket frame, a body that
    is not the JSON the call needs). ``status`` and ``body_excerpt`` are set when known."""

    def __init__(
        self, message: str, *, status: int | None = None, body_excerpt: str | None = None
    ) -> None:
        self.status = status
        self.body_excerpt = body_excerpt
        super().__init__(_detail(message, status, body_excerpt))


class InvalidResponseError(ProtocolError):
    """A REST body that was HTML, not JSON, truncated, or lacked the fields the call needs."""


class ResponseTooLargeError(InvalidResponseError):
    """The answer's body was larger than ``ExchangeBounds.max_body``; it was not read whole."""


# -- an answer that says no --------------------------------------------------------------------


class APIError(TradovateError):
    """The server answered, and the answer is a refusal or a failure."""

    def __init__(
        self, message: str, *, status: int | None = None, body_excerpt: str | None = None
    ) -> None:
        self.status = status
        self.body_excerpt = body_excerpt
        super().__init__(_detail(message, status, body_excerpt))


class RequestFailedError(APIError):
    """An HTTP status that is not 2xx, a 200 answer with ``errorText`` or ``violations``, or a
    WebSocket answer whose ``s`` is not 2xx. ``error_text`` is the server's (scrubbed) text."""

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


class AuthenticationError(APIError):
    """The token endpoint refused the credentials, or a server refused a token."""


class InvalidCredentialsError(AuthenticationError):
    """The token endpoint rejected the credentials. Never retried: 5 failures an hour lock out."""

    def __init__(
        self, message: str, *, error_text: str | None = None, status: int | None = None
    ) -> None:
        self.error_text = error_text
        super().__init__(message, status=status)


class TokenRejectedError(AuthenticationError):
    """A request or socket was refused its token even after one renewal."""


class RetryLaterError(APIError):
    """The server says "not now". ``retry_after`` is how long to stay away (``None``: unknown).

    Repeating the request sooner extends a lockout; the session stops authenticating for that
    long and sockets give up instead of reconnecting into it.
    """

    default_retry_after: _dt.timedelta | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body_excerpt: str | None = None,
        retry_after: _dt.timedelta | None = None,
    ) -> None:
        self.retry_after = retry_after if retry_after is not None else self.default_retry_after
        super().__init__(message, status=status, body_excerpt=body_excerpt)


class RateLimitedError(RetryLaterError):
    """HTTP (or socket) 429: the user is locked out for a rolling hour; repeating extends it."""

    default_retry_after = _HOUR


class LockoutWarningError(RetryLaterError):
    """HTTP 423: a lockout is near. Stop authenticating for about an hour."""

    default_retry_after = _HOUR


class PenaltyLimitError(RetryLaterError):
    """Penalty tickets kept coming, or asked for a longer wait than allowed. ``retry_after`` is
    the wait the server asked for, when it asked for one."""


class CaptchaRequiredError(PenaltyLimitError):
    """A penalty ticket that needs a CAPTCHA, which a program cannot solve."""

    default_retry_after = _HOUR

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "Tradovate requires a CAPTCHA for this login (p-captcha); a program cannot solve "
            "it. Stop logging in and wait about an hour before trying again."
        )


# -- our own refusal ---------------------------------------------------------------------------


class LocalError(TradovateError):
    """The library itself refused: bad settings or arguments, a failing token store, a closed
    object. Nothing reached the server because of it."""


class LoginPacedError(LocalError):
    """One more login now would break the pacing floor: a user gets at most a few successful
    logins an hour, the second only after a pause, whatever asked for them. Every login opens
    a server session (two at most per user) and a storm of them ends in a lockout, so a bug
    that keeps asking meets this error instead. ``retry_after`` says when a login is allowed.
    """

    def __init__(self, message: str, *, retry_after: _dt.timedelta) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class ConfigError(LocalError):
    """Settings are missing or invalid. ``problems`` maps each variable name to what is wrong."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = dict(problems)
        lines = "\n".join(f"  - {name}: {why}" for name, why in self.problems.items())
        super().__init__(
            f"invalid Tradovate configuration ({len(self.problems)} problem(s)):\n{lines}"
        )


class ValidationError(LocalError, ValueError):
    """An argument the library refuses to send (it is also a ``ValueError``)."""


class TokenStoreError(LocalError):
    """A token store failed (I/O error, Redis down, lock timeout). Sessions log it and go on
    with the token they hold; the store is retried at the next renewal."""


class SessionClosedError(LocalError):
    """The object was closed; create a new one instead of reopening it. Requests in flight when
    it closes raise this too."""


class OrderValidationError(ValidationError):
    """The order is invalid; nothing was sent. ``problems`` maps each field to what is wrong."""

    def __init__(self, endpoint: str, problems: dict[str, str]) -> None:
        self.endpoint = endpoint
        self.problems = dict(problems)
        lines = "; ".join(f"{field}: {why}" for field, why in self.problems.items())
        super().__init__(f"{endpoint} not sent, invalid order: {lines}")


class BudgetExhaustedError(LocalError, RateLimitedError):
    """The user's local request budget (``RateLimits``) has no room: the request was **not
    sent** and the user is not locked out. Commands get it at once; reads only after waiting
    ``max_read_wait``. ``retry_after`` is when the budget has room again. It is a
    :class:`RateLimitedError` so that code handling rate limits handles it too."""

    def __init__(self, message: str, *, retry_after: _dt.timedelta) -> None:
        super().__init__(message, retry_after=retry_after)


publish(globals())  # its public classes show tradovate_async.X (see _exports)
