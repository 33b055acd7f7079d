"""A Tradovate WebSocket that stays connected: the asyncio layer over ``_ws_codec``.

:class:`TradovateWebSocket` owns one anyio task group. ``async with ws:`` starts a supervisor
task in it (with ``TaskGroup.start()``, so the block begins only once the socket is open and
authorized); the supervisor runs a reader and a heartbeat task per connection and reconnects
after any loss. ``aclose()`` (or leaving the block) closes with code 1000 and ends every task:
nothing outlives the socket object.

Why it is built this way:

* **A silent socket costs money.** Client heartbeats (``[]``) go out every
  ``heartbeat_interval`` from a dedicated task on the monotonic clock, whatever the traffic.
  Server silence (not even an ``h``) beyond ``silence_timeout`` counts as a dead connection.
  A close, a transport error, a ``c[...]`` frame or a ``shutdown`` event all lead to a
  reconnect with the token source's *current* token, and every subscription is replayed.
* **Nothing hangs.** When a connection dies, every pending request fails at once with
  :class:`ConnectionLostError`; every request has a deadline (:class:`RequestTimeoutError`).
* **Nothing is sent twice by accident.** A request that may change state (orders, strategies,
  replay control ...) is never resent after a drop. Read-only requests (see
  :func:`~tradovate_async._ws_codec.is_read_only`) are resent on the next connection within
  their deadline.
* **No token in any log.** The token travels only in the ``authorize`` frame, never in a URL or
  header, and ``websockets`` gets a logger adapter that redacts frames before they become log
  records (``websockets`` logs every frame at DEBUG).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import random
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Final, Literal, Protocol, Self, TypedDict

import anyio
import anyio.abc
import anyio.lowlevel
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from ._clock import SYSTEM_CLOCK, Clock
from ._errors import (
    CaptchaRequiredError,
    ConnectFailedError,
    ConnectionLostError,
    PenaltyLimitError,
    ProtocolError,
    RateLimitedError,
    RequestFailedError,
    RequestTimeoutError,
    SessionClosedError,
    TokenRejectedError,
    TradovateError,
)
from ._logging import RedactingLoggerAdapter, redact
from ._models import AccessToken
from ._options import (
    DEFAULT_PENALTIES,
    DEFAULT_RECONNECT_BACKOFF,
    DEFAULT_TIMEOUTS,
    Backoff,
    Timeouts,
    TimeoutsLike,
    Verify,
    check_seconds,
    ssl_context,
)
from ._penalty import PenaltyPolicy
from ._responses import judge_answer
from ._schedule import is_permanent
from ._tasks import TaskHost
from ._ws_codec import (
    HEARTBEAT_TEXT,
    AuthOutcome,
    CloseFrame,
    Event,
    EventBuffer,
    MessagesFrame,
    OpenFrame,
    PendingTable,
    ReconnectBackoff,
    Response,
    decode_frame,
    encode_authorize,
    encode_json_auth,
    encode_request,
    error_text,
    interpret_auth_response,
    is_read_only,
    normalize_endpoint,
    penalty_of,
)

__all__ = [
    "EVENT_DISCONNECTED",
    "EVENT_RECONNECTED",
    "Disconnected",
    "Reconnected",
    "ReplayResult",
    "Subscription",
    "TokenSource",
    "TradovateWebSocket",
    "WebSocketOptions",
    "WebSocketStats",
]

logger = logging.getLogger(__name__)

#: Authorize refusals tolerated in one connect attempt before the socket gives up.
_MAX_REFUSALS: Final = 3

#: Kind of the library's event announcing a lost connection (``data``: :class:`Disconnected`).
EVENT_DISCONNECTED: Final = "disconnected"
#: Kind of the library's event announcing a restored connection (``data``: :class:`Reconnected`).
EVENT_RECONNECTED: Final = "reconnected"

QUOTA_REASONS: Final = frozenset({"ConnectionQuotaReached", "IPQuotaReached"})

SocketKind = Literal["trading", "md", "replay"]
AuthFrame = Literal["authorize", "json"]


class WebSocketOptions(TypedDict, total=False):
    """The keyword options of :class:`TradovateWebSocket` (and ``session.websocket``)."""

    auth_frame: AuthFrame
    heartbeat_interval: float
    silence_timeout: float
    timeout: TimeoutsLike
    event_buffer: int
    reconnect_backoff: Backoff
    stable_after: float
    quota_wait: float
    penalties: PenaltyPolicy
    verify: Verify
    compression: Literal["deflate"] | None
    max_message_size: int
    clock: Clock
    rng: random.Random | None


class TokenSource(Protocol):
    """Where a socket gets its token; :class:`~tradovate_async.TradovateSession` is one."""

    async def current_token(self) -> AccessToken:
        """A token usable now (waits for, or performs, a single-flight authentication)."""
        ...

    async def token_rejected(self, token: AccessToken) -> AccessToken:
        """The server refused ``token``: renew once (no-op if already replaced); return the
        token now current. Raises when renewal is impossible."""
        ...


@dataclasses.dataclass(slots=True)
class WebSocketStats:
    """Counters of one socket object over its whole life (all its connections)."""

    #: Successful authorizations, first connect included (the current "generation").
    connects: int = 0
    #: Successful re-connections after a loss.
    reconnects: int = 0
    #: Connect attempts that failed (transport, handshake, authorize).
    connect_failures: int = 0
    malformed_frames: int = 0
    dropped_events: int = 0
    heartbeats_sent: int = 0
    requests_sent: int = 0
    penalties: int = 0
    #: Seconds from noticing the last loss to authorized and resubscribed again.
    last_recovery_seconds: float | None = None
    last_disconnect_reason: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Subscription:
    """A remembered subscription: replayed after every reconnect until unsubscribed.

    Identity is ``endpoint`` plus the canonical JSON of the body (``body_json``), so the set in
    :attr:`TradovateWebSocket.subscriptions` is comparable across reconnects.
    """

    endpoint: str
    body_json: str
    unsubscribe: str | None = dataclasses.field(default=None, compare=False)

    @property
    def body(self) -> Any:
        return json.loads(self.body_json) if self.body_json else None


@dataclasses.dataclass(frozen=True, slots=True)
class ReplayResult:
    """What replaying one subscription on a new connection gave: ``data`` or ``error``."""

    subscription: Subscription
    data: Any = None
    error: TradovateError | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Disconnected:
    """``data`` of the ``disconnected`` event: events may be missing from here on."""

    generation: int
    reason: str
    #: ``reasonCode`` of a ``shutdown`` event that preceded the loss, if any.
    shutdown_reason: str | None = None

    @property
    def quota(self) -> bool:
        """The server shut us out for a connection/IP quota: the next attempt waits longer."""
        return self.shutdown_reason in QUOTA_REASONS


@dataclasses.dataclass(frozen=True, slots=True)
class Reconnected:
    """``data`` of the ``reconnected`` event: the socket is authorized and resubscribed.

    ``replayed`` holds the new answers (a ``user/syncrequest`` snapshot, new chart ids ...);
    a bot should rebuild its state from them, since events during the gap are lost.
    """

    generation: int
    recovery_seconds: float
    attempts: int
    replayed: tuple[ReplayResult, ...]


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class _Refused(Exception):
    """Internal: the server refused the token in ``authorize`` (401/403)."""

    def __init__(self, status: int, text: str | None) -> None:
        super().__init__(status, text)
        self.status = status
        self.text = text


class _Waiter:
    __slots__ = ("error", "event", "response")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.response: Response | None = None
        self.error: BaseException | None = None


class _Link:
    """One live connection: its websockets object and its liveness."""

    __slots__ = (
        "conn",
        "dead",
        "died_at",
        "generation",
        "graceful",
        "last_rx",
        "ready",
        "reason",
        "shutdown_reason",
    )

    def __init__(self, conn: ClientConnection, now: float) -> None:
        self.conn = conn
        self.generation = 0
        self.ready = False
        self.dead = anyio.Event()
        self.died_at: float | None = None
        self.reason = ""
        self.shutdown_reason: str | None = None
        self.last_rx = now
        #: The server ended the session in an orderly way (``shutdown``, ``c[...]``): answer
        #: with a closing handshake instead of cutting the TCP connection.
        self.graceful = False

    @property
    def alive(self) -> bool:
        return self.died_at is None


class _EventStream:
    """The iterator :meth:`TradovateWebSocket.events` returns (one consumer at a time)."""

    __slots__ = ("_ws",)

    def __init__(self, ws: TradovateWebSocket) -> None:
        self._ws = ws

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        ws = self._ws
        buffer = ws._buffer
        while True:
            try:
                return buffer.get()
            except IndexError:
                pass
            if ws._failure is not None:
                raise ws._failure
            if ws._state is _State.CLOSED:
                raise StopAsyncIteration
            waiter = ws._event_waiter
            if waiter is None:
                waiter = ws._event_waiter = anyio.Event()
            await waiter.wait()


def _default_unsubscribe(endpoint: str) -> str | None:
    """``md/subscribeQuote`` -> ``md/unsubscribeQuote``; ``md/getChart`` -> ``md/cancelChart``."""
    head, _, operation = endpoint.rpartition("/")
    lowered = operation.lower()
    prefix = head + "/" if head else ""
    if lowered.startswith("subscribe"):
        return f"{prefix}unsubscribe{operation[len('subscribe') :]}"
    if lowered == "getchart":
        return f"{prefix}cancelChart"
    return None


def _canonical_body(body: Any) -> str:
    if body is None:
        return ""
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return str(body)
    return json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _with_ticket(body: Any, ticket: str) -> dict[str, Any]:
    """The body to resend after a penalty: the original object plus ``"p-ticket"``."""
    if body is None:
        return {"p-ticket": ticket}
    if isinstance(body, str):
        body = json.loads(body) if body.strip() else {}
    if not isinstance(body, Mapping):
        raise PenaltyLimitError("a penalty ticket needs a JSON object body to travel in")
    return {**body, "p-ticket": ticket}


class TradovateWebSocket:
    """A self-healing Tradovate WebSocket (trading, market data or replay).

    Usually obtained from ``session.websocket(kind=...)``::

        async with session.websocket(kind="md") as ws:
            await ws.subscribe("md/subscribeQuote", {"symbol": "ESZ5"})
            async for event in ws.events():
                ...

    **Lifecycle.** ``async with ws`` opens the socket, waits for ``o``, authorizes and returns
    once the server answered 200. The first connect is a single attempt and raises on failure
    (:class:`ConnectFailedError` for transport/handshake/timeouts, :class:`TokenRejectedError`
    when the token is refused even after one renewal, :class:`RateLimitedError` on 429), so a
    bot learns at start-up that its URL or credentials are wrong. After that, every loss is
    repaired in the background. An object is used once: after ``aclose()`` it refuses reuse
    (:class:`SessionClosedError`). Close it from the task that opened it (``async with`` does):
    its task group is bound to that task, as anyio requires.

    **Reconnects.** Each attempt asks the token source for its *current* token; an authorize
    refused with 401/403 triggers one ``token_rejected()`` and one more attempt, and a second
    refusal is fatal. Delays come from :class:`ReconnectBackoff`: the first attempt is
    (nearly) immediate, then exponential with full jitter up to ``reconnect_backoff.maximum``; the counter
    resets only after a connection stayed up ``stable_after`` seconds; after a ``shutdown`` for
    ``ConnectionQuotaReached``/``IPQuotaReached`` the next attempt waits ``quota_wait``
    seconds (more sockets would evict the oldest one and revoke its token). Fatal errors (token
    refused twice, 429, the session's permanent authentication errors, a closed session) end
    the socket: ``events()`` and every request then raise that error.

    **Requests** made while reconnecting wait for the new connection, within their timeout.

    Args:
        source: the token source (a ``TradovateSession``).
        url: ``wss://.../v1/websocket`` (no token in it, ever).
        kind: ``"trading"`` authorizes with ``accessToken``; ``"md"`` and ``"replay"`` with
            the market-data token (``mdAccessToken`` when the server sent one, else
            ``accessToken``), as the official examples do.
        auth_frame: ``"authorize"`` (documented ``authorize\\n<id>\\n\\n<token>``) or ``"json"``
            (``{"request":"auth","accessToken":...}`` for partner endpoints; any 200 answer
            counts).
        heartbeat_interval: seconds between client ``[]`` frames (the server wants <= 2.5 s).
        silence_timeout: seconds without any server frame before the connection counts as dead
            (the server sends ``h`` about every 2.5 s when idle, so 10 s is four missed beats).
        timeout: :class:`Timeouts` (or seconds): ``request`` is the default per-request
            deadline, including a wait for a reconnect; ``connect`` bounds TCP + TLS + upgrade
            + ``o`` + the authorize answer; ``close`` the closing handshake.
        event_buffer: events kept for :meth:`events` (see its overflow policy).
        reconnect_backoff: delays between reconnect attempts (default 0.1 s to 30 s).
        stable_after: seconds a connection must stay up before the backoff resets.
        quota_wait: delay after a quota ``shutdown``.
        penalties: how far a request waits out ``p-ticket``s; beyond either bound,
            :class:`PenaltyLimitError`.
        verify: ``True`` (system CAs), a CA bundle path or an ``ssl.SSLContext`` for
            ``wss://``; anything that skips certificate or hostname checks is refused.
        compression: ``None`` (default) skips permessage-deflate: on a fast link it costs more
            CPU and latency than it saves; pass ``"deflate"`` for a slow link.
        max_message_size: largest accepted message (a ``user/syncrequest`` snapshot of a big
            organisation can be several MiB).
        clock: the :class:`~tradovate_async._clock.Clock` for deadlines and sleeps.
        rng: random source for backoff jitter (tests seed it).
    """

    def __init__(
        self,
        source: TokenSource,
        *,
        url: str,
        kind: SocketKind = "trading",
        auth_frame: AuthFrame = "authorize",
        heartbeat_interval: float = 2.5,
        silence_timeout: float = 10.0,
        timeout: TimeoutsLike = DEFAULT_TIMEOUTS,
        event_buffer: int = 10_000,
        reconnect_backoff: Backoff = DEFAULT_RECONNECT_BACKOFF,
        stable_after: float = 5.0,
        quota_wait: float = 60.0,
        penalties: PenaltyPolicy = DEFAULT_PENALTIES,
        verify: Verify = True,
        compression: Literal["deflate"] | None = None,
        max_message_size: int = 64 * 2**20,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
    ) -> None:
        if kind not in ("trading", "md", "replay"):
            raise ValueError("kind must be 'trading', 'md' or 'replay'")
        if auth_frame not in ("authorize", "json"):
            raise ValueError("auth_frame must be 'authorize' or 'json'")
        timeouts = Timeouts.of(timeout)
        self._source = source
        self.url = url
        self.kind: SocketKind = kind
        self.auth_frame: AuthFrame = auth_frame
        self._heartbeat_interval = check_seconds("heartbeat_interval", heartbeat_interval)
        self._silence_timeout = check_seconds("silence_timeout", silence_timeout)
        self._request_timeout = timeouts.request
        self._open_timeout = timeouts.connect_seconds
        self._close_timeout = timeouts.close
        self._penalty_policy = penalties
        self._ssl = ssl_context(verify)
        self._compression = compression
        self._max_message_size = max_message_size
        self._clock = clock
        self._backoff = ReconnectBackoff(
            initial=reconnect_backoff.initial,
            maximum=reconnect_backoff.maximum,
            factor=reconnect_backoff.factor,
            stable_after=check_seconds("stable_after", stable_after, allow_zero=True),
            quota_delay=check_seconds("quota_wait", quota_wait, allow_zero=True),
            rng=rng,
        )
        self._ws_logger = RedactingLoggerAdapter(logging.getLogger("websockets.client"))
        self.stats = WebSocketStats()
        self._buffer = EventBuffer(event_buffer)
        self._pending: PendingTable[_Waiter] = PendingTable()
        self._subs: dict[Subscription, Any] = {}
        self._state = _State.NEW
        self._failure: TradovateError | None = None
        self._link: _Link | None = None
        self._event_waiter: anyio.Event | None = None
        self._change: anyio.Event | None = None
        self._tasks = TaskHost()
        self._closing = False
        self._overflow_warned = 0

    def __repr__(self) -> str:
        link = self._link
        connected = link is not None and link.ready and link.alive
        return (
            f"TradovateWebSocket(kind={self.kind!r}, url={self.url!r}, state={self._state.value}, "
            f"connected={connected}, generation={self.stats.connects})"
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state is not _State.NEW:
            raise SessionClosedError(
                "a TradovateWebSocket can be opened once; create a new one"
                if self._state is _State.CLOSED
                else "this TradovateWebSocket is already open"
            )
        self._state = _State.OPEN
        self._change = anyio.Event()
        try:
            await self._tasks.open(self._run)
        except BaseException:
            self._state = _State.CLOSED
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close with code 1000, fail pending requests, end ``events()``, stop every task.

        Idempotent and safe from any task: every task of the socket has ended when it returns
        (the task group itself is released by the opener when it leaves ``async with``).
        """
        if self._state is _State.NEW:
            self._state = _State.CLOSED
            return
        if self._state is _State.OPEN:
            self._state = _State.CLOSED
            self._closing = True
            link = self._link
            if link is not None and link.alive:
                with anyio.CancelScope(shield=True), anyio.move_on_after(self._close_timeout):
                    try:
                        await link.conn.close(1000, "client closing")
                    except Exception:  # closing must not fail the caller
                        logger.debug("closing handshake failed", exc_info=True)
            self._notify()
        await self._tasks.stop()

    @property
    def closed(self) -> bool:
        return self._state is _State.CLOSED

    @property
    def connected(self) -> bool:
        """Authorized, resubscribed and not known to be dead right now."""
        link = self._link
        return link is not None and link.ready and link.alive

    @property
    def generation(self) -> int:
        """Number of the current connection (1 for the first); see :meth:`wait_connected`."""
        return self.stats.connects

    @property
    def subscriptions(self) -> frozenset[Subscription]:
        """What is replayed after a reconnect (unchanged by reconnects)."""
        return frozenset(self._subs)

    async def wait_connected(
        self,
        *,
        after: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - a convenience for tests and scripts
    ) -> int:
        """Wait until a connection is ready whose generation is greater than ``after`` (any if
        ``None``) and return its generation. Raises the socket's fatal error, or
        :class:`SessionClosedError`, or ``TimeoutError`` after ``timeout``."""
        with anyio.fail_after(timeout):
            while True:
                self._check_usable()
                link = self._link
                if (
                    link is not None
                    and link.ready
                    and link.alive
                    and (after is None or link.generation > after)
                ):
                    return link.generation
                await self._wait_change()

    # -- events -----------------------------------------------------------------------------

    def events(self) -> AsyncIterator[Event]:
        """An async iterator over server events and the library's connection events.

        Yields :class:`~tradovate_async._ws_codec.Event` objects in arrival order: the server's
        ``props``, ``md``, ``chart``, ``clock`` (``data`` parsed) and ``shutdown`` events, plus
        ``disconnected`` (``data``: :class:`Disconnected`) when a connection is lost and
        ``reconnected`` (``data``: :class:`Reconnected`) once the next one is authorized and
        resubscribed. Iteration ends after ``aclose()``, once the buffer is drained; after a
        fatal error it raises that error.

        **Overflow policy.** At most ``event_buffer`` events wait for the consumer. When it is
        full, the oldest ``md``/``chart`` event is dropped (a newer quote or bar supersedes it)
        and ``stats.dropped_events`` counts it. ``props``, ``shutdown``, ``clock`` and the
        library's events are never dropped; the buffer grows past its bound for them (a WARNING
        is logged each time it doubles). The reader never waits for the consumer, so a slow
        consumer cannot stall heartbeats or request answers.

        Use one consumer at a time: events are handed out once.
        """
        return _EventStream(self)

    # -- requests ---------------------------------------------------------------------------

    async def request(
        self,
        endpoint: str,
        *,
        params: Mapping[str, Any] | str | None = None,
        json: Any = None,
        timeout: float | None = None,  # noqa: ASYNC109 - excludes penalty waits; see below
        idempotent: bool | None = None,
        replay: bool = False,
    ) -> Any:
        """Send one request and return its ``d``.

        ``endpoint`` is a REST path (``account/list``); ``params`` the query, a mapping
        (URL-encoded) or a string; ``json`` the body, any JSON value (a ``str`` is sent
        verbatim): the same names as :meth:`TradovateSession.request`. Raises
        :class:`RequestFailedError` for a status that is not 2xx (:class:`RateLimitedError` for
        429), :class:`RequestTimeoutError` after ``timeout`` (default ``request_timeout``; it
        covers waiting for a reconnect but not penalty waits), :class:`CaptchaRequiredError` /
        :class:`PenaltyLimitError` for penalties it may not wait out, and
        :class:`ConnectionLostError` when the connection drops before the answer — unless the
        request is read-only (``idempotent=None`` infers it with ``is_read_only``;
        ``True``/``False`` overrides), in which case it is resent once the socket is back.

        ``replay=True`` also remembers the request like :meth:`subscribe` (use it for
        ``user/syncrequest``).
        """
        if replay:
            if params is not None:
                raise ValueError("replay=True takes json=, not params=")
            return await self.subscribe(endpoint, json, timeout=timeout)
        retry = is_read_only(endpoint) if idempotent is None else idempotent
        data, _ = await self._call(endpoint, params, json, limit=timeout, retry=retry)
        return data

    async def subscribe(
        self,
        endpoint: str,
        json: Any = None,
        *,
        unsubscribe: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - same deadline as request()
    ) -> Any:
        """Send a subscription request, remember it, and return its ``d``.

        The subscription is replayed after every reconnect until :meth:`unsubscribe`. The
        matching cancel request defaults to ``md/subscribeX`` -> ``md/unsubscribeX`` and
        ``md/getChart`` -> ``md/cancelChart`` (with ``{"subscriptionId": <realtimeId>}`` of the
        latest answer); ``user/syncrequest`` has none (the server cannot cancel it).
        """
        path = normalize_endpoint(endpoint)
        sub = Subscription(path, _canonical_body(json), unsubscribe or _default_unsubscribe(path))
        while True:
            data, link = await self._call(path, None, json, limit=timeout, retry=True)
            self._subs[sub] = data
            if self._link is link:
                return data
            # The connection changed between the answer and now: the replay on the new one did
            # not include this subscription yet, so send it there too.
            logger.debug("resubscribing %s on the new connection", path)

    async def unsubscribe(
        self,
        endpoint: str,
        json: Any = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - same deadline as request()
    ) -> Any:
        """Forget a subscription and send its cancel request (see :meth:`subscribe`); returns
        the answer's ``d``, or ``None`` when the subscription has no cancel request."""
        path = normalize_endpoint(endpoint)
        key = Subscription(path, _canonical_body(json))
        stored = next((s for s in self._subs if s == key), None)
        data = self._subs.pop(stored) if stored is not None else None
        cancel = stored.unsubscribe if stored is not None else _default_unsubscribe(path)
        if cancel is None:
            return None
        cancel_body = json
        if cancel.lower().endswith("/cancelchart"):
            chart_id = data.get("realtimeId") if isinstance(data, Mapping) else None
            if chart_id is None:
                return None
            cancel_body = {"subscriptionId": chart_id}
        result, _ = await self._call(cancel, None, cancel_body, limit=timeout, retry=True)
        return result

    # -- internals: requests ----------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._state is not _State.OPEN or self._closing:
            raise SessionClosedError(
                "the WebSocket is closed"
                if self._state is _State.CLOSED or self._closing
                else "the WebSocket is not open: use 'async with'"
            )

    def _notify(self) -> None:
        """Wake everything waiting for a state change (ready, lost, closed, failed)."""
        change = self._change
        if change is not None:
            self._change = anyio.Event()
            change.set()
        waiter = self._event_waiter
        if waiter is not None:
            self._event_waiter = None
            waiter.set()

    async def _wait_change(self) -> None:
        change = self._change
        if change is None:
            change = self._change = anyio.Event()
        await change.wait()

    async def _ready_link(self) -> _Link:
        while True:
            self._check_usable()
            link = self._link
            if link is not None and link.ready and link.alive:
                return link
            await self._wait_change()

    async def _call(
        self,
        endpoint: str,
        query: Mapping[str, Any] | str | None,
        body: Any,
        *,
        limit: float | None,
        retry: bool,
        link: _Link | None = None,
    ) -> tuple[Any, _Link]:
        """Request with penalty handling; returns ``(d, link that answered)``."""
        rounds = 0
        while True:
            response, used = await self._exchange(endpoint, query, body, limit, retry, link)
            if not response.ok:
                raise self._status_error(endpoint, response)
            penalty = penalty_of(response.data)
            if penalty is None:
                return judge_answer(endpoint, response.status, response.data, redact), used
            if penalty.captcha:
                raise CaptchaRequiredError()
            self.stats.penalties += 1
            # The same bounds as a penalised login: at most so many rounds, so long a wait.
            wait = self._penalty_policy.wait_for(penalty, rounds)
            rounds += 1
            logger.warning(
                "%s: penalty ticket, waiting %.1f s before resending (round %d of %d)",
                endpoint,
                wait,
                rounds,
                self._penalty_policy.max_rounds,
            )
            await self._clock.sleep(wait)
            body = _with_ticket(body, penalty.ticket)

    async def _exchange(
        self,
        endpoint: str,
        query: Mapping[str, Any] | str | None,
        body: Any,
        limit: float | None,
        retry: bool,
        link: _Link | None,
    ) -> tuple[Response, _Link]:
        seconds = self._request_timeout if limit is None else limit
        waiting = True
        with anyio.move_on_after(seconds) as scope:
            while True:
                waiting = True
                target = link if link is not None else await self._ready_link()
                waiting = False
                try:
                    return await self._roundtrip(target, endpoint, query, body), target
                except ConnectionLostError:
                    if not retry or link is not None or self._closing:
                        raise
                    logger.info("%s: connection lost; resending after the reconnect", endpoint)
        assert scope.cancelled_caught
        if waiting:
            raise RequestTimeoutError(f"{endpoint}: socket not connected within {seconds:g} s")
        raise RequestTimeoutError(f"{endpoint}: no answer within {seconds:g} s")

    async def _roundtrip(
        self,
        link: _Link,
        endpoint: str,
        query: Mapping[str, Any] | str | None,
        body: Any,
    ) -> Response:
        pending = self._pending
        request_id = pending.allocate()
        text = encode_request(endpoint, request_id, query, body)
        if not link.alive:
            raise ConnectionLostError(f"{endpoint}: connection lost ({link.reason})")
        waiter = _Waiter()
        pending.add(request_id, waiter)
        try:
            try:
                await link.conn.send(text)
            except (ConnectionClosed, OSError) as exc:
                self._lose(link, f"send failed: {type(exc).__name__}")
                raise ConnectionLostError(f"{endpoint}: connection lost while sending") from exc
            self.stats.requests_sent += 1
            await waiter.event.wait()
        finally:
            pending.pop(request_id)
        if waiter.error is not None:
            raise waiter.error
        assert waiter.response is not None
        return waiter.response

    def _status_error(self, endpoint: str, response: Response) -> TradovateError:
        text = error_text(response.data)
        if response.status == 429:
            return RateLimitedError(
                f"WebSocket request {endpoint} rate limited", status=429, body_excerpt=text
            )
        return RequestFailedError(
            f"WebSocket request {endpoint} failed", status=response.status, error_text=text
        )

    # -- internals: connection lifecycle ----------------------------------------------------

    def _lose(self, link: _Link, reason: str) -> None:
        """Mark ``link`` dead (idempotent) and fail everything waiting on it, synchronously."""
        if not link.alive:
            return
        link.died_at = self._clock.monotonic()
        link.reason = reason
        was_ready = link.ready
        link.ready = False
        error_type: type[TradovateError]
        if self._closing:
            error_type, message = SessionClosedError, "the WebSocket was closed"
        else:
            error_type, message = ConnectionLostError, f"connection lost ({reason})"
        for waiter in self._pending.drain():
            waiter.error = error_type(message)  # one instance per waiter: tracebacks differ
            waiter.event.set()
        link.dead.set()
        if was_ready and not self._closing:
            self.stats.last_disconnect_reason = reason
        self._notify()

    async def _run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """The supervisor: connect, serve, reconnect; until closed or a fatal error."""
        started = False
        try:
            link = await self._attempt()
            attempts = 0
            lost_at: float | None = None
            while True:
                ready = await self._serve(link, lost_at, attempts, None if started else task_status)
                if not started and not ready:
                    raise ConnectFailedError(
                        f"{self.kind} socket: connection lost right after authorize ({link.reason})"
                    )
                started = True
                if self._closing:
                    return
                lost_at = link.died_at or self._clock.monotonic()
                self._backoff.disconnected(lost_at, quota=link.shutdown_reason in QUOTA_REASONS)
                self._announce_loss(link)
                link, attempts = await self._reconnect()
        except TradovateError as exc:
            if not started:
                raise
            self._fail(exc)
        finally:
            self._link = None
            self._notify()

    def _announce_loss(self, link: _Link) -> None:
        logger.warning(
            "%s socket lost (%s)%s; reconnecting",
            self.kind,
            link.reason,
            f" after shutdown {link.shutdown_reason}" if link.shutdown_reason else "",
        )
        self._buffer.put(
            Event(
                EVENT_DISCONNECTED,
                Disconnected(link.generation, link.reason, link.shutdown_reason),
            )
        )
        self._notify()

    def _fail(self, error: TradovateError) -> None:
        logger.error(
            "%s socket gave up: %s: %s (events() and requests now raise it)",
            self.kind,
            type(error).__name__,
            error,
        )
        self._failure = error
        self._notify()

    async def _reconnect(self) -> tuple[_Link, int]:
        attempts = 0
        while True:
            delay = self._backoff.next_delay()
            attempts += 1
            if delay >= 1.0:
                logger.info("reconnect attempt %d in %.1f s", attempts, delay)
            await self._clock.sleep(delay)
            try:
                return await self._attempt(), attempts
            except (TokenRejectedError, RateLimitedError, SessionClosedError):
                raise
            except TradovateError as exc:
                if is_permanent(exc):
                    raise
                self.stats.connect_failures += 1
                logger.warning("reconnect attempt %d failed: %s", attempts, exc)
            except Exception:
                self.stats.connect_failures += 1
                logger.exception("reconnect attempt %d failed unexpectedly", attempts)

    async def _attempt(self) -> _Link:
        """One connect: the current token, authorize; on a refusal ask the source again.

        After a refusal the source renews (single-flight) or hands out the token that already
        replaced the refused one: a renewal elsewhere may retire a token between our fetching
        it and the server checking it. The session itself refuses to renew again when the very
        token its refusal-driven renewal produced is refused (permissions, wrong environment);
        for any source, the third refusal in one attempt is final.
        """
        token = await self._source.current_token()
        for refusals in range(1, _MAX_REFUSALS + 1):
            try:
                return await self._open(token)
            except _Refused as refused:
                if refusals == _MAX_REFUSALS:
                    raise TokenRejectedError(
                        f"the {self.kind} socket refused the renewed token too "
                        f"({refused.status}: {refused.text or 'no reason given'})"
                    ) from None
                logger.warning(
                    "%s socket: token refused (%d); asking for a renewed token",
                    self.kind,
                    refused.status,
                )
            token = await self._source.token_rejected(token)
        raise AssertionError("unreachable")  # pragma: no cover

    def _raw_token(self, token: AccessToken) -> str:
        secret = token.access_token if self.kind == "trading" else token.market_data_token
        return secret.reveal()

    async def _open(self, token: AccessToken) -> _Link:
        """Open a connection, wait for ``o``, authorize; raises ``_Refused`` on 401/403."""
        raw = self._raw_token(token)
        options: dict[str, Any] = {}
        if self._ssl is not None:
            options["ssl"] = self._ssl
        conn: ClientConnection | None = None
        try:
            with anyio.fail_after(self._open_timeout):
                conn = await connect(
                    self.url,
                    compression=self._compression,
                    open_timeout=None,
                    ping_interval=None,
                    close_timeout=self._close_timeout,
                    max_size=self._max_message_size,
                    max_queue=64,
                    logger=self._ws_logger,
                    **options,
                )
                first = decode_frame(await conn.recv())
                if not isinstance(first, OpenFrame):
                    raise ProtocolError(f"expected the open frame 'o', got {type(first).__name__}")
                link = _Link(conn, self._clock.monotonic())
                await self._authorize(link, raw)
                return link
        except (_Refused, RateLimitedError):
            await self._discard(conn, graceful=True)
            raise
        except TimeoutError as exc:
            await self._discard(conn)
            raise ConnectFailedError(
                f"{self.kind} socket: no open/authorize within {self._open_timeout:g} s"
            ) from exc
        except (OSError, WebSocketException, ProtocolError) as exc:
            await self._discard(conn)
            raise ConnectFailedError(
                f"{self.kind} socket: connect failed: {type(exc).__name__}: {redact(str(exc))}"
            ) from exc
        except BaseException:
            await self._discard(conn)
            raise

    async def _discard(self, conn: ClientConnection | None, *, graceful: bool = False) -> None:
        """Drop a connection: with a closing handshake when the server is talking to us (it
        refused the token, or ended the session in order), else without waiting for the peer."""
        if conn is None:
            return
        with anyio.CancelScope(shield=True):
            if graceful:
                with anyio.move_on_after(self._close_timeout):
                    try:
                        await conn.close(1000)
                    except Exception:  # the peer may be gone already
                        logger.debug("closing handshake failed", exc_info=True)
            conn.transport.abort()
            with anyio.move_on_after(self._close_timeout):
                await conn.wait_closed()

    async def _authorize(self, link: _Link, raw_token: str) -> None:
        conn = link.conn
        if self.auth_frame == "json":
            expected: int | None = None
            await conn.send(encode_json_auth(raw_token))
        else:
            expected = self._pending.allocate()
            await conn.send(encode_authorize(expected, raw_token))
        while True:
            text = await conn.recv()
            link.last_rx = self._clock.monotonic()
            try:
                frame = decode_frame(text)
            except ProtocolError as exc:
                self._malformed(text, exc)
                continue
            if isinstance(frame, CloseFrame):
                raise ConnectFailedError(
                    f"{self.kind} socket: server closed during authorize "
                    f"({frame.code} {frame.reason!r})"
                )
            if not isinstance(frame, MessagesFrame):
                continue
            outcome: AuthOutcome | None = None
            for item in frame.items:
                if isinstance(item, Event):
                    self._deliver(link, item)
                    continue
                result = interpret_auth_response(item, expected)
                if result is None:
                    continue
                outcome = result
                if result is AuthOutcome.ACCEPTED:
                    continue
                text_ = error_text(item.data)
                if result is AuthOutcome.REJECTED:
                    raise _Refused(item.status, text_)
                if result is AuthOutcome.RATE_LIMITED:
                    raise RateLimitedError(
                        f"{self.kind} socket: authorize rate limited",
                        status=429,
                        body_excerpt=text_,
                    )
                raise ConnectFailedError(
                    f"{self.kind} socket: authorize failed ({item.status}: {text_})"
                )
            if outcome is AuthOutcome.ACCEPTED:
                return

    async def _serve(
        self,
        link: _Link,
        lost_at: float | None,
        attempts: int,
        task_status: anyio.abc.TaskStatus[None] | None,
    ) -> bool:
        """Run one connection: reader + heartbeat, replay, announce; until it dies.

        Returns whether the connection became ready (authorized and resubscribed)."""
        self._link = link
        ready = False
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._read, link)
                tg.start_soon(self._heartbeat, link)
                replayed = await self._replay(link) if self._subs else ()
                if link.alive:
                    self._ready(link, lost_at, attempts, replayed)
                    ready = True
                    if task_status is not None:
                        task_status.started()
                    await link.dead.wait()
                tg.cancel_scope.cancel()
            return ready
        finally:
            self._lose(link, "closed by client" if self._closing else "connection ended")
            await self._release(link)

    async def _release(self, link: _Link) -> None:
        """Free a dead connection quickly: a closing handshake when the server ended the
        session in order, else cut the TCP connection at once (recovery must not wait)."""
        await self._discard(link.conn, graceful=link.graceful)

    def _ready(
        self,
        link: _Link,
        lost_at: float | None,
        attempts: int,
        replayed: tuple[ReplayResult, ...],
    ) -> None:
        stats = self.stats
        now = self._clock.monotonic()
        stats.connects += 1
        link.generation = stats.connects
        link.ready = True
        self._backoff.connected(now)
        if lost_at is None:
            logger.info("%s socket connected to %s", self.kind, self.url)
        else:
            stats.reconnects += 1
            recovery = now - lost_at
            stats.last_recovery_seconds = recovery
            failed = sum(1 for r in replayed if r.error is not None)
            logger.info(
                "%s socket reconnected in %.3f s (attempt %d, %d subscription(s) replayed, "
                "%d failed)",
                self.kind,
                recovery,
                attempts,
                len(replayed),
                failed,
            )
            self._buffer.put(
                Event(
                    EVENT_RECONNECTED,
                    Reconnected(link.generation, recovery, attempts, replayed),
                )
            )
        self._notify()

    async def _replay(self, link: _Link) -> tuple[ReplayResult, ...]:
        subs = list(self._subs)
        results: list[ReplayResult | None] = [None] * len(subs)

        async def one(index: int, sub: Subscription) -> None:
            try:
                data, _ = await self._call(
                    sub.endpoint, None, sub.body_json or None, limit=None, retry=False, link=link
                )
            except ConnectionLostError:
                return
            except TradovateError as exc:
                logger.warning("resubscribing %s failed: %s", sub.endpoint, exc)
                results[index] = ReplayResult(sub, None, exc)
                return
            except Exception:
                logger.exception("resubscribing %s failed unexpectedly", sub.endpoint)
                return
            if sub in self._subs:
                self._subs[sub] = data
            results[index] = ReplayResult(sub, data, None)

        async with anyio.create_task_group() as tg:
            for index, sub in enumerate(subs):
                tg.start_soon(one, index, sub)
        return tuple(r for r in results if r is not None)

    # -- internals: per-connection tasks ----------------------------------------------------

    def _malformed(self, text: str | bytes, exc: ProtocolError) -> None:
        self.stats.malformed_frames += 1
        logger.warning("ignoring a malformed frame: %s", redact(str(exc)))

    def _deliver(self, link: _Link, event: Event) -> None:
        if event.kind == "shutdown":
            data = event.data if isinstance(event.data, Mapping) else {}
            code = data.get("reasonCode")
            link.shutdown_reason = code if isinstance(code, str) else "unknown"
            logger.warning(
                "%s socket: server shutdown notice (%s%s)",
                self.kind,
                link.shutdown_reason,
                f": {data.get('reason')}" if data.get("reason") else "",
            )
        buffer = self._buffer
        buffer.put(event)
        if buffer.dropped != self.stats.dropped_events:
            self.stats.dropped_events = buffer.dropped
        self._check_overflow()

    def _check_overflow(self) -> None:
        size = len(self._buffer)
        limit = self._buffer.maxlen
        if size > limit and size >= 2 * max(limit, self._overflow_warned):
            self._overflow_warned = size
            logger.warning(
                "event buffer holds %d events (limit %d) that may not be dropped: "
                "is anything consuming ws.events()?",
                size,
                limit,
            )

    async def _read(self, link: _Link) -> None:
        """The hot loop: one recv, one decode, then hand out responses and events."""
        conn = link.conn
        recv = conn.recv
        decode = decode_frame
        pending_pop = self._pending.pop
        buffer = self._buffer
        put = buffer.put
        stats = self.stats
        clock = self._clock.monotonic
        maxlen = buffer.maxlen
        try:
            while True:
                text = await recv()
                link.last_rx = clock()
                try:
                    frame = decode(text)
                except ProtocolError as exc:
                    self._malformed(text, exc)
                    continue
                if isinstance(frame, MessagesFrame):
                    got_event = False
                    for item in frame.items:
                        if isinstance(item, Event):
                            if item.kind == "shutdown":
                                self._deliver(link, item)
                            else:
                                put(item)
                            got_event = True
                            continue
                        waiter = pending_pop(item.id)
                        if waiter is None:
                            logger.debug("answer to unknown request %d", item.id)
                        else:
                            waiter.response = item
                            waiter.event.set()
                    if got_event:
                        if buffer.dropped != stats.dropped_events:
                            stats.dropped_events = buffer.dropped
                        if len(buffer) > maxlen:
                            self._check_overflow()
                        event_waiter = self._event_waiter
                        if event_waiter is not None:
                            self._event_waiter = None
                            event_waiter.set()
                    if link.shutdown_reason is not None:
                        link.graceful = True
                        self._lose(link, f"server shutdown ({link.shutdown_reason})")
                        return
                elif isinstance(frame, CloseFrame):
                    link.graceful = True
                    self._lose(link, f"server sent c[{frame.code},{frame.reason!r}]")
                    return
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            why = (
                f"closed {rcvd.code} {rcvd.reason!r}"
                if rcvd
                else "connection closed without a close frame"
            )
            self._lose(link, why)
        except OSError as exc:
            self._lose(link, f"transport error: {type(exc).__name__}")
        except Exception:
            # A bug here must not silence the socket: log it loudly and reconnect.
            logger.exception("%s socket reader failed; reconnecting", self.kind)
            self._lose(link, "reader error")

    async def _heartbeat(self, link: _Link) -> None:
        """``[]`` every ``heartbeat_interval`` on a fixed monotonic schedule; watch silence."""
        interval = self._heartbeat_interval
        silence = self._silence_timeout
        conn = link.conn
        stats = self.stats
        clock = self._clock.monotonic
        next_beat = clock() + interval
        while True:
            now = clock()
            wake = min(next_beat, link.last_rx + silence)
            if wake > now:
                await self._clock.sleep(wake - now)
            now = clock()
            quiet = now - link.last_rx
            if quiet >= silence:
                # After the loop was blocked (a slow callback in the bot), this task may wake
                # before the reader has read what arrived meanwhile: let it run first.
                for _ in range(3):
                    await anyio.lowlevel.checkpoint()
                now = clock()
                quiet = now - link.last_rx
            if quiet >= silence:
                self._lose(link, f"server silent for {quiet:.1f} s")
                return
            if now >= next_beat:
                sent = False
                with anyio.move_on_after(silence):
                    try:
                        await conn.send(HEARTBEAT_TEXT)
                    except Exception as exc:  # closed, reset, or a websockets state error
                        self._lose(link, f"heartbeat send failed: {type(exc).__name__}")
                        return
                    sent = True
                if not sent:
                    self._lose(link, "heartbeat send stalled")
                    return
                stats.heartbeats_sent += 1
                next_beat += interval
                if next_beat <= now:  # the loop was blocked: do not send a burst to catch up
                    next_beat = now + interval
