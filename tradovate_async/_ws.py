"""A Tradovate WebSocket that stays connected: the public face of the socket.

Every rule — phases, heartbeat, silence, request ids and deadlines, penalties, replay,
backoff, quota waits, the event buffer — lives in the sans-I/O
:class:`~tradovate_async._ws_core.SocketConnection`; the tasks that move bytes and sleep live in
:class:`~tradovate_async._ws_io.SocketDriver`. :class:`TradovateWebSocket` opens and closes
them, hands user requests to the core and waits for their outcome.

The token travels only in the ``authorize`` frame, never in a URL or header, and
``websockets`` gets a logger adapter that redacts frames before they become log records.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Literal, Self, TypedDict

import anyio

from ._clock import SYSTEM_CLOCK, Clock
from ._errors import (
    ConnectionLostError,
    OrderOutcomeUnknownError,
    RequestFailedError,
    RequestTimeoutError,
    SessionClosedError,
)
from ._exports import publish
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
from ._orders import OrderDefaults, is_order_command, prepare_order_command
from ._penalty import PenaltyPolicy
from ._retry import is_read
from ._tasks import TaskHost
from ._ws_calls import Call, Query
from ._ws_codec import Event, is_read_only, normalize_endpoint
from ._ws_core import EventTap, FrameTap, SocketConnection, SocketSettings
from ._ws_io import SocketDriver, bounded
from ._ws_types import (
    EVENT_DISCONNECTED,
    EVENT_RECONNECTED,
    AuthFrame,
    Disconnected,
    Reconnected,
    ReplayResult,
    SocketKind,
    Subscription,
    TokenSource,
    WebSocketStats,
    canonical_body,
    default_unsubscribe,
)
from .api import Api, ApiCall
from .api._base import BoundTransport

__all__ = [
    "EVENT_DISCONNECTED",
    "EVENT_RECONNECTED",
    "Disconnected",
    "Reconnected",
    "ReplayResult",
    "SocketKind",
    "Subscription",
    "TokenSource",
    "TradovateWebSocket",
    "WebSocketOptions",
    "WebSocketStats",
]

logger = logging.getLogger(__name__)


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


#: Slices the consumer may decode itself (see ``SocketDriver.pull``) before it waits for a
#: turn of the event loop, where every other task runs.
PULLS_PER_TURN = 32


async def _event_stream(ws: TradovateWebSocket) -> AsyncIterator[Event]:
    """What :meth:`TradovateWebSocket.events` returns. An async generator: resuming it costs
    less than a coroutine per ``__anext__``, which counts at a hundred thousand events a
    second. Events leave the buffer one at a time, as they are handed out, so a consumer that
    stops iterating leaves the rest there for the next iterator."""
    core = ws._core
    queue = core.events.queue
    pull = ws._driver.pull
    pulls = 0
    while True:
        if queue:
            yield queue.popleft()
            continue
        if pulls < PULLS_PER_TURN and pull():
            pulls += 1
            continue
        pulls = 0
        if core.failure is not None:
            raise core.failure
        if ws._closed:
            return
        await ws._driver.wait_change()


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
    (:class:`SessionClosedError`). ``aclose()`` is safe from any task.

    **Reconnects.** Each attempt asks the token source for its *current* token; an authorize
    refused with 401/403 asks the source again (it renews once), and a third refusal is fatal.
    Delays come from ``reconnect_backoff``: the first attempt is (nearly) immediate, then
    exponential with full jitter up to ``reconnect_backoff.maximum``; the counter resets only
    after a connection stayed up ``stable_after`` seconds; after a ``shutdown`` for
    ``ConnectionQuotaReached``/``IPQuotaReached`` the next attempt waits ``quota_wait`` seconds
    (more sockets would evict the oldest one and revoke its token). Fatal errors (token refused
    three times, 429, the session's permanent authentication errors, a closed session) end the
    socket: ``events()`` and every request then raise that error.

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
        penalties: how far a request waits out ``p-ticket`` answers; beyond either bound,
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
        settings = SocketSettings(
            kind=kind,
            auth_frame=auth_frame,
            heartbeat_interval=check_seconds("heartbeat_interval", heartbeat_interval),
            silence_timeout=check_seconds("silence_timeout", silence_timeout),
            request_timeout=timeouts.request,
            connect_timeout=timeouts.connect_seconds,
            event_buffer=event_buffer,
            reconnect_backoff=reconnect_backoff,
            stable_after=check_seconds("stable_after", stable_after, allow_zero=True),
            quota_wait=check_seconds("quota_wait", quota_wait, allow_zero=True),
            penalties=penalties,
        )
        self.url = url
        self.kind: SocketKind = kind
        self.auth_frame: AuthFrame = auth_frame
        self._source = source
        self._clock = clock
        self._core = SocketConnection(settings, rng=rng)
        self.stats: WebSocketStats = self._core.stats
        self._driver = SocketDriver(
            self._core,
            source,
            url=url,
            clock=clock,
            ssl_context=ssl_context(verify),
            compression=compression,
            max_message_size=max_message_size,
            close_timeout=timeouts.close,
        )
        self._tasks = TaskHost()
        self._opened = False
        self._closed = False
        self._api: Api | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._opened else "new"
        return (
            f"TradovateWebSocket(kind={self.kind!r}, url={self.url!r}, state={state}, "
            f"connected={self.connected}, generation={self.generation})"
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._opened or self._closed:
            raise SessionClosedError(
                "a TradovateWebSocket can be opened once; create a new one"
                if self._closed
                else "this TradovateWebSocket is already open"
            )
        self._opened = True
        try:
            await self._tasks.open(self._driver.run)
        except BaseException:
            self._closed = True
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
        if not self._closed:
            self._closed = True
            if self._opened:
                self._core.close(self._clock.monotonic())
                await self._driver.close()
        await self._tasks.stop()

    @property
    def closed(self) -> bool:
        """Whether the socket was closed (it cannot be reopened)."""
        return self._closed

    @property
    def connected(self) -> bool:
        """Authorized, resubscribed and not known to be dead right now."""
        return self._core.ready

    @property
    def generation(self) -> int:
        """Number of the current connection (1 for the first); see :meth:`wait_connected`."""
        return self._core.generation

    @property
    def subscriptions(self) -> frozenset[Subscription]:
        """What is replayed after a reconnect (unchanged by reconnects)."""
        return frozenset(self._core.subscriptions)

    async def wait_connected(
        self,
        *,
        after: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - a convenience for tests and scripts
    ) -> int:
        """Wait until a connection is ready whose generation is greater than ``after`` (any if
        ``None``) and return its generation. Raises the socket's fatal error, or
        :class:`SessionClosedError`, or ``TimeoutError`` after ``timeout`` (on the clock)."""

        async def ready() -> int:
            core = self._core
            while True:
                self._check_usable()
                if core.ready and (after is None or core.generation > after):
                    return core.generation
                await self._driver.wait_change()

        generation: int = await bounded(self._clock, timeout, ready)
        return generation

    # -- events -----------------------------------------------------------------------------

    def events(self) -> AsyncIterator[Event]:
        """An async iterator over server events and the library's connection events.

        Yields :class:`~tradovate_async._ws_codec.Event` objects in arrival order: the server's
        ``props``, ``md``, ``chart``, ``clock`` (``data`` parsed) and ``shutdown`` events, plus
        ``disconnected`` (``data``: :class:`Disconnected`) when a connection is lost and
        ``reconnected`` (``data``: :class:`Reconnected`) once the next one is authorized and
        resubscribed. Iteration ends after ``aclose()``, once the buffer is drained; after a
        fatal error it raises that error.

        **Overflow policy** (``_event_buffer``). At most ``event_buffer`` events wait for the
        consumer. When it is full, quotes and DOM are superseded per contract (the latest of each
        contract is kept); if that is not enough, the backlog of ``props``, ``chart`` and
        histogram events is dropped, an ``overflow`` event marks the gap, and the socket asks
        for fresh snapshots (``user/syncrequest``, chart and histogram subscriptions), delivered
        as a ``resynced`` event. ``stats.dropped_events`` counts what was dropped. The reader
        never waits for the consumer, so a slow consumer cannot stall heartbeats or answers.

        Use one consumer at a time: events are handed out once.
        """
        return _event_stream(self)

    def set_taps(self, event: EventTap | None, frame: FrameTap | None) -> None:
        """Library-internal (typed market data): ``event`` sees each server event before the
        buffer, ``frame`` each message before decoding; ``True``: handled. No raising, no wait."""
        self._core.event_tap = event
        self._core.frame_tap = frame

    # -- requests ---------------------------------------------------------------------------

    async def request(
        self,
        endpoint: str,
        *,
        params: Query = None,
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
        429), :class:`RequestTimeoutError` after ``timeout`` (default ``Timeouts.request``; it
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
        if is_order_command(endpoint):
            return await self._order_request(endpoint, params, json, timeout)
        retry = is_read_only(endpoint) if idempotent is None else idempotent
        return await self._call(endpoint, params, json, timeout=timeout, retry=retry)

    @property
    def api(self) -> Api:
        """The typed API over this (trading) socket: ``await ws.api.position.list()``."""
        if self._api is None:
            self._api = Api(BoundTransport(self._api_send))
        return self._api

    async def _api_send(self, call: ApiCall) -> Any:
        return await self.request(
            call.endpoint, params=call.query, json=call.body, idempotent=call.read_only
        )

    async def _order_request(
        self, endpoint: str, params: Query, body: Any, limit: float | None
    ) -> Any:
        """An order command: validated and labelled like the session's (``isAutomated``,
        ``clOrdId``), sent once; a lost answer raises :class:`OrderOutcomeUnknownError`."""
        defaults = getattr(self._source, "order_defaults", None)
        if not isinstance(defaults, OrderDefaults):
            defaults = OrderDefaults()
        body, cl_ord_id = prepare_order_command(endpoint, body, defaults)
        try:
            return await self._call(endpoint, params, body, timeout=limit, retry=False)
        except (ConnectionLostError, RequestTimeoutError, RequestFailedError) as exc:
            if isinstance(exc, RequestFailedError) and (exc.status or 0) < 500:
                raise
            reason = f"HTTP {exc.status}" if isinstance(exc, RequestFailedError) else str(exc)
            logger.warning("%s: answer lost (%s); not resending", endpoint, reason)
            raise OrderOutcomeUnknownError(
                normalize_endpoint(endpoint),
                cl_ord_id=cl_ord_id,
                reason=reason,
                body=body if isinstance(body, dict) else None,
            ) from exc

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
        cancel = unsubscribe or default_unsubscribe(path)
        sub = Subscription(path, canonical_body(json), cancel)
        return await self._call(path, None, json, timeout=timeout, retry=True, subscription=sub)

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
        subscriptions = self._core.subscriptions
        key = Subscription(path, canonical_body(json))
        stored = next((s for s in subscriptions if s == key), None)
        data = subscriptions.pop(stored) if stored is not None else None
        cancel = stored.unsubscribe if stored is not None else default_unsubscribe(path)
        if cancel is None:
            return None
        cancel_body = json
        if cancel.lower().endswith("/cancelchart"):
            chart_id = data.get("realtimeId") if isinstance(data, Mapping) else None
            if chart_id is None:
                return None
            cancel_body = {"subscriptionId": chart_id}
        return await self._call(cancel, None, cancel_body, timeout=timeout, retry=True)

    async def _call(
        self,
        endpoint: str,
        params: Query,
        body: Any,
        *,
        timeout: float | None,  # noqa: ASYNC109 - the core enforces it on the clock
        retry: bool,
        subscription: Subscription | None = None,
    ) -> Any:
        self._check_usable()
        spend = getattr(self._source, "spend_request", None)
        if spend is not None:  # the user's request budget, shared with REST and other sockets
            await spend(endpoint, command=not is_read(endpoint))
        call = Call(endpoint, params, body, timeout=timeout, retry=retry, subscription=subscription)
        self._core.submit(call, self._clock.monotonic())
        if not call.done:
            driver = self._driver
            event = driver.waiters[call] = anyio.Event()
            driver.pump()
            try:
                await event.wait()
            finally:
                if not call.done:  # cancelled by the caller: never send it later
                    driver.waiters.pop(call, None)
                    self._core.calls.abandon(call)
        if call.error is not None:
            raise call.error
        return call.data

    def _check_usable(self) -> None:
        failure = self._core.failure
        if failure is not None:
            raise failure
        if self._closed or not self._opened:
            raise SessionClosedError(
                "the WebSocket is closed"
                if self._closed
                else "the WebSocket is not open: use 'async with'"
            )


publish(globals())  # its public classes show tradovate_async.X (see _exports)
