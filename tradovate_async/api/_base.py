"""The hand-written runtime under the generated API: calls, transports and decoding.

The generated ``*Api`` classes describe *what* to send (endpoint, query or body, answer type);
an :class:`ApiTransport` decides *how*: over REST with a session's bearer token, or as a request
on an authorized trading socket. Both share the generated code and this decoding.

A transport returns either the raw JSON text of a successful answer (``bytes``: REST list
answers, decoded straight into models, the fast path) or an already parsed value (socket
answers, REST object answers that had to be parsed to look for ``errorText``). Failed answers
never reach the decoder: the transport raises the typed error first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal, Protocol, TypeVar

import msgspec

from .._errors import InvalidResponseError

__all__ = [
    "ApiCall",
    "ApiTransport",
    "BoundTransport",
    "CommandPreparer",
    "EntityApi",
    "add_command_preparer",
    "decode_answer",
    "id_list",
]

logger = logging.getLogger(__name__)

M = TypeVar("M")


@dataclasses.dataclass(frozen=True, slots=True)
class ApiCall:
    """One request of the typed API.

    ``query`` holds the URL parameters of a GET (lists already joined as ``1,2,3``), ``body``
    the JSON object of a command. ``read_only`` says whether resending the request after a lost
    answer is harmless: true for entity reads and query-like commands, false for anything that
    may change state (orders above all), which a transport must never resend.
    """

    endpoint: str
    method: Literal["GET", "POST"]
    query: Mapping[str, str] | None
    body: dict[str, Any] | None
    read_only: bool


class ApiTransport(Protocol):
    """Sends an :class:`ApiCall`; returns JSON text (``bytes``) or a parsed JSON value.

    Raises the library's typed errors for failed answers (``errorText``, ``failureReason``,
    ``violations``, HTTP or socket status codes).
    """

    async def send(self, call: ApiCall) -> Any: ...


class BoundTransport:
    """An :class:`ApiTransport` made of one coroutine function (a session's or socket's
    private send method), so neither has to expose a public ``send``."""

    __slots__ = ("_send",)

    def __init__(self, send: Callable[[ApiCall], Awaitable[Any]]) -> None:
        self._send = send

    async def send(self, call: ApiCall) -> Any:
        return await self._send(call)


CommandPreparer = Callable[[ApiCall], ApiCall]
_PREPARERS: dict[str, list[CommandPreparer]] = {}


def add_command_preparer(endpoint: str, preparer: CommandPreparer) -> Callable[[], None]:
    """Run ``preparer`` on every call to ``endpoint`` (``order/placeorder``) before it is sent;
    returns a function that removes it again.

    A preparer returns the call to send (with defaults filled in) or raises a typed error, in
    which case nothing is sent. This is where order validation and defaults plug in.
    """
    key = endpoint.lower()
    _PREPARERS.setdefault(key, []).append(preparer)

    def remove() -> None:
        with contextlib.suppress(ValueError):
            _PREPARERS[key].remove(preparer)

    return remove


def id_list(ids: Iterable[int]) -> str:
    """``[1, 2, 3]`` -> ``"1,2,3"``: Tradovate's list parameters are comma-separated."""
    values = list(ids)
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"ids must be integers, not {type(value).__name__}")
    return ",".join(str(v) for v in values)


_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def decode_answer(endpoint: str, raw: Any, kind: Any) -> Any:
    """Decode ``raw`` (JSON text or a parsed value) into ``kind`` or raise
    :class:`InvalidResponseError` naming the endpoint and the offending path."""
    try:
        if isinstance(raw, bytes | bytearray | memoryview):
            decoder = _decoders.get(kind)
            if decoder is None:
                decoder = _decoders[kind] = msgspec.json.Decoder(kind)
            return decoder.decode(raw)
        return msgspec.convert(raw, kind)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as exc:
        name = getattr(kind, "__name__", None) or repr(kind)
        raise InvalidResponseError(f"{endpoint}: answer is not a valid {name} ({exc})") from None


class EntityApi:
    """Base of the generated ``<Entity>Api`` classes."""

    __slots__ = ("_transport",)

    def __init__(self, transport: ApiTransport) -> None:
        self._transport = transport

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    async def _one(self, endpoint: str, query: Mapping[str, str] | None, model: type[M]) -> M:
        raw = await self._transport.send(ApiCall(endpoint, "GET", query, None, True))
        result: M = decode_answer(endpoint, raw, model)
        return result

    async def _many(
        self, endpoint: str, query: Mapping[str, str] | None, model: type[M]
    ) -> list[M]:
        raw = await self._transport.send(ApiCall(endpoint, "GET", query, None, True))
        result: list[M] = decode_answer(endpoint, raw, list[model])  # type: ignore[valid-type]
        return result

    async def _command(
        self,
        endpoint: str,
        method: Literal["GET", "POST"],
        body: dict[str, Any] | None,
        answer: type[M],
        *,
        read_only: bool,
    ) -> M:
        payload = None if body is None else _compact(body)
        call = ApiCall(endpoint, method, None, payload, read_only)
        for preparer in _PREPARERS.get(endpoint.lower(), ()):
            call = preparer(call)
        raw = await self._transport.send(call)
        result: M = decode_answer(endpoint, raw, answer)
        return result


def _compact(body: dict[str, Any]) -> dict[str, Any]:
    """Drop unset (None) fields and turn models, datetimes and sequences into JSON values."""
    out: dict[str, Any] = msgspec.to_builtins({k: v for k, v in body.items() if v is not None})
    return out
