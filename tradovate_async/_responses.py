"""What an answer of a REST call means (sans-I/O).

Tradovate answers business failures with HTTP 200: ``errorText`` on most results,
``failureReason``/``failureText`` on order results, ``violations`` on validation errors. A
client that only looks at the status code places no order and never knows; this module looks at
the body as well.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ._errors import (
    APIError,
    InvalidResponseError,
    LockoutWarningError,
    OrderRejectedError,
    RateLimitedError,
    RequestFailedError,
    TokenRejectedError,
    excerpt,
)

__all__ = ["interpret_api_response", "parse_json_body", "scrubbed_excerpt"]


def scrubbed_excerpt(body: bytes | str, scrub: Callable[[str], str]) -> str:
    """A short excerpt of a body with secrets removed *before* it is cut, so that a secret
    straddling the cut cannot survive in part."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return excerpt(scrub(text))


def parse_json_body(status: int, body: bytes, scrub: Callable[[str], str]) -> Any:
    """Decode a JSON body or raise :class:`InvalidResponseError` with a scrubbed excerpt."""
    if not body.strip():
        raise InvalidResponseError("empty body where JSON was expected", status=status)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidResponseError(
            "body is not JSON", status=status, body_excerpt=scrubbed_excerpt(body, scrub)
        ) from None


def interpret_api_response(
    method: str, path: str, status: int, body: bytes, scrub: Callable[[str], str]
) -> Any:
    """The parsed JSON of a successful call, or the typed error its answer stands for."""
    where = f"{method} /{path}"
    if 200 <= status < 300:
        if not body.strip():
            return None
        data = parse_json_body(status, body, scrub)
        if isinstance(data, dict):
            error_text = data.get("errorText")
            if isinstance(error_text, str) and error_text:
                text = scrub(error_text)
                raise RequestFailedError(f"{where} failed: {text}", status=status, error_text=text)
            reason = data.get("failureReason")
            if isinstance(reason, str) and reason != "Success":
                failure_text = data.get("failureText")
                raise OrderRejectedError(
                    reason, scrub(failure_text) if isinstance(failure_text, str) else None
                )
            violations = data.get("violations")
            if isinstance(violations, list) and violations:
                text = scrubbed_excerpt(json.dumps(violations), scrub)
                raise RequestFailedError(
                    f"{where} rejected: {text}", status=status, error_text=text
                )
        return data
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
