"""RenewalSchedule with plain datetimes: no sockets, no clocks."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from tradovate_async._errors import CaptchaRequiredError, InvalidCredentialsError, RateLimitedError
from tradovate_async._models import AccessToken
from tradovate_async._schedule import Blocked, Login, Renew, RenewalSchedule, Wait
from tradovate_async._secret import Secret

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)
SEC = dt.timedelta(seconds=1)


def token(
    issued: dt.datetime = T0, lifetime: dt.timedelta = 90 * MIN, value: str = "tok"
) -> AccessToken:
    return AccessToken(
        access_token=Secret(value),
        expiration_time=issued + lifetime,
        user_id=1,
        issued_at=issued,
    )


def schedule(**kwargs: object) -> RenewalSchedule:
    return RenewalSchedule(rng=random.Random(7), **kwargs)  # type: ignore[arg-type]


def test_renews_at_85_of_90_minutes_without_jitter() -> None:
    s = schedule(jitter=0.0)
    tok = token()
    assert s.renew_at(tok) == T0 + 85 * MIN
    assert s.next_action(tok, T0 + 84 * MIN) == Wait(T0 + 85 * MIN)
    assert s.next_action(tok, T0 + 85 * MIN) == Renew()


def test_jitter_only_moves_renewal_earlier_and_is_stable_per_token() -> None:
    s = schedule(jitter=0.5)
    tok = token()
    first = s.renew_at(tok)
    assert T0 + 82.5 * MIN <= first <= T0 + 85 * MIN
    assert s.renew_at(tok) == first
    draws = {RenewalSchedule(rng=random.Random(seed)).renew_at(tok) for seed in range(20)}
    assert len(draws) > 10, "jitter must spread a fleet"


def test_short_lifetime_caps_margin_at_half_life() -> None:
    s = schedule(jitter=0.0)
    tok = token(lifetime=4 * SEC)
    assert s.margin(tok) == 2 * SEC
    assert s.next_action(tok, T0 + SEC) == Wait(T0 + 2 * SEC)


def test_expired_or_missing_token_means_login() -> None:
    s = schedule()
    assert s.next_action(None, T0) == Login()
    tok = token()
    assert s.next_action(tok, T0 + 91 * MIN) == Login()
    # within the safety band before expiry the token is no longer used for requests
    assert not s.is_usable(tok, tok.expiration_time - SEC)
    assert s.is_usable(tok, tok.expiration_time - 11 * SEC)


def test_clock_jump_past_expiry_is_seen_at_once() -> None:
    s = schedule(jitter=0.0)
    tok = token()
    assert isinstance(s.next_action(tok, T0 + MIN), Wait)
    assert s.next_action(tok, T0 + 10 * 60 * MIN) == Login()


def test_transient_failures_back_off_exponentially_but_not_past_expiry() -> None:
    s = schedule(backoff_initial=SEC, backoff_max=8 * SEC, jitter=0.0)
    tok = token()
    now = T0 + 86 * MIN
    delays = []
    for _ in range(6):
        retry_at = s.on_transient_failure(now, tok)
        delays.append((retry_at - now).total_seconds())
        assert s.next_action(tok, now) == Wait(retry_at)
    assert delays[0] <= 1.0 and delays[1] <= 2.0 and delays[2] <= 4.0
    assert delays[1] >= 1.0 and delays[2] >= 2.0
    assert max(delays) <= 8.0
    late = tok.expiration_time - 12 * SEC
    retry_at = s.on_transient_failure(late, tok)
    assert retry_at <= tok.expiration_time - s.safety(tok)
    s.on_success()
    assert s.consecutive_failures == 0
    assert s.next_action(tok, now) == Renew()


def test_renewal_budget_of_15_per_hour() -> None:
    s = schedule(jitter=0.0)
    tok = token()
    now = T0 + 86 * MIN
    for i in range(15):
        assert s.budget_free_at(now + i * SEC) is None
        s.record_renewal_attempt(now + i * SEC)
    assert s.budget_free_at(now + 20 * SEC) == now + 60 * MIN
    action = s.next_action(tok, now + 20 * SEC)
    assert isinstance(action, Wait) and action.until <= tok.expiration_time
    assert s.budget_free_at(now + 60 * MIN) is None


@pytest.mark.parametrize(
    ("error", "forever"),
    [
        (InvalidCredentialsError("bad"), True),
        (CaptchaRequiredError(), False),
        (RateLimitedError("429", status=429), False),
    ],
)
def test_permanent_failures_block(error: Exception, forever: bool) -> None:
    s = schedule()
    blocked = s.on_permanent_failure(error, T0)  # type: ignore[arg-type]
    assert s.next_action(token(), T0 + MIN) == blocked
    assert isinstance(blocked, Blocked)
    if forever:
        assert blocked.until is None
        assert s.blocked(T0 + 1000 * MIN) is not None
    else:
        assert blocked.until == T0 + 60 * MIN
        assert s.blocked(T0 + 61 * MIN) is None
        assert s.next_action(None, T0 + 61 * MIN) == Login()


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        RenewalSchedule(dt.timedelta(0))
    with pytest.raises(ValueError):
        RenewalSchedule(jitter=2.0)


def test_deferral_window_and_rejection_grace() -> None:
    s = schedule(jitter=0.0)
    tok = token()
    assert s.may_defer(tok, T0 + 85 * MIN)  # 5 min left, margin 5 min: more than half
    assert not s.may_defer(tok, T0 + 88 * MIN)  # 2 min left: renew now, lock or not
    assert not s.may_defer(None, T0)
    assert s.rejection_grace(tok) == dt.timedelta(seconds=60)
    assert s.rejection_grace(token(lifetime=100 * SEC)) == 10 * SEC
