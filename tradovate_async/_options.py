"""Option objects shared by the session, the sockets and the token stores.

The same word means the same thing everywhere, as in httpx (``Timeout``, ``Limits``):

* :class:`Backoff` is exponential backoff with jitter, in seconds. The session's
  ``renewal_backoff`` (after a failed token renewal) and the socket's ``reconnect_backoff``
  (after a dropped connection) are two values of the same type with different defaults.
* :class:`Timeouts` are the deadlines of one exchange, in seconds: ``connect`` (TCP, TLS and,
  for a socket, the upgrade and the authorize answer), ``request`` (one request's answer,
  including a socket's wait for a reconnect) and ``close``. A plain number sets ``request`` and
  ``connect`` together.
* :class:`~tradovate_async._penalty.PenaltyPolicy` (``penalties=``) bounds penalty waits for
  logins, REST calls and socket requests alike.
* ``verify`` is the TLS trust for both HTTP and WebSocket: ``True`` (system CAs), a CA bundle
  path, or an ``ssl.SSLContext``. ``False`` is refused: TLS verification is never turned off.

Every duration in the public API is a ``float`` of seconds (``renew_before=300.0`` too). Token
stores name the two lock durations apart: ``lock_wait`` is how long a caller waits to acquire,
``lock_ttl`` how long a crashed holder can block others.
"""

from __future__ import annotations

import dataclasses
import math
import ssl
from typing import TypeAlias

from ._exports import publish
from ._penalty import PenaltyPolicy

__all__ = [
    "DEFAULT_PENALTIES",
    "DEFAULT_RECONNECT_BACKOFF",
    "DEFAULT_RENEWAL_BACKOFF",
    "DEFAULT_TIMEOUTS",
    "Backoff",
    "PenaltyPolicy",
    "Timeouts",
    "TimeoutsLike",
    "Verify",
    "check_seconds",
    "ssl_context",
]

#: TLS trust: ``True`` (system CAs), a CA bundle path, or an ``ssl.SSLContext``.
Verify: TypeAlias = ssl.SSLContext | str | bool


def check_seconds(name: str, value: float, *, allow_zero: bool = False) -> float:
    """``value`` as a float of seconds, or ``ValueError`` naming the option."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds")
    seconds = float(value)
    if (
        math.isnan(seconds)
        or math.isinf(seconds)
        or seconds < 0
        or (seconds == 0 and not allow_zero)
    ):
        raise ValueError(
            f"{name} must be a {'non-negative' if allow_zero else 'positive'} number of seconds"
        )
    return seconds


@dataclasses.dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: attempt ``n`` (from 1) waits a random share of
    ``min(maximum, initial * factor ** (n - 1))`` seconds."""

    initial: float
    maximum: float
    factor: float = 2.0

    def __post_init__(self) -> None:
        check_seconds("Backoff.initial", self.initial)
        check_seconds("Backoff.maximum", self.maximum)
        if self.maximum < self.initial:
            raise ValueError("Backoff.maximum must be >= Backoff.initial")
        if not self.factor >= 1 or math.isinf(self.factor):
            raise ValueError("Backoff.factor must be >= 1")

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the delay before attempt ``attempt`` (1 for the first retry)."""
        exponent = min(max(attempt - 1, 0), 64)  # overflow guard; the cap applies long before
        return min(self.maximum, self.initial * self.factor**exponent)


#: The session's default: retry a failed renewal after about 1 s, at most every minute.
DEFAULT_RENEWAL_BACKOFF = Backoff(1.0, 60.0)
#: The socket's default: reconnect after 0.1 s, at most every 30 s (the first try is at once).
DEFAULT_RECONNECT_BACKOFF = Backoff(0.1, 30.0)


@dataclasses.dataclass(frozen=True, slots=True)
class Timeouts:
    """Deadlines in seconds. ``Timeouts(5.0)`` sets ``request`` and ``connect`` to 5 s."""

    request: float = 10.0
    connect: float | None = None
    close: float = 2.0

    def __post_init__(self) -> None:
        check_seconds("Timeouts.request", self.request)
        if self.connect is None:
            object.__setattr__(self, "connect", self.request)
        check_seconds("Timeouts.connect", self.connect_seconds)
        check_seconds("Timeouts.close", self.close, allow_zero=True)

    @property
    def connect_seconds(self) -> float:
        """``connect`` as a float (it defaults to ``request``)."""
        return self.request if self.connect is None else self.connect

    @classmethod
    def of(cls, value: TimeoutsLike) -> Timeouts:
        """A :class:`Timeouts` from itself or from a number of seconds."""
        return value if isinstance(value, Timeouts) else cls(float(value))


TimeoutsLike: TypeAlias = Timeouts | float
DEFAULT_TIMEOUTS = Timeouts()
#: Three rounds, at most two minutes each: the default for logins, REST calls and sockets.
DEFAULT_PENALTIES = PenaltyPolicy()


def ssl_context(verify: Verify) -> ssl.SSLContext | None:
    """The context for ``verify`` (``None``: the system default). Refuses to turn TLS off."""
    if verify is False:
        raise ValueError("TLS verification cannot be turned off (verify=False)")
    if verify is True:
        return None
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    if isinstance(verify, ssl.SSLContext):
        if verify.verify_mode == ssl.CERT_NONE or not verify.check_hostname:
            raise ValueError("TLS verification cannot be turned off (the context skips checks)")
        return verify
    raise TypeError("verify must be True, a CA bundle path or an ssl.SSLContext")


publish(globals())  # its public classes show tradovate_async.X (see _exports)
