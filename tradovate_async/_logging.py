"""Keeping tokens and passwords out of log records.

The libraries under tradovate-async log more than a bot owner may expect: ``websockets`` logs
every handshake header and every frame at DEBUG (our ``authorize`` frame carries the raw access
token), and ``httpx``/``httpcore`` log URLs and headers. A DEBUG log attached to a support ticket
must not hand out a live trading token, so this module offers:

* :func:`redact` — masks secrets in a string: ``Authorization``/``Bearer`` values, the values of
  ``accessToken``, ``mdAccessToken``, ``access_token``, ``refresh_token``, ``token``,
  ``password``, ``sec``, ``secret``, ``client_secret`` (JSON, Python reprs, query strings,
  headers), and the body of ``authorize`` frames. Tokens keep at most an 8-character prefix (so
  two log lines can still be told apart); passwords and secrets keep nothing.
* :class:`RedactingFilter` — a :class:`logging.Filter` that applies :func:`redact` to the final
  message of each record (and understands ``websockets`` frame objects, whose own rendering
  elides the middle of a long frame but shows its end, i.e. the end of the token).
* :func:`install_redaction` — attaches one shared filter to the named loggers.

The filter never drops a record; it rewrites ``msg``/``args`` only when something was masked.
The WebSocket client of this package does not rely on users installing it: it hands
``websockets`` a logger adapter that redacts the same way (see ``_ws.py``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Final

from websockets.frames import Frame, Opcode

from ._exports import publish
from ._secret import scrub_known

__all__ = [
    "DEFAULT_LOGGERS",
    "RedactingFilter",
    "RedactingLoggerAdapter",
    "install_redaction",
    "redact",
    "redact_message",
]

_MASK: Final = "***"

#: Loggers :func:`install_redaction` covers when called without names. A filter on a logger
#: only sees records created on that very logger (not on its children), hence the child names.
DEFAULT_LOGGERS: Final = (
    "websockets",
    "websockets.client",
    "websockets.server",
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
    "tradovate_async",
)

# Keys whose values are tokens (keep a short prefix) or secrets (keep nothing).
_TOKEN_KEYS: Final = (
    "mdAccessToken",
    "md_access_token",
    "accessToken",
    "access_token",
    "refresh_token",
    "id_token",
    "token",
)
_SECRET_KEYS: Final = ("client_secret", "password", "secret", "sec")
_TOKEN_KEYS_LOWER: Final = frozenset(k.lower() for k in _TOKEN_KEYS)

_KEY_VALUE: Final = re.compile(
    r"(?P<head>(?<![A-Za-z0-9_-])(?:\\?[\"'])?(?P<key>"
    + "|".join(re.escape(k) for k in (*_TOKEN_KEYS, *_SECRET_KEYS))
    + r")(?:\\?[\"'])?\s*[:=]\s*(?:b(?=[\"']))?)"
    r"(?!bearer\s)"
    r"(?:\\\"(?P<v_esc>.*?)\\\"|\"(?P<v_dq>(?:[^\"\\]|\\.)*)\"|'(?P<v_sq>(?:[^'\\]|\\.)*)'"
    r"|(?P<v_raw>[^\s&,;}\])'\"\\]+))",
    re.IGNORECASE | re.DOTALL,
)
# An Authorization header value that is not a bearer token (e.g. Basic): mask it all. Covers
# ``Authorization: x``, JSON/dict forms and httpcore's ``(b'Authorization', b'x')`` tuples.
_AUTH_HEADER: Final = re.compile(
    r"(?P<head>\bauthorization(?:\\?[\"'])?(?:\s*[:=]\s*|,\s*)(?:b(?=[\"']))?(?:\\?[\"'])?)"
    r"(?!bearer\s)(?P<value>[^\s'\"\\][^\r\n'\"\\]*)",
    re.IGNORECASE,
)
_BEARER: Final = re.compile(r"(?P<head>\bbearer\s+)(?P<value>[A-Za-z0-9\-._~+/]+=*)", re.I)
# ``authorize`` + id + query + token, with real or escaped (repr) newlines. The token runs to a
# quote, whitespace, backslash or bracket; the "..." that websockets puts in long frames counts
# as token text, so the visible tail is masked too.
_AUTHORIZE: Final = re.compile(
    r"(?P<head>\bauthorize(?:\\n|\n)[0-9]*(?:\\n|\n)[^\n\\]*(?:\\n|\n))"
    r"(?P<value>[^\s'\"\\\]\[]+)"
)


def _keep(value: str, *, token: bool) -> str:
    """At most an 8-character prefix of a token, and never more than a quarter of it."""
    if not token:
        return ""
    return value[: min(8, len(value) // 4)]


def _key_value(match: re.Match[str]) -> str:
    token = match.group("key").lower() in _TOKEN_KEYS_LOWER
    head = match.group("head")
    for name, quote in (("v_esc", '\\"'), ("v_dq", '"'), ("v_sq", "'"), ("v_raw", "")):
        value = match.group(name)
        if value is not None:
            return f"{head}{quote}{_keep(value, token=token)}{_MASK}{quote}"
    return match.group(0)  # pragma: no cover - one alternative always matches


def _token_value(match: re.Match[str]) -> str:
    value = match.group("value")
    return f"{match.group('head')}{_keep(value, token=True)}{_MASK}"


def redact(text: str) -> str:
    """``text`` with every recognised secret masked (see the module docstring), and the values
    known to any live session (its password, API secret and tokens) in every encoding."""
    text = scrub_known(text)
    lowered = text.lower()
    if "authorize" in lowered:
        text = _AUTHORIZE.sub(_token_value, text)
    if "bearer" in lowered:
        text = _BEARER.sub(_token_value, text)
    if "authorization" in lowered:
        text = _AUTH_HEADER.sub(lambda m: f"{m.group('head')}{_MASK}", text)
    return _KEY_VALUE.sub(_key_value, text)


_DATA_OPCODES: Final = frozenset({Opcode.TEXT, Opcode.BINARY, Opcode.CONT})


def _frame_arg(frame: Frame) -> Any:
    """A websockets frame as a log argument: itself when harmless, else a redacted rendering
    computed from the **whole** payload (its own ``str`` would show the token's tail)."""
    if frame.opcode not in _DATA_OPCODES:
        return frame
    text = bytes(frame.data).decode("utf-8", "replace")
    masked = redact(text)
    if masked == text:
        return frame
    shown = repr(masked)
    if len(shown) > 200:
        shown = shown[:150] + "..." + shown[-40:]
    return f"{frame.opcode.name} {shown} [{len(frame.data)} bytes, redacted]"


def redact_message(msg: object, args: Any) -> str:
    """The final text of a log call ``(msg, args)``, redacted."""
    try:
        if isinstance(args, tuple) and args:
            args = tuple(_frame_arg(a) if isinstance(a, Frame) else a for a in args)
            text = str(msg) % args
        elif isinstance(args, Mapping) and args:
            text = str(msg) % args
        else:
            text = str(msg)
    except Exception:  # a broken log call must still not leak its arguments
        text = f"{msg!s} {args!r}"
    return redact(text)


class RedactingFilter(logging.Filter):
    """Masks tokens and secrets in every record it sees; never drops a record.

    Attach it where records pass: to a **handler** (covers every logger feeding it) or to the
    exact loggers that create the records (:func:`install_redaction`). Python applies a
    logger's filters only to records created on that logger, not to its children's.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        text = redact_message(record.msg, record.args)
        original: str | None
        try:
            original = record.getMessage()
        except Exception:
            original = None
        if text != original:
            record.msg = text
            record.args = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_shared_filter = RedactingFilter()


def install_redaction(*logger_names: str) -> RedactingFilter:
    """Attach the shared :class:`RedactingFilter` to ``logger_names`` (default:
    :data:`DEFAULT_LOGGERS`) and to their children that exist already. Idempotent.

    Children created later are not covered: for complete coverage also add a
    ``RedactingFilter()`` to your handlers.
    """
    names = logger_names or DEFAULT_LOGGERS
    manager_names = [n for n in logging.Logger.manager.loggerDict if isinstance(n, str)]
    targets: list[str] = []
    for name in names:
        targets.append(name)
        prefix = name + "."
        targets.extend(n for n in manager_names if n.startswith(prefix))
    for name in dict.fromkeys(targets):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(_shared_filter)
    return _shared_filter


class RedactingLoggerAdapter(logging.LoggerAdapter[logging.Logger]):
    """Hands a library (``websockets``) a logger whose every message is redacted before it
    becomes a record, whether or not the user installed a filter."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        text = redact_message(msg, args)
        if self.extra and "extra" not in kwargs:
            kwargs["extra"] = self.extra
        kwargs.setdefault("stacklevel", 2)
        self.logger.log(level, "%s", text, **kwargs)


publish(globals())  # its public classes show tradovate_async.X (see _exports)
