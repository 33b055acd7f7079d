"""What the token endpoint's answers mean: the sans-I/O core of authentication.

Nothing here touches a socket or a clock. :func:`interpret_token_response` turns one HTTP answer
of ``/auth/accesstokenrequest`` or ``/auth/renewaccesstoken`` into a token, a penalty to serve,
or a typed error (penalties and their policy live in ``_penalty``). The thin
HTTP layer in ``_auth.py`` only moves bytes and sleeps.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, Literal, Protocol

from ._errors import (
    APIError,
    InvalidCredentialsError,
    InvalidResponseError,
    LockoutWarningError,
    RateLimitedError,
    TokenRejectedError,
)
from ._models import AccessToken
from ._responses import Penalty, parse_json_body, penalty_in, scrubbed_excerpt
from ._secret import Secret
from ._secret import SecretScrubber as Scrubber

__all__ = [
    "LoginCredentials",
    "Scrubber",
    "build_login_body",
    "interpret_token_response",
]

TokenCall = Literal["login", "renew"]


class LoginCredentials(Protocol):
    """What a login needs (``TradovateConfig`` is one); the core does not import settings."""

    @property
    def username(self) -> str: ...
    @property
    def password(self) -> Secret: ...
    @property
    def app_id(self) -> str: ...
    @property
    def app_version(self) -> str: ...
    @property
    def cid(self) -> int: ...
    @property
    def sec(self) -> Secret: ...
    @property
    def device_id(self) -> str: ...


def build_login_body(config: LoginCredentials, ticket: str | None = None) -> dict[str, Any]:
    """The ``accesstokenrequest`` body. ``deviceId`` is sent (the source document forgets it);
    ``cid`` is a JSON number as in every official example."""
    body: dict[str, Any] = {
        "name": config.username,
        "password": config.password.reveal(),
        "appId": config.app_id,
        "appVersion": config.app_version,
        "cid": config.cid,
        "sec": config.sec.reveal(),
        "deviceId": config.device_id,
    }
    if ticket is not None:
        body["p-ticket"] = ticket
    return body


def interpret_token_response(
    call: TokenCall,
    status: int,
    body: bytes,
    *,
    issued_at: dt.datetime,
    scrub: Callable[[str], str],
) -> AccessToken | Penalty:
    """Map one answer of the token endpoint (``call="login"``) or the renewal endpoint
    (``call="renew"``) to a token, a :class:`Penalty`, or a raised typed error."""
    if status == 200:
        data = parse_json_body(status, body, scrub)
        if not isinstance(data, dict):
            raise InvalidResponseError(
                "token answer is not a JSON object",
                status=status,
                body_excerpt=scrubbed_excerpt(body, scrub),
            )
        penalty = penalty_in(data, status=status)
        if penalty is not None:
            return penalty
        error_text = data.get("errorText")
        if isinstance(error_text, str) and error_text:
            text = scrub(error_text)
            if call == "login":
                raise InvalidCredentialsError(f"login refused: {text}", error_text=text)
            raise TokenRejectedError(f"renewal refused: {text}")
        try:
            return AccessToken.from_response(data, issued_at=issued_at)
        except (ValueError, TypeError, OverflowError) as exc:
            raise InvalidResponseError(f"token answer unusable ({exc})", status=status) from None
    text = scrubbed_excerpt(body, scrub)
    if status == 401 or (status == 400 and call == "renew"):
        if call == "login":
            raise InvalidCredentialsError("login refused (HTTP 401)", error_text=text or None)
        raise TokenRejectedError(
            f"renewal refused (HTTP {status}): the token is expired or revoked"
        )
    if status == 423:
        raise LockoutWarningError(
            "token endpoint warns of a lockout: stop authenticating for about an hour",
            status=status,
            body_excerpt=text,
        )
    if status == 429:
        raise RateLimitedError(
            "rate limited: locked out for a rolling hour, repeated requests extend it",
            status=status,
            body_excerpt=text,
        )
    raise APIError(f"{call} failed", status=status, body_excerpt=text)
