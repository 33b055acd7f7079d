"""When a request may be sent again: reads yes, a few times, with jittered backoff; commands never.

A read (``*/list``, ``*/item``, ``*/find``, ``*/deps``, ``auth/me``, ... — the same test the
sockets use, :func:`~tradovate_async._ws_codec.is_read_only`) changes nothing on the server, so
a read whose answer was lost or that met a passing server problem is simply asked again:

* on a transport error (connect/read timeout, reset, dropped connection);
* on HTTP 408 (request timeout), 500 (Tradovate's own "Internal Server Error, error id: …",
  which its docs say includes timeouts), 502, 503, 504 (proxies, maintenance) — "throttling
  without a 429";
* never on 429: that is Tradovate's one-hour lockout, and every further request extends it;
* never on 4xx other than 408: asking again gets the same answer.

Delays are "full jitter" (uniform between 0 and ``min(backoff_max, backoff_initial * 2**n)``)
so a fleet that met the same outage does not come back in step. A ``Retry-After`` header
(seconds or an HTTP date) is honoured: the delay is at least that long; if it asks for more
than ``max_retry_after`` the read is not retried and its error is raised.

Commands (orders, order strategies, account changes) are never sent twice by this library: a
command whose answer was lost may have been executed, see ``OrderOutcomeUnknownError``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import math
import random
from typing import Final

from ._exports import publish
from ._ws_codec import is_read_only

__all__ = ["RETRYABLE_STATUSES", "RetryPolicy", "is_read", "parse_retry_after"]

#: Statuses after which a read is asked again.
RETRYABLE_STATUSES: Final = frozenset({408, 500, 502, 503, 504})

#: Reads sent with POST that change nothing (besides the entity operations).
_READ_POSTS: Final = frozenset({"cashbalance/getcashbalancesnapshot"})


def is_read(endpoint: str) -> bool:
    """Whether sending ``endpoint`` again cannot change anything on the server."""
    path = endpoint.strip().lstrip("/").lower()
    if path.startswith("v1/"):
        path = path[3:]
    return path in _READ_POSTS or is_read_only(path)


def parse_retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or None."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max((when - now).total_seconds(), 0.0)


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How reads are retried: ``attempts`` tries in all (1 turns retries off), full-jitter
    backoff from ``backoff_initial`` doubling up to ``backoff_max`` seconds, and a
    ``Retry-After`` of at most ``max_retry_after`` seconds honoured (longer: give up)."""

    attempts: int = 3
    backoff_initial: float = 0.25
    backoff_max: float = 4.0
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        for name in ("backoff_initial", "backoff_max", "max_retry_after"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0")

    def delay(
        self, failures: int, retry_after: float | None, rng: random.Random | None = None
    ) -> float | None:
        """The pause before the next try after ``failures`` failed tries, or None: give up."""
        if failures >= self.attempts:
            return None
        if retry_after is not None and retry_after > self.max_retry_after:
            return None
        cap = min(self.backoff_max, self.backoff_initial * 2 ** (failures - 1))
        pause = (rng or random).uniform(0.0, cap)
        return max(pause, retry_after or 0.0)


publish(globals())  # its public classes show tradovate_async.X (see _exports)
