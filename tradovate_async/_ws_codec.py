"""The Tradovate WebSocket protocol without any I/O.

Everything here is a pure function or a plain object: it never touches a socket, a clock or the
event loop, so every decision of the socket layer (``_ws.py``) can be tested with plain values,
the way the sans-I/O core of ``websockets`` is. The pieces:

* **Frames.** :func:`decode_frame` turns one server text message into an :class:`OpenFrame`,
  :class:`HeartbeatFrame`, :class:`MessagesFrame` or :class:`CloseFrame`; a message object inside
  ``a[...]`` becomes a :class:`Response` (``{"i","s","d"}``) or an :class:`Event`
  (``{"e","d"}``). Anything that does not follow the protocol raises :class:`ProtocolError`, and
  nothing else, whatever the input.
* **Requests.** :func:`encode_request` builds ``endpoint\\nid\\nquery\\nbody``;
  :func:`encode_authorize` and :func:`encode_json_auth` build the two authorization frames.
* **Decisions.** :func:`interpret_auth_response`, :func:`penalty_of`, :func:`is_read_only`,
  and :class:`ReconnectBackoff` (the event buffer lives in ``_event_buffer``, requests and their ids live in
  ``_ws_calls``, the socket's state machine in ``_ws_core``).

Decoding is the hot loop of a market-data bot, so :func:`decode_frame` parses each ``a`` frame
with msgspec straight from the bytes the transport read (a ``memoryview`` past the ``a``: no
copy, no UTF-8 decode into a ``str`` first, validation of the message shapes in C), and builds
the slotted result objects without going through the frozen-dataclass ``__setattr__`` guard.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import operator
import random
from collections.abc import Mapping
from typing import Any, Final, TypeAlias

import msgspec

from ._errors import ProtocolError, excerpt
from ._penalty import Penalty
from ._responses import encode_params
from ._secret import scrub_known
from ._ws_event import Event

__all__ = [
    "HEARTBEAT_TEXT",
    "AuthOutcome",
    "CloseFrame",
    "Event",
    "Frame",
    "HeartbeatFrame",
    "Message",
    "MessagesFrame",
    "OpenFrame",
    "Penalty",
    "ReconnectBackoff",
    "Request",
    "Response",
    "WireText",
    "decode_frame",
    "decode_plain_events",
    "decode_request",
    "encode_authorize",
    "encode_body",
    "encode_frame",
    "encode_json_auth",
    "encode_query",
    "encode_request",
    "error_text",
    "interpret_auth_response",
    "is_read_only",
    "normalize_endpoint",
    "penalty_of",
]

#: The client heartbeat: an empty SockJS message array, sent every 2.5 s.
HEARTBEAT_TEXT: Final = "[]"

# --------------------------------------------------------------------------------------------
# Decoded objects


@dataclasses.dataclass(frozen=True, slots=True)
class OpenFrame:
    """``o``: the server opened the session; the client must authorize now."""


@dataclasses.dataclass(frozen=True, slots=True)
class HeartbeatFrame:
    """``h``: a server heartbeat. It carries nothing but proves the connection is alive."""


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    """The answer to one client request: ``{"i": id, "s": status, "d": data}``.

    ``data`` is the REST result when ``status`` is 2xx, else usually an error string.
    """

    id: int
    status: int
    data: Any = None

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300


Message: TypeAlias = Response | Event


@dataclasses.dataclass(frozen=True, slots=True)
class MessagesFrame:
    """``a[...]``: responses and events, in the order the server sent them.

    ``dropped`` says why each event whose ``d`` was not valid JSON (a number no float holds,
    bytes that are not UTF-8) was left out; the rest of the frame is kept."""

    items: tuple[Message, ...]
    dropped: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class CloseFrame:
    """``c[code,"reason"]``: the server is closing the session."""

    code: int
    reason: str


Frame: TypeAlias = OpenFrame | HeartbeatFrame | MessagesFrame | CloseFrame

_OPEN: Final = OpenFrame()
_HEARTBEAT: Final = HeartbeatFrame()

# Fast constructors for the hot loop. A frozen dataclass routes every field assignment in
# ``__init__`` through ``object.__setattr__``; setting the slots through their descriptors
# gives the same object in about 60 % of the time.
_new = object.__new__
_set_response_id = Response.__dict__["id"].__set__
_set_response_status = Response.__dict__["status"].__set__
_set_response_data = Response.__dict__["data"].__set__
_set_items = MessagesFrame.__dict__["items"].__set__
_set_dropped = MessagesFrame.__dict__["dropped"].__set__

_json_loads = json.loads

#: One server message as the transport gives it: text, or its UTF-8 bytes.
WireText: TypeAlias = str | bytes | bytearray | memoryview


def _make_response(request_id: int, status: int, data: Any) -> Response:
    response: Response = _new(Response)
    _set_response_id(response, request_id)
    _set_response_status(response, status)
    _set_response_data(response, data)
    return response


def _malformed(why: str, text: str) -> ProtocolError:
    # Scrubbed before it is cut, so no part of a secret survives at the edge of the excerpt.
    return ProtocolError(f"malformed frame ({why}): {excerpt(scrub_known(text[:2000]), 120)!r}")


class _WireMessage(msgspec.Struct, gc=False):
    """One object inside ``a[...]`` as sent: an event has ``e``, an answer ``i`` and ``s``.
    ``d`` stays JSON here, to be decoded item by item (see :func:`_decode_items`)."""

    e: str | None = None
    d: msgspec.Raw = msgspec.Raw()
    s: int | None = None
    i: int | None = None


_decode_wire = msgspec.json.Decoder(list[_WireMessage]).decode
_decode_events = msgspec.json.Decoder(list[Event]).decode
_decode_any = msgspec.json.Decoder().decode
#: Event kinds that :func:`decode_plain_events` leaves to :func:`decode_frame`.
_NOT_PLAIN: Final = frozenset({"clock", "shutdown"})
_kind_of = operator.attrgetter("kind")


def _shown(text: WireText) -> str:
    if isinstance(text, str):
        return text
    return bytes(text).decode("utf-8", "replace")


def decode_frame(text: WireText) -> Frame:
    """Decode one server WebSocket message, text or the bytes of one.

    Raises :class:`ProtocolError` (and nothing else) for anything that is not a well-formed
    ``o``, ``h``, ``a[...]`` or ``c[code,"reason"]`` in UTF-8 JSON (RFC 8259: no ``NaN``).
    """
    if type(text) is not str and not isinstance(text, bytes | bytearray | memoryview):
        raise ProtocolError(f"frame is {type(text).__name__}, not text")
    if not text:
        raise ProtocolError("empty frame")
    view = memoryview(text.encode("utf-8") if isinstance(text, str) else text)
    kind = view[0]
    if kind == 0x61:  # a
        return _decode_messages(view[1:], text)
    if len(view) == 1:
        if kind == 0x68:  # h
            return _HEARTBEAT
        if kind == 0x6F:  # o
            return _OPEN
    if kind == 0x63:  # c
        try:
            payload = msgspec.json.decode(view[1:])
        except (msgspec.DecodeError, RecursionError) as exc:
            raise _malformed("close payload is not JSON", _shown(text)) from exc
        if (
            type(payload) is not list
            or len(payload) != 2
            or type(payload[0]) is not int
            or type(payload[1]) is not str
        ):
            raise _malformed('close payload is not [code,"reason"]', _shown(text))
        return CloseFrame(payload[0], payload[1])
    raise _malformed("unknown frame type", _shown(text))


def decode_plain_events(text: WireText) -> list[Event] | None:
    """The events of an ``a[...]`` message that holds nothing but ordinary events, decoded in
    one pass (a market-data socket's usual message); ``None`` for any other message.

    Ordinary: no answer, no ``clock`` event (its data is JSON inside a string), no
    ``shutdown`` event (the socket acts on it), and every ``d`` valid JSON. For ``None``,
    :func:`decode_frame` decodes the message item by item and says what is wrong with it."""
    # A trading socket's answers start '[{"s"' or '[{"i"' (the server puts "e" first in an
    # event): they go straight to decode_frame rather than failing a decode here first.
    if isinstance(text, str) or text[:6] != b'a[{"e"':
        return None
    try:
        events = _decode_events(memoryview(text)[1:])
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    # In C, not a Python loop over the events: this runs for every message of a stream.
    if _NOT_PLAIN.isdisjoint(map(_kind_of, events)):
        return events
    return None


def _decode_messages(payload: memoryview, text: WireText) -> MessagesFrame:
    items, dropped = _decode_items(payload, text)
    frame: MessagesFrame = _new(MessagesFrame)
    _set_items(frame, items)
    _set_dropped(frame, dropped)
    return frame


def _decode_items(
    payload: memoryview, text: WireText
) -> tuple[tuple[Message, ...], tuple[str, ...]]:
    try:
        items = _decode_wire(payload)
    except msgspec.ValidationError as exc:
        raise _malformed(f"message shapes: {exc}", _shown(text)) from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise _malformed("message array is not JSON", _shown(text)) from exc
    out: list[Message] = []
    dropped: list[str] = []
    for item in items:
        kind = item.e
        if kind is not None:
            if kind == "clock":
                out.append(Event(kind, _clock_data(item.d, text)))
                continue
            try:
                out.append(Event(kind, _decode_any(item.d) if len(item.d) else None))
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
                dropped.append(f"{kind} event: data is not valid JSON ({exc})")
            continue
        request_id = item.i
        status = item.s
        if request_id is None or status is None:
            raise _malformed("message is neither an event nor a response", _shown(text))
        out.append(_make_response(request_id, status, _eager_data(item.d, text)))
    return tuple(out), tuple(dropped)


def _eager_data(raw: msgspec.Raw, text: WireText) -> Any:
    if not len(raw):
        return None
    try:
        return _decode_any(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise _malformed(f"message data: {exc}", _shown(text)) from None


def _clock_data(raw: msgspec.Raw, text: WireText) -> Any:
    """A clock event's ``d`` is a JSON string holding JSON: both are parsed here."""
    data = _eager_data(raw, text)
    if type(data) is str:
        try:
            data = _json_loads(data)
        except (ValueError, RecursionError) as exc:
            raise _malformed("clock data is not JSON", _shown(text)) from exc
    return data


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_frame(frame: Frame) -> str:
    """Encode a server frame: the inverse of :func:`decode_frame` (for simulators and tests)."""
    if isinstance(frame, OpenFrame):
        return "o"
    if isinstance(frame, HeartbeatFrame):
        return "h"
    if isinstance(frame, CloseFrame):
        return "c" + _compact([frame.code, frame.reason])
    objects: list[dict[str, Any]] = []
    for item in frame.items:
        if isinstance(item, Event):
            data = _compact(item.data) if item.kind == "clock" else item.data
            objects.append({"e": item.kind, "d": data})
        else:
            message: dict[str, Any] = {"s": item.status, "i": item.id}
            if item.data is not None:
                message["d"] = item.data
            objects.append(message)
    return "a" + _compact(objects)


# --------------------------------------------------------------------------------------------
# Client requests


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """A decoded client request (the simulator's view of :func:`encode_request`)."""

    endpoint: str
    id: int
    query: str
    body: str


def normalize_endpoint(endpoint: str) -> str:
    """``/v1/account/list`` or ``/account/list`` -> ``account/list`` (the wire form)."""
    path = endpoint.lstrip("/")
    if path[:3].lower() == "v1/":
        path = path[3:]
    if not path or "\n" in path or "\r" in path:
        raise ValueError(f"invalid endpoint {endpoint!r}")
    return path


def encode_query(query: Mapping[str, Any] | str | None) -> str:
    """A mapping is URL-encoded as REST does it (lists comma-separated, ``ids=1,2,3``); a string
    is sent as given."""
    if query is None:
        return ""
    if isinstance(query, str):
        text = query[1:] if query.startswith("?") else query
    else:
        text = encode_params(query)
    if "\n" in text:
        raise ValueError("query must not contain a newline")
    return text


def encode_body(body: Any) -> str:
    """``None`` -> empty; ``str`` -> sent verbatim (pre-serialised JSON); else compact JSON."""
    if body is None:
        return ""
    if isinstance(body, str):
        return body
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def encode_request(
    endpoint: str,
    request_id: int,
    query: Mapping[str, Any] | str | None = None,
    body: Any = None,
) -> str:
    """``endpoint\\nid\\nquery\\nbody`` with every field present, even when empty."""
    return (
        f"{normalize_endpoint(endpoint)}\n{int(request_id)}\n{encode_query(query)}\n"
        f"{encode_body(body)}"
    )


def decode_request(text: str) -> Request:
    """Parse a client request; missing trailing fields count as empty (the official examples
    sometimes omit the body's newline). Raises :class:`ProtocolError`."""
    parts = text.split("\n", 3)
    if len(parts) < 2:
        raise _malformed("request has no id line", text)
    parts += [""] * (4 - len(parts))
    try:
        request_id = int(parts[1])
    except ValueError:
        raise _malformed("request id is not an integer", text) from None
    return Request(parts[0], request_id, parts[2], parts[3])


def encode_authorize(request_id: int, token: str) -> str:
    """The documented authorization: ``authorize\\n<id>\\n\\n<raw token>`` (no JSON quotes)."""
    return f"authorize\n{int(request_id)}\n\n{token}"


def encode_json_auth(token: str) -> str:
    """The partner-document variant ``{"request":"auth","accessToken":"<token>"}``."""
    return _compact({"request": "auth", "accessToken": token})


# --------------------------------------------------------------------------------------------
# Decisions


class AuthOutcome(enum.Enum):
    """What an answer to the authorization means for the connect procedure."""

    ACCEPTED = "accepted"
    #: 401/403: the token was refused; renew it once and try again.
    REJECTED = "rejected"
    #: 429: the user is locked out; reconnecting would extend it.
    RATE_LIMITED = "rate_limited"
    #: Any other status: a server-side failure, worth another attempt later.
    FAILED = "failed"


def interpret_auth_response(response: Response, expected_id: int | None) -> AuthOutcome | None:
    """Classify ``response`` as the answer to our authorization, or ``None`` if it is not.

    ``expected_id`` is the authorize request's id; ``None`` accepts any id (the JSON auth frame
    has no id, so its answer can only be recognised as "the first response").
    """
    if expected_id is not None and response.id != expected_id:
        return None
    status = response.status
    if 200 <= status < 300:
        return AuthOutcome.ACCEPTED
    if status in (401, 403):
        return AuthOutcome.REJECTED
    if status == 429:
        return AuthOutcome.RATE_LIMITED
    return AuthOutcome.FAILED


def error_text(data: Any) -> str | None:
    """The error text of a failed response. The server sometimes double-quotes it
    (``"\\"Not found: quote/subscribe\\""``); that is undone. Every password, secret and
    token of a live session is scrubbed from it, in any encoding (an echo of the authorize
    frame carries the token)."""
    text = _error_text(data)
    return None if text is None else scrub_known(text)


def _error_text(data: Any) -> str | None:
    if data is None:
        return None
    if isinstance(data, str):
        if len(data) >= 2 and data[0] == '"' and data[-1] == '"':
            try:
                inner = json.loads(data)
            except ValueError:
                return data
            if isinstance(inner, str):
                return inner
        return data
    if isinstance(data, Mapping):
        for key in ("errorText", "failureText", "message"):
            value = data.get(key)
            if isinstance(value, str) and value:
                return value
    return excerpt(scrub_known(_compact_or_repr(data)[:4000]))


def _compact_or_repr(value: Any) -> str:
    try:
        return _compact(value)
    except (TypeError, ValueError):
        return repr(value)


def penalty_of(data: Any) -> Penalty | None:
    """The penalty carried by a 2xx response's ``d``, if any.

    ``p-captcha`` counts when it is ``true`` or the string ``"true"`` (its type is not
    documented). A ticket without a usable ``p-time`` waits 0 s.
    """
    if type(data) is not dict:
        return None
    captcha = data.get("p-captcha") in (True, "true")
    if "p-ticket" not in data and not captcha:
        return None
    ticket = data.get("p-ticket")
    raw_time = data.get("p-time")
    seconds = 0.0
    if isinstance(raw_time, int | float) and not isinstance(raw_time, bool) and raw_time > 0:
        try:
            seconds = float(raw_time)
        except OverflowError:  # an integer beyond float: longer than any wait allowed
            seconds = math.inf
    return Penalty(str(ticket) if ticket is not None else "", seconds, captcha)


_READ_ONLY_OPERATIONS: Final = frozenset(
    {"list", "item", "items", "find", "finds", "deps", "ldeps", "suggest"}
)
_READ_ONLY_ENDPOINTS: Final = frozenset({"auth/me", "user/syncrequest"})


def is_read_only(endpoint: str) -> bool:
    """Whether resending ``endpoint`` after a dropped connection cannot change account state.

    True for the entity queries (``*/list``, ``*/item``, ``*/items``, ``*/find``, ``*/finds``,
    ``*/deps``, ``*/ldeps``, ``*/suggest``), ``auth/me``, ``user/syncrequest`` and every
    ``md/*`` request (market-data subscriptions die with the socket anyway). Everything else —
    orders, order strategies, replay control, account changes — is treated as state-changing.
    """
    path = endpoint.lstrip("/").lower()
    if path.startswith("v1/"):
        path = path[3:]
    if path in _READ_ONLY_ENDPOINTS or path.startswith("md/"):
        return True
    _, _, operation = path.rpartition("/")
    return operation in _READ_ONLY_OPERATIONS


class ReconnectBackoff:
    """When to try the next reconnect: exponential backoff with full jitter.

    * The first attempt after a drop waits ``uniform(0, first_jitter)`` (a few milliseconds), so a
      single blip costs almost nothing.
    * Attempt ``n >= 1`` waits ``uniform(0, min(maximum, initial * factor ** (n - 1)))``: full
      jitter, so many bots dropped by one server restart do not return in lock-step.
    * The attempt counter resets only when a connection stayed up ``stable_after`` seconds. A
      server that accepts and then closes at once (bad token, overload) does not get hammered.
    * After a ``shutdown`` for ``ConnectionQuotaReached``/``IPQuotaReached`` the next delay is
      ``quota_delay * uniform(1, 1.25)``: reconnecting at once would evict the oldest connection
      of the same user and revoke its token.

    Pure: it takes "now" as an argument and draws randomness from ``rng``.
    """

    __slots__ = (
        "_attempt",
        "_quota_pending",
        "_rng",
        "_up_since",
        "factor",
        "first_jitter",
        "initial",
        "maximum",
        "quota_delay",
        "stable_after",
    )

    def __init__(
        self,
        *,
        initial: float = 0.1,
        maximum: float = 30.0,
        factor: float = 2.0,
        first_jitter: float = 0.005,
        stable_after: float = 5.0,
        quota_delay: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0 or maximum < initial or factor < 1 or first_jitter < 0:
            raise ValueError("need 0 < initial <= maximum, factor >= 1, first_jitter >= 0")
        if stable_after < 0 or quota_delay < 0:
            raise ValueError("stable_after and quota_delay must be >= 0")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.first_jitter = first_jitter
        self.stable_after = stable_after
        self.quota_delay = quota_delay
        self._rng = rng if rng is not None else random.Random()
        self._attempt = 0
        self._up_since: float | None = None
        self._quota_pending = False

    @property
    def attempt(self) -> int:
        """How many delays were handed out since the last reset."""
        return self._attempt

    def connected(self, now: float) -> None:
        """A connection is up (authorized) since ``now``."""
        self._up_since = now

    def disconnected(self, now: float, *, quota: bool = False) -> None:
        """The connection that was up went down at ``now``; ``quota`` for a quota shutdown."""
        if self._up_since is not None and now - self._up_since >= self.stable_after:
            self._attempt = 0
        self._up_since = None
        if quota:
            self._quota_pending = True

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the jittered delay for ``attempt`` (without quota handling)."""
        if attempt == 0:
            return self.first_jitter
        exponent = min(attempt - 1, 64)  # float overflow guard; the cap applies long before
        return min(self.maximum, self.initial * self.factor**exponent)

    def next_delay(self) -> float:
        """The delay before the next attempt; counts the attempt."""
        attempt = self._attempt
        self._attempt = attempt + 1
        if self._quota_pending:
            self._quota_pending = False
            return self.quota_delay * self._rng.uniform(1.0, 1.25)
        return self._rng.uniform(0.0, self.ceiling(attempt))
