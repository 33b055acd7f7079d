"""What an answer of the API means (sans-I/O): one interpretation for REST and WebSocket.

Tradovate answers business failures with HTTP 200 (or a socket ``s`` of 200): ``errorText`` on
most results, ``failureReason``/``failureText`` on order results, ``violations`` on validation
errors, and ``p-ticket``/``p-time``/``p-captcha`` when a time penalty applies. A socket answer's
``d`` is what the REST call would have returned, so both transports judge it here, with the same
errors: an order the server rejected never comes back as if it had been placed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlencode

import msgspec

from ._errors import (
    APIError,
    CaptchaRequiredError,
    InvalidResponseError,
    LockoutWarningError,
    OrderRejectedError,
    PenaltyLimitError,
    RateLimitedError,
    RequestFailedError,
    TokenRejectedError,
    excerpt,
)
from ._penalty import Penalty

__all__ = [
    "Penalty",
    "encode_params",
    "interpret_api_response",
    "judge_answer",
    "parse_json_body",
    "penalty_in",
    "scrubbed_excerpt",
    "with_ticket",
]

_PENALTY_KEYS: Final = ("p-ticket", "p-time", "p-captcha")
_TRUE: Final = (True, "true", "True", 1)


def scrubbed_excerpt(body: bytes | str, scrub: Callable[[str], str]) -> str:
    """A short excerpt of a body with secrets removed *before* it is cut, so that a secret
    straddling the cut cannot survive in part."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return excerpt(scrub(text))


#: JSON in C; ``json.loads`` stays the fallback, so what is accepted does not change.
_fast_decode = msgspec.json.Decoder().decode


def parse_json_body(status: int, body: bytes, scrub: Callable[[str], str]) -> Any:
    """Decode a JSON body or raise :class:`InvalidResponseError` with a scrubbed excerpt."""
    if _blank(body):
        raise InvalidResponseError("empty body where JSON was expected", status=status)
    try:
        return _fast_decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        pass  # what msgspec refuses and json.loads may take (NaN, 1e400, lone surrogates)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidResponseError(
            "body is not JSON", status=status, body_excerpt=scrubbed_excerpt(body, scrub)
        ) from None


def penalty_in(data: Any, *, status: int = 200) -> Penalty | None:
    """The time penalty an answer stands for, or ``None`` when it is not a penalty.

    A penalty carries up to three fields (``p-ticket``, ``p-time``, ``p-captcha``; the official
    time-penalty tutorial). ``p-captcha`` true — with or without a ticket — raises
    :class:`CaptchaRequiredError`: a program cannot solve it. A penalty without a usable ticket
    or wait raises :class:`InvalidResponseError`.
    """
    if type(data) is not dict or not any(key in data for key in _PENALTY_KEYS):
        return None
    if data.get("p-captcha") in _TRUE:
        raise CaptchaRequiredError()
    ticket, wait = data.get("p-ticket"), data.get("p-time")
    if not isinstance(ticket, str) or not ticket:
        raise InvalidResponseError("penalty without a usable p-ticket", status=status)
    if isinstance(wait, bool) or not isinstance(wait, int | float):
        raise InvalidResponseError("penalty without a usable p-time", status=status)
    try:
        seconds = float(wait)
    except OverflowError:  # an integer beyond float: longer than any allowed wait
        seconds = math.inf
    if (not math.isfinite(seconds) and isinstance(wait, float)) or seconds < 0:
        raise InvalidResponseError("penalty without a usable p-time", status=status)
    return Penalty(ticket, seconds)


def judge_answer(where: str, status: int, data: Any, scrub: Callable[[str], str]) -> Any:
    """``data`` of a successful (2xx) answer, or the typed error its body reports.

    The one judgement of a decoded answer, shared by REST and WebSocket: ``errorText`` raises
    :class:`RequestFailedError`, a ``failureReason`` other than ``Success`` raises
    :class:`OrderRejectedError`, a non-empty ``violations`` list raises
    :class:`RequestFailedError`.
    """
    if type(data) is not dict:
        return data
    error_text = data.get("errorText")
    if isinstance(error_text, str) and error_text:
        text = scrub(error_text)
        raise RequestFailedError(f"{where} failed: {text}", status=status, error_text=text)
    reason = data.get("failureReason")
    if isinstance(reason, str) and reason != "Success":
        failure_text = data.get("failureText")
        raise OrderRejectedError(
            scrub(reason), scrub(failure_text) if isinstance(failure_text, str) else None
        )
    violations = data.get("violations")
    if isinstance(violations, list) and violations:
        text = scrubbed_excerpt(json.dumps(violations), scrub)
        raise RequestFailedError(f"{where} rejected: {text}", status=status, error_text=text)
    return data


def _blank(body: bytes) -> bool:
    """``not body.strip()`` without copying the body (a list answer can run to megabytes)."""
    return not body or body.isspace()


def interpret_api_response(
    method: str, path: str, status: int, body: bytes, scrub: Callable[[str], str]
) -> Any:
    """The parsed JSON of a successful call, a :class:`Penalty` to wait out, or the typed error
    the answer stands for."""
    if 200 <= status < 300:
        if _blank(body):
            return None
        data = parse_json_body(status, body, scrub)
        if type(data) is not dict:  # neither a penalty nor a failure report: lists, numbers
            return data
        penalty = penalty_in(data, status=status)
        if penalty is not None:
            return penalty
        return judge_answer(f"{method} /{path}", status, data, scrub)
    where = f"{method} /{path}"
    text = scrubbed_excerpt(body, scrub)
    if status == 401:
        raise TokenRejectedError(
            f"{where} refused the token (HTTP 401) even after a renewal: check the API key's "
            "permissions and the environment (live/demo)"
        )
    if status == 423:
        raise LockoutWarningError(f"{where}: lockout warning", status=status, body_excerpt=text)
    if status == 429:
        raise RateLimitedError(
            f"{where}: rate limited for a rolling hour", status=status, body_excerpt=text
        )
    raise APIError(f"{where} failed", status=status, body_excerpt=text)


def with_ticket(body: Any, ticket: str) -> dict[str, Any]:
    """The identical body plus ``"p-ticket"``, as the penalty documentation asks; a request
    without a body sends ``{"p-ticket": ...}``. A body that is not a JSON object cannot carry
    the ticket: :class:`PenaltyLimitError`."""
    if body is None:
        return {"p-ticket": ticket}
    if not isinstance(body, Mapping):
        raise PenaltyLimitError("a penalty ticket needs a JSON object body to travel in")
    return {**body, "p-ticket": ticket}


def _wire_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return ",".join(_wire_value(v) for v in items)
    return str(value)


def encode_params(params: Mapping[str, Any] | None) -> str:
    """A query string as the documentation writes it: list parameters (``ids``, ``masterids``)
    comma-separated (``ids=1,2,3``), not repeated keys; booleans ``true``/``false``; ``None``
    values left out."""
    if not params:
        return ""
    pairs = [(str(k), _wire_value(v)) for k, v in params.items() if v is not None]
    return urlencode(pairs, safe=",")
