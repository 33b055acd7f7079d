"""The meaning of every token-endpoint answer, decided without a network."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tradovate_async._auth_core import (
    Scrubber,
    build_login_body,
    interpret_token_response,
)
from tradovate_async._config import TradovateConfig
from tradovate_async._errors import (
    APIError,
    CaptchaRequiredError,
    InvalidCredentialsError,
    InvalidResponseError,
    LockoutWarningError,
    OrderRejectedError,
    PenaltyLimitError,
    RateLimitedError,
    RequestFailedError,
    TokenRejectedError,
)
from tradovate_async._models import AccessToken
from tradovate_async._penalty import Penalty, PenaltyPolicy
from tradovate_async._responses import interpret_api_response

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
GOOD = {
    "accessToken": "A" * 40,
    "mdAccessToken": "M" * 40,
    "expirationTime": "2026-11-27T13:30:00.056Z",
    "userId": 42,
    "name": "alice",
    "userStatus": "Active",
    "hasLive": False,
    "somethingNew": {"x": 1},
}


def interpret(status: int, body: object, call: str = "login") -> AccessToken | Penalty:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return interpret_token_response(call, status, raw, issued_at=NOW, scrub=str)  # type: ignore[arg-type]


def test_success_parses_every_field_and_ignores_unknown() -> None:
    token = interpret(200, GOOD)
    assert isinstance(token, AccessToken)
    assert token.access_token.reveal() == "A" * 40
    assert token.md_access_token is not None and token.md_access_token.reveal() == "M" * 40
    assert token.expiration_time == dt.datetime(2026, 11, 27, 13, 30, 0, 56000, tzinfo=dt.UTC)
    assert token.expiration_time.tzinfo is dt.UTC
    assert (token.user_id, token.name, token.user_status, token.has_live) == (
        42,
        "alice",
        "Active",
        False,
    )
    assert token.expires_in(NOW) == dt.timedelta(minutes=90, milliseconds=56)
    assert "A" * 9 not in repr(token)


def test_md_token_may_be_absent_and_falls_back() -> None:
    body = {k: v for k, v in GOOD.items() if k != "mdAccessToken"}
    token = interpret(200, body)
    assert isinstance(token, AccessToken)
    assert token.md_access_token is None
    assert token.market_data_token.reveal() == "A" * 40


def test_error_text_is_invalid_credentials_on_login_and_rejection_on_renew() -> None:
    body = {"errorText": "Incorrect username or password."}
    with pytest.raises(InvalidCredentialsError, match="Incorrect username"):
        interpret(200, body)
    with pytest.raises(TokenRejectedError):
        interpret(200, body, call="renew")


def test_penalty_without_captcha_is_a_penalty() -> None:
    outcome = interpret(200, {"p-ticket": "TICKET", "p-time": 7})
    assert outcome == Penalty("TICKET", 7.0)
    assert "TICKET" not in repr(outcome)


@pytest.mark.parametrize("flag", [True, "true"])
def test_penalty_with_captcha_stops(flag: object) -> None:
    with pytest.raises(CaptchaRequiredError, match="about an hour"):
        interpret(200, {"p-ticket": "T", "p-time": 5, "p-captcha": flag})


@pytest.mark.parametrize(
    "body",
    [
        {"p-ticket": "", "p-time": 1},
        {"p-ticket": "T", "p-time": -1},
        {"p-ticket": "T", "p-time": "x"},
    ],
)
def test_broken_penalty_is_invalid_response(body: object) -> None:
    with pytest.raises(InvalidResponseError):
        interpret(200, body)


@pytest.mark.parametrize(
    ("status", "call", "error"),
    [
        (401, "login", InvalidCredentialsError),
        (401, "renew", TokenRejectedError),
        (400, "renew", TokenRejectedError),
        (423, "login", LockoutWarningError),
        (429, "login", RateLimitedError),
        (500, "login", APIError),
        (502, "renew", APIError),
        (400, "login", APIError),
    ],
)
def test_statuses(status: int, call: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        interpret(status, b"<html><body>Bad Gateway</body></html>", call=call)


@pytest.mark.parametrize(
    "raw", [b"<html>oops</html>", b'{"accessToken": "abc', b"", b"[1, 2]", b'"text"', b"\xff\xfe"]
)
def test_bad_bodies_are_invalid_response_with_excerpt(raw: bytes) -> None:
    with pytest.raises(InvalidResponseError) as info:
        interpret(200, raw)
    assert info.value.status == 200


@pytest.mark.parametrize("missing", ["accessToken", "expirationTime", "userId"])
def test_missing_required_fields(missing: str) -> None:
    with pytest.raises(InvalidResponseError, match="unusable"):
        interpret(200, {k: v for k, v in GOOD.items() if k != missing})


def test_html_502_excerpt_is_short_and_scrubbed() -> None:
    secret = "hunter2-password"
    raw = ("<html>" + "x" * 500 + secret + "</html>").encode()
    with pytest.raises(APIError) as info:
        interpret_token_response("login", 502, raw, issued_at=NOW, scrub=Scrubber([secret]))
    assert info.value.status == 502
    assert info.value.body_excerpt is not None and len(info.value.body_excerpt) <= 200
    raw = f"<html>{secret}</html>".encode()
    with pytest.raises(APIError) as info:
        interpret_token_response("login", 500, raw, issued_at=NOW, scrub=Scrubber([secret]))
    assert secret not in str(info.value)


def test_penalty_policy_bounds() -> None:
    policy = PenaltyPolicy(max_rounds=2, max_wait=10)
    assert policy.wait_for(Penalty("t", 3), 0) == 3
    assert policy.wait_for(Penalty("t", 3), 1) == 3
    with pytest.raises(PenaltyLimitError, match="2 round"):
        policy.wait_for(Penalty("t", 3), 2)
    with pytest.raises(PenaltyLimitError, match="more than") as info:
        policy.wait_for(Penalty("t", 60), 0)
    assert info.value.retry_after == dt.timedelta(seconds=60)


def test_login_body_has_device_id_and_numeric_cid() -> None:
    config = TradovateConfig(
        username="u", password="pw", app_id="app", sec="s3c", device_id="dev", cid=8
    )
    body = build_login_body(config)
    assert body == {
        "name": "u",
        "password": "pw",
        "appId": "app",
        "appVersion": "1.0",
        "cid": 8,
        "sec": "s3c",
        "deviceId": "dev",
    }
    assert build_login_body(config, "TK")["p-ticket"] == "TK"


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (200, {"errorText": "Access is denied"}, RequestFailedError),
        (200, {"failureReason": "InvalidPrice", "failureText": "bad"}, OrderRejectedError),
        (200, {"violations": [{"constraint": "x"}]}, RequestFailedError),
        (401, "", TokenRejectedError),
        (404, "Not found", APIError),
        (423, "", LockoutWarningError),
        (429, "", RateLimitedError),
        (500, "Internal Server Error, error id: 1", APIError),
    ],
)
def test_api_response_errors(status: int, body: object, error: type[Exception]) -> None:
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    with pytest.raises(error):
        interpret_api_response("GET", "x/y", status, raw, str)


def test_api_response_success() -> None:
    assert interpret_api_response("GET", "a", 200, b'[{"id": 1}]', str) == [{"id": 1}]
    assert interpret_api_response(
        "POST", "o", 200, b'{"orderId": 5, "failureReason": "Success"}', str
    ) == {
        "orderId": 5,
        "failureReason": "Success",
    }
    assert interpret_api_response("GET", "a", 204, b"", str) is None
    with pytest.raises(InvalidResponseError):
        interpret_api_response("GET", "a", 200, b"<html>", str)
