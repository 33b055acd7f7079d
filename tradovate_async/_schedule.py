"""When to renew, when a token is still usable, and what to do after a failure.

:class:`RenewalSchedule` is a small state machine with no I/O and no clock of its own: every
method takes ``now`` (a timezone-aware wall-clock time), so it is tested with plain datetimes.
Wall-clock time is the right reference because ``expirationTime`` is a wall-clock instant: after
a laptop suspend or a VM pause the monotonic clock has stood still, the wall clock has not.

Two thresholds, as mature token libraries use:

- **renew at** ``expiration − margin − jitter``: renew early, while the token still works;
  ``margin`` is ``renew_before`` (default 5 minutes: the source document's 85 of 90 minutes),
  capped at half the token's lifetime so short-lived tokens still get a useful life;
- **usable until** ``expiration − safety``: past this a request does not use the token
  (it could expire on the way) but waits for a new one.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import random

from ._errors import (
    InvalidCredentialsError,
    LockoutWarningError,
    PenaltyLimitError,
    RateLimitedError,
    RetryLaterError,
    TradovateError,
)
from ._models import AccessToken

__all__ = ["Blocked", "Login", "LoginPacing", "Renew", "RenewalSchedule", "Wait", "is_permanent"]

_HOUR = dt.timedelta(hours=1)


@dataclasses.dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do before ``until``."""

    until: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class Renew:
    """Renew the current token (``/auth/renewaccesstoken``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Login:
    """No usable token: a full login (``/auth/accesstokenrequest``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Blocked:
    """A permanent failure: no authentication call until ``until`` (``None``: never)."""

    error: TradovateError
    until: dt.datetime | None


Action = Wait | Renew | Login | Blocked


def is_permanent(error: BaseException) -> bool:
    """Whether authenticating again soon would make things worse: bad credentials (never
    retried), a lockout or its warning, a captcha or a penalty beyond the policy (retried after
    their ``retry_after``). Sockets give up on the same errors instead of reconnecting."""
    return isinstance(
        error,
        InvalidCredentialsError | PenaltyLimitError | RateLimitedError | LockoutWarningError,
    )


class RenewalSchedule:
    """Decides the next authentication step for one session.

    Args:
        renew_before: how long before expiry to renew.
        jitter: fraction of the margin drawn at random (once per token) and added to it, so a
            fleet started together does not renew together. Renewal only ever moves earlier.
        renewals_per_hour: the server's budget for ``/auth/renewaccesstoken`` (15, successes
            included); attempts beyond it wait for the rolling window.
        backoff_initial, backoff_max: exponential backoff with full jitter after a transient
            failure, never beyond the token's expiry.
        rng: the random source (seeded in tests).
    """

    def __init__(
        self,
        renew_before: dt.timedelta = dt.timedelta(minutes=5),
        *,
        jitter: float = 0.1,
        renewals_per_hour: int = 15,
        backoff_initial: dt.timedelta = dt.timedelta(seconds=1),
        backoff_max: dt.timedelta = dt.timedelta(seconds=60),
        rng: random.Random | None = None,
    ) -> None:
        if renew_before <= dt.timedelta(0):
            raise ValueError("renew_before must be positive")
        if not 0 <= jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        self.renew_before = renew_before
        self.jitter = jitter
        self.renewals_per_hour = renewals_per_hour
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._rng = rng or random.Random()
        self._renew_for: tuple[AccessToken, dt.datetime] | None = None
        self._attempts: collections.deque[dt.datetime] = collections.deque()
        self._failures = 0
        self._retry_at: dt.datetime | None = None
        self._blocked: Blocked | None = None

    # -- thresholds -------------------------------------------------------------------------

    def margin(self, token: AccessToken) -> dt.timedelta:
        """The renewal margin for this token: ``renew_before``, at most half its lifetime."""
        lifetime = token.lifetime
        if lifetime is not None and lifetime > dt.timedelta(0):
            return min(self.renew_before, lifetime / 2)
        return self.renew_before

    def safety(self, token: AccessToken) -> dt.timedelta:
        """How close to expiry a token stops being used for requests."""
        return min(dt.timedelta(seconds=10), self.margin(token) / 10)

    def renew_at(self, token: AccessToken) -> dt.datetime:
        """When to renew ``token``; the jitter is drawn once per token and remembered."""
        if self._renew_for is not None and self._renew_for[0] is token:
            return self._renew_for[1]
        margin = self.margin(token)
        extra = margin * (self.jitter * self._rng.random())
        when = token.expiration_time - margin - extra
        self._renew_for = (token, when)  # only the current token matters
        return when

    def is_usable(self, token: AccessToken | None, now: dt.datetime) -> bool:
        """Whether a request may go out with ``token`` now."""
        return token is not None and now < token.expiration_time - self.safety(token)

    def is_fresh(self, token: AccessToken | None, now: dt.datetime) -> bool:
        """Usable and not yet due for renewal: adopt it from a store without any call."""
        return token is not None and now < token.expiration_time - self.margin(token)

    def may_defer(self, token: AccessToken | None, now: dt.datetime) -> bool:
        """Whether a due renewal may wait (e.g. for the token store's lock to come back): the
        token still has more than half its margin left."""
        return token is not None and now < token.expiration_time - self.margin(token) / 2

    def rejection_grace(self, token: AccessToken) -> dt.timedelta:
        """How soon after a refusal-driven renewal a refusal of its product means permissions
        or the wrong environment rather than expiry: ``min(60 s, lifetime / 10)``."""
        return min(dt.timedelta(seconds=60), (token.lifetime or dt.timedelta(0)) / 10)

    # -- decisions --------------------------------------------------------------------------

    @property
    def has_block(self) -> bool:
        """Whether a permanent failure stands (or stood until recently: :meth:`blocked`
        says whether it still applies)."""
        return self._blocked is not None

    def blocked(self, now: dt.datetime) -> Blocked | None:
        """The standing permanent failure, if it still applies at ``now``."""
        if self._blocked is not None and self._blocked.until is not None:
            if now >= self._blocked.until:
                self._blocked = None
        return self._blocked

    def next_action(self, token: AccessToken | None, now: dt.datetime) -> Action:
        """What the renewer should do at ``now``."""
        blocked = self.blocked(now)
        if blocked is not None:
            return blocked
        if token is None or not self.is_usable(token, now):
            if self._retry_at is not None and now < self._retry_at:
                return Wait(self._retry_at)
            return Login()
        renew_at = self.renew_at(token)
        if self._retry_at is not None and now < self._retry_at:
            return Wait(self._retry_at)
        if now < renew_at:
            return Wait(renew_at)
        budget_free = self.budget_free_at(now)
        if budget_free is not None:
            return Wait(min(budget_free, token.expiration_time - self.safety(token)))
        return Renew()

    def retry_pending(self, now: dt.datetime) -> bool:
        """Whether a failed attempt's backoff is still running."""
        return self._retry_at is not None and now < self._retry_at

    def budget_free_at(self, now: dt.datetime) -> dt.datetime | None:
        """``None`` if a renewal may be sent now, else when the rolling hour frees one."""
        while self._attempts and now - self._attempts[0] >= _HOUR:
            self._attempts.popleft()
        if len(self._attempts) < self.renewals_per_hour:
            return None
        return self._attempts[0] + _HOUR

    # -- outcomes ---------------------------------------------------------------------------

    def record_renewal_attempt(self, now: dt.datetime) -> None:
        """A renewal request is about to be sent (successes count against the budget too)."""
        self._attempts.append(now)

    def on_success(self) -> None:
        """A token was obtained: forget failures, retries and blocks."""
        self._failures = 0
        self._retry_at = None
        self._blocked = None

    def on_transient_failure(self, now: dt.datetime, token: AccessToken | None) -> dt.datetime:
        """Back off exponentially with full jitter; returns when to try again."""
        self._failures += 1
        ceiling = min(
            self.backoff_max, self.backoff_initial * float(2 ** min(self._failures - 1, 30))
        )
        delay = ceiling * (0.5 + 0.5 * self._rng.random())
        retry_at = now + delay
        if token is not None and self.is_usable(token, now):
            retry_at = min(retry_at, token.expiration_time - self.safety(token))
        self._retry_at = retry_at
        return retry_at

    def on_paced(self, until: dt.datetime) -> None:
        """The login pacing floor refused a login: no authentication call before ``until``;
        a usable token keeps serving meanwhile."""
        self._retry_at = until

    def on_permanent_failure(self, error: TradovateError, now: dt.datetime) -> Blocked:
        """Stop authenticating: until the error's ``retry_after`` (lockouts, captcha), or for
        good (bad credentials)."""
        retry_after = error.retry_after if isinstance(error, RetryLaterError) else None
        until = now + retry_after if retry_after is not None else None
        self._blocked = Blocked(error, until)
        self._retry_at = None
        return self._blocked

    @property
    def consecutive_failures(self) -> int:
        """Failed attempts since the last success."""
        return self._failures


class LoginPacing:
    """The floor under every login: whatever asks for one (a bug, a clock gone wrong, a token
    refused again and again), a user gets at most ``per_hour`` successful logins in any rolling
    hour, and a login only ``pause`` seconds or more after the previous success.

    Times are plain seconds on one steady scale: the session uses the host's elapsed clock,
    which no wall-clock step moves, so no clock error can open the floor. Logins seen by other
    processes (through the token store) are merged in; times within ``_SAME`` seconds of a
    known one are the same login seen twice.

    Args:
        per_hour: successful logins allowed in any rolling hour (the first included).
        pause: seconds between two successful logins.
    """

    _SAME = 5.0

    def __init__(self, per_hour: int = 4, pause: float = 60.0) -> None:
        if per_hour < 1:
            raise ValueError("per_hour must be at least 1")
        if pause < 0:
            raise ValueError("pause must not be negative")
        self.per_hour = per_hour
        self.pause = pause
        self._successes: list[float] = []

    def _prune(self, now: float) -> None:
        self._successes = [t for t in self._successes if now - t < _HOUR.total_seconds()]

    def wait_before_login(self, now: float) -> float:
        """Seconds until a login is allowed (0.0: now)."""
        self._prune(now)
        waits = [0.0]
        if self._successes:
            waits.append(self.pause - (now - self._successes[-1]))
        if len(self._successes) >= self.per_hour:
            waits.append(self._successes[-self.per_hour] + _HOUR.total_seconds() - now)
        return max(waits)

    def record(self, at: float) -> None:
        """A login succeeded at ``at`` (or another process reports one)."""
        if any(abs(at - known) < self._SAME for known in self._successes):
            return
        self._successes.append(at)
        self._successes.sort()
        del self._successes[: -max(self.per_hour, 16)]

    def history(self, now: float) -> list[float]:
        """The successes of the last hour, oldest first."""
        self._prune(now)
        return list(self._successes)
