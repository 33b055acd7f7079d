"""Token values for store tests: distinctive secrets, expiry a given number of minutes away."""

from __future__ import annotations

import datetime as dt

from tradovate_async._models import AccessToken
from tradovate_async._secret import Secret


def make_token(n: int = 1, *, minutes: float = 90.0, secret: str | None = None) -> AccessToken:
    now = dt.datetime.now(dt.UTC)
    return AccessToken(
        access_token=Secret(secret or f"access-secret-{n}"),
        md_access_token=Secret(f"md-secret-{n}"),
        expiration_time=now + dt.timedelta(minutes=minutes),
        user_id=n,
        name="bot-user",
        issued_at=now,
    )
