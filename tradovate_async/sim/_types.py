"""Public value types of the simulator: users, accounts, faults and the snapshots it reports.

They are frozen so a test can build them once, share them between simulators and compare the
snapshots it gets back without worrying that the server thread mutates them underneath.
"""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import urllib.parse
from typing import Literal

__all__ = [
    "ConnectionInfo",
    "EchoStyle",
    "Fault",
    "FaultKind",
    "RequestRecord",
    "SimAccount",
    "SimPosition",
    "SimUser",
    "echo_text",
]

logger = logging.getLogger(__name__)

FaultKind = Literal[
    "penalty",
    "error_text",
    "status",
    "html",
    "malformed_json",
    "truncated_json",
    "delay",
    "drop",
    "echo",
]
EchoStyle = Literal["error_text", "html", "plain"]

DEFAULT_ERROR_TEXT = (
    "Incorrect username or password. Please try again, noting that passwords are case-sensitive."
)


@dataclasses.dataclass(frozen=True, slots=True)
class SimPosition:
    """An open position an account starts with.

    ``symbol`` is a contract (``ESZ6``) or a product (``ES``: its front month at start-up);
    ``net_price`` None means the contract's simulated price at start-up.
    """

    symbol: str
    net_pos: int
    net_price: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SimAccount:
    """One trading account of a simulated user, as ``account/list`` shows it.

    ``name`` is what the real server calls the account spec (``DEMO12345``); ``id`` is the
    integer that orders need. They differ on purpose so a client that confuses them fails.
    """

    id: int = 70001
    name: str = "DEMO70001"
    account_type: str = "Customer"
    active: bool = True
    balance: float = 50_000.0
    positions: tuple[SimPosition, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class SimUser:
    """Credentials and profile of one simulated user.

    A login must present ``username``, ``password``, ``app_id``, ``cid`` and ``sec`` exactly;
    ``app_version`` and ``deviceId`` are free-form, as on the real server.
    """

    username: str = "sim-user"
    password: str = "sim-password"
    app_id: str = "tradovate-async-sim"
    app_version: str = "1.0"
    cid: int = 0
    sec: str = "sim-secret"
    user_id: int = 4242
    email: str = "sim-user@example.invalid"
    full_name: str = "Sim User"
    has_live: bool = False
    accounts: tuple[SimAccount, ...] = (SimAccount(),)
    #: ``outdatedTaC`` of this user's token answers: the user has terms to accept.
    outdated_tac: bool = False

    def __repr__(self) -> str:
        # The dataclass repr would print the password and secret into test logs.
        return f"SimUser(username={self.username!r}, user_id={self.user_id})"


@dataclasses.dataclass(frozen=True, slots=True)
class Fault:
    """A scripted misbehaviour for the next request(s) to one path; build it with a factory.

    Faults that stand for an infrastructure failure before the application runs (``status``,
    ``html``, ``malformed_json``, ``error_text``, ``penalty``) leave server state untouched.
    ``delay``, ``truncated_json`` and ``drop`` let the request take effect first (a login
    creates its session) and only spoil the answer, because that is the case that bites real
    clients: the server did the work but the client never saw the result.
    """

    kind: FaultKind
    status_code: int = 200
    body: bytes | None = None
    content_type: str = "text/plain"
    p_time: float = 0.0
    captcha: bool = False
    seconds: float = 0.0
    text: str = ""
    retry_after: str | None = None

    @classmethod
    def penalty(cls, p_time: float, captcha: bool = False) -> Fault:
        """HTTP 200 ``{"p-ticket", "p-time"[, "p-captcha": true]}``; see ``SimulatedTradovate``."""
        if p_time < 0:
            raise ValueError("p_time must not be negative")
        return cls("penalty", p_time=p_time, captcha=captcha)

    @classmethod
    def error_text(cls, text: str = DEFAULT_ERROR_TEXT) -> Fault:
        """HTTP 200 ``{"errorText": text}`` (a business failure)."""
        return cls("error_text", text=text)

    @classmethod
    def status(
        cls,
        code: int,
        body: bytes | str | None = None,
        content_type: str = "text/plain",
        *,
        retry_after: str | float | None = None,
    ) -> Fault:
        """A bare HTTP status. ``body=None`` gives the server's usual body for the code: the
        ``Internal Server Error, error id: <uuid>`` text for 500, nothing otherwise (429 and
        423 come with ``Content-Length: 0``). ``retry_after`` adds a ``Retry-After`` header
        (seconds, or a text such as an HTTP date)."""
        if not 100 <= code <= 599:
            raise ValueError("code must be an HTTP status")
        raw = body.encode() if isinstance(body, str) else body
        after = f"{retry_after:g}" if isinstance(retry_after, int | float) else retry_after
        return cls(
            "status", status_code=code, body=raw, content_type=content_type, retry_after=after
        )

    @classmethod
    def html(cls, code: int = 502) -> Fault:
        """An HTML error page, as a load balancer in front of the API would send."""
        return cls("html", status_code=code, content_type="text/html")

    @classmethod
    def malformed_json(cls) -> Fault:
        """HTTP 200, ``application/json``, but a body that is not JSON."""
        return cls("malformed_json")

    @classmethod
    def truncated_json(cls) -> Fault:
        """The real answer cut in half (with a matching ``Content-Length``)."""
        return cls("truncated_json")

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """The normal answer, ``seconds`` late (for client timeouts)."""
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        return cls("delay", seconds=seconds)

    @classmethod
    def echo(cls, style: EchoStyle = "error_text", code: int | None = None) -> Fault:
        """An error that echoes what the client sent (body, bearer token, or the token of an
        authorize frame) in every encoding a real server or proxy might use: as received,
        JSON-escaped, doubly JSON-escaped, ``\\u``-escaped, URL-encoded and HTML-escaped (see
        :func:`echo_text`). ``style``: ``error_text`` (200 ``{"errorText": ...}``), ``html``
        (an HTML page, default 502), ``plain`` (text, default 500). On a WebSocket the answer's
        ``d`` carries the text (status ``code``, default 500)."""
        kinds = {"error_text": ("application/json", 200), "html": ("text/html", 502)}
        content_type, default = kinds.get(style, ("text/plain", 500))
        status = code if code is not None else default
        if not 100 <= status <= 599:
            raise ValueError("code must be an HTTP status")
        return cls("echo", status_code=status, content_type=content_type)

    @classmethod
    def drop(cls) -> Fault:
        """Headers and half the body, then the connection is aborted (the client sees a
        transport error). On a WebSocket the socket is aborted instead of answering."""
        return cls("drop")


@dataclasses.dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the simulator answered (REST, or a WebSocket request other than ``[]``).

    ``time`` is on the simulator's wall clock; ``path`` is lower case without ``/v1``;
    ``token_prefix`` holds at most the first 8 characters of the token used; ``host`` is the
    ``Host`` header (which host name the client addressed) and ``query`` the raw query string.
    """

    time: float
    method: str
    path: str
    status: int
    token_prefix: str | None = None
    has_p_ticket: bool = False
    transport: Literal["rest", "ws"] = "rest"
    fault: FaultKind | None = None
    reason: str | None = None
    device_id: str | None = None
    host: str | None = None
    query: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """A snapshot of one open WebSocket.

    ``heartbeats`` are ``time.monotonic()`` stamps of the client's ``[]`` frames (the latest
    1000); ``requests`` the endpoints received, in order (the latest 1000).
    """

    id: int
    kind: Literal["trading", "md", "replay"]
    authorized: bool
    user: str | None
    opened_at: float
    heartbeats: tuple[float, ...]
    heartbeat_count: int
    subscriptions: frozenset[tuple[str, str]]
    requests: tuple[str, ...]
    request_count: int
    synced: bool
    token_prefix: str | None


def echo_text(received: str) -> str:
    """``received`` in every encoding an echoing server might use, one after the other."""
    utf16 = received.encode("utf-16-le", "surrogatepass")
    units = [int.from_bytes(utf16[i : i + 2], "little") for i in range(0, len(utf16), 2)]
    every_char_escaped = "".join(f"\\u{unit:04x}" for unit in units)
    json_once = json.dumps(received)
    forms = [
        received,
        json_once,
        json.dumps(received, ensure_ascii=False),
        json.dumps(json_once),
        every_char_escaped,
        urllib.parse.quote(received, safe=""),
        urllib.parse.quote_plus(received),
        html.escape(received),
    ]
    return "you sent: " + " | ".join(forms)
