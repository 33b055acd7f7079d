"""The socket's I/O: move bytes between websockets and the sans-I/O core, and sleep.

:class:`SocketDriver` runs the tasks of one :class:`~tradovate_async.TradovateWebSocket`:

* the **supervisor** performs the slow actions the core asks for, one at a time: get a token
  from the source, open the transport (TCP, TLS, upgrade);
* per connection, a **reader** feeds every frame to the core and a **writer** sends the frames
  the core produced, in order, reporting each one written;
* a **timer** sleeps on the injectable clock until the core's next deadline and calls
  ``tick(now)``.

After every input, :meth:`SocketDriver.pump` moves the core's outputs where they go: frames to
the writer, resolved requests to their waiters, slow actions to the supervisor, a new
deadline to the timer. No rule lives here; every decision is the core's.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import anyio
import anyio.abc
import anyio.lowlevel
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from ._clock import Clock, fast_monotonic
from ._errors import ConnectFailedError, TradovateError
from ._logging import RedactingLoggerAdapter, redact
from ._models import AccessToken
from ._ws_calls import Call
from ._ws_core import CloseTransport, FetchToken, OpenTransport, Phase, SocketConnection
from ._ws_transport import DirectConnection, Message
from ._ws_types import TokenSource

__all__ = ["SocketDriver", "bounded"]


logger = logging.getLogger(__name__)


async def bounded(clock: Clock, seconds: float | None, func: Callable[[], Awaitable[Any]]) -> Any:
    """``await func()`` within ``seconds`` on ``clock`` (``TimeoutError`` after)."""
    if seconds is None:
        return await func()
    result: list[Any] = []
    async with anyio.create_task_group() as group:

        async def expire() -> None:
            await clock.sleep(seconds)
            group.cancel_scope.cancel()

        group.start_soon(expire)
        result.append(await func())
        group.cancel_scope.cancel()
    if not result:
        raise TimeoutError
    return result[0]


class _Transport:
    """One open websockets connection and the frames waiting to be written to it."""

    __slots__ = ("conn", "detached", "outbox", "wake")

    def __init__(self, conn: DirectConnection) -> None:
        self.conn = conn
        self.outbox: deque[str] = deque()
        self.wake = anyio.Event()
        self.detached = False


class SocketDriver:
    """The tasks and the transport of one socket; see the module docstring."""

    def __init__(
        self,
        core: SocketConnection,
        source: TokenSource,
        *,
        url: str,
        clock: Clock,
        ssl_context: ssl.SSLContext | None,
        compression: Literal["deflate"] | None,
        max_message_size: int,
        close_timeout: float,
    ) -> None:
        self._core = core
        self._source = source
        self.url = url
        self.kind = core.settings.kind
        self._clock = clock
        self._ssl = ssl_context
        self._compression = compression
        self._max_message_size = max_message_size
        self._close_timeout = close_timeout
        self._ws_logger = RedactingLoggerAdapter(logging.getLogger("websockets.client"))
        self._change: asyncio.Future[None] | None = None
        self.waiters: dict[Call, anyio.Event] = {}
        self._transport: _Transport | None = None
        self._group: anyio.abc.TaskGroup | None = None
        self._slow: deque[FetchToken | OpenTransport] = deque()
        self._slow_wake = anyio.Event()
        self._connect_scope: anyio.CancelScope | None = None
        self._timer_scope: anyio.CancelScope | None = None
        self._timer_target = math.inf

    async def close(self) -> None:
        """The core was closed: close the transport with a handshake (bounded)."""
        transport, self._transport = self._transport, None
        self.pump()
        if transport is not None:
            with anyio.CancelScope(shield=True):
                await self._release(transport, graceful=True)

    def pump(self) -> None:
        """Hand the core's outputs to the writer, the waiters, the supervisor and the timer."""
        core = self._core
        if core.outgoing:
            frames, core.outgoing = core.outgoing, []
            transport = self._transport
            if transport is not None:
                transport.outbox.extend(frames)
                transport.wake.set()
        if core.completed:
            done, core.completed = core.completed, []
            for call in done:
                waiter = self.waiters.pop(call, None)
                if waiter is not None:
                    waiter.set()
        if core.actions:
            actions, core.actions = core.actions, []
            for action in actions:
                if isinstance(action, CloseTransport):
                    self._drop_transport(action.graceful)
                else:
                    self._slow.append(action)
                    self._slow_wake.set()
        if core.events_added:
            core.events_added = False
            self.notify()
        if core.changed:
            core.changed = False
            self.notify()
            self._slow_wake.set()
            self._wake_timer()
        elif core.calls.timers_changed:
            self._wake_timer()

    def pull(self) -> bool:
        """Decode the next slice of what the connection has read, now (see
        :meth:`DirectConnection.pull`); ``False`` when nothing waits."""
        transport = self._transport
        return transport is not None and not transport.detached and transport.conn.pull()

    def notify(self) -> None:
        change = self._change
        if change is not None:
            self._change = None
            if not change.done():
                change.set_result(None)

    async def wait_change(self) -> None:
        """Until the next :meth:`notify`. A bare future, not an ``anyio.Event``: a consumer of
        a fast stream waits here once per slice of messages, and making an ``anyio.Event``
        (a backend lookup, then an ``asyncio.Event`` and its future) cost more than the wait."""
        change = self._change
        if change is None or change.done():  # done: cancelled with its last waiter
            change = self._change = asyncio.get_running_loop().create_future()
        await change

    def _wake_timer(self) -> None:
        self._core.calls.timers_changed = False
        deadline = self._core.next_deadline()
        scope = self._timer_scope
        if scope is not None and deadline is not None and deadline < self._timer_target:
            scope.cancel()

    def _drop_transport(self, graceful: bool) -> None:
        """The core is done with the current transport (or the connect in progress)."""
        scope = self._connect_scope
        if scope is not None:
            scope.cancel()
        transport, self._transport = self._transport, None
        if transport is None:
            return
        transport.detached = True
        transport.wake.set()
        if self._group is not None:
            self._group.start_soon(self._release, transport, graceful)
        else:  # pragma: no cover - the group exists while a transport does
            transport.conn.transport.abort()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """The supervisor: start the core, then perform its slow actions until it is closed."""
        core = self._core
        started = False
        try:
            async with anyio.create_task_group() as group:
                self._group = group
                core.start(self._clock.monotonic())
                self.pump()
                group.start_soon(self._timer)
                while core.phase is not Phase.CLOSED:
                    if not started and core.ready:
                        task_status.started()
                        started = True
                    if self._slow:
                        action = self._slow.popleft()
                        if isinstance(action, FetchToken):
                            await self._fetch_token(action)
                        else:
                            await self._open_transport()
                        continue
                    self._slow_wake = anyio.Event()
                    await self._slow_wake.wait()  # a slow action, or the phase changed
                group.cancel_scope.cancel()
        finally:
            self._group = None
            transport, self._transport = self._transport, None
            if transport is not None:
                with anyio.CancelScope(shield=True):
                    await self._release(transport, graceful=False)
            self.notify()
        if not started and core.failure is not None:
            raise core.failure  # the first connect failed: the opener gets the error

    async def _fetch_token(self, action: FetchToken) -> None:
        source = self._source
        try:
            if action.refused is None:
                token = await source.current_token()
            else:
                assert isinstance(action.refused, AccessToken)
                token = await source.token_rejected(action.refused)
        except TradovateError as exc:
            self._core.connect_failed(exc, self._clock.monotonic())
        except Exception as exc:
            logger.exception("%s socket: the token source failed unexpectedly", self.kind)
            error = ConnectFailedError(f"{self.kind} socket: token source failed: {exc!r}")
            self._core.connect_failed(error, self._clock.monotonic())
        else:
            secret = token.access_token if self.kind == "trading" else token.market_data_token
            self._core.token_received(token, secret.reveal(), self._clock.monotonic())
        self.pump()

    async def _open_transport(self) -> None:
        options: dict[str, Any] = {}
        if self._ssl is not None:
            options["ssl"] = self._ssl
        conn: DirectConnection | None = None
        error: TradovateError | None = None
        # Server time (issue 9): the handshake's Date is a sample of the server's clock too.
        stamp = getattr(self._source, "elapsed_stamp", None)
        sent = stamp() if callable(stamp) else None
        with anyio.CancelScope() as scope:
            self._connect_scope = scope
            try:
                conn = await connect(  # type: ignore[assignment]  # create_connection
                    self.url,
                    create_connection=DirectConnection,
                    compression=self._compression,
                    open_timeout=None,
                    ping_interval=None,
                    close_timeout=self._close_timeout,
                    max_size=self._max_message_size,
                    max_queue=64,
                    logger=self._ws_logger,
                    **options,
                )
            except (OSError, WebSocketException, TimeoutError) as exc:
                error = ConnectFailedError(
                    f"{self.kind} socket: connect failed: {type(exc).__name__}: {redact(str(exc))}"
                )
                error.__cause__ = exc
        self._connect_scope = None
        if conn is not None and sent is not None and conn.response is not None:
            observe = getattr(self._source, "observe_date", None)
            if callable(observe):
                observe(conn.response.headers.get("date"), sent=sent)
        now = self._clock.monotonic()
        if conn is None:
            if error is not None:
                self._core.connect_failed(error, now)
                self.pump()
            return  # or cancelled: the core gave up on this connect already
        if self._core.phase is not Phase.CONNECTING:
            conn.transport.abort()
            return
        transport = self._transport = _Transport(conn)
        self._core.transport_opened(now)
        assert self._group is not None
        self._group.start_soon(self._read, transport)
        self._group.start_soon(self._write, transport)
        self.pump()

    async def _read(self, transport: _Transport) -> None:
        """The hot path runs in the protocol callback (``DirectConnection``): every complete
        message is one core input and one pump, with no task switch and no ``recv`` future.
        This task only waits for the connection to end, then reports why."""
        conn = transport.conn
        receive = self._core.receive
        now = fast_monotonic(self._clock)
        pump = self.pump

        def take(message: Message) -> int:
            if transport.detached:
                return 0
            waiting = receive(message, now())
            pump()
            return waiting

        conn.attach(take)
        await conn.wait_closed()
        conn.finish()  # what arrived before the end is delivered before the loss is reported
        if not transport.detached:
            self._core.transport_closed(conn.loss_reason(), now())
            pump()

    async def _write(self, transport: _Transport) -> None:
        """Send the core's frames in order; report each one written (stall detection)."""
        send = transport.conn.send
        outbox = transport.outbox
        try:
            while not transport.detached:
                while outbox:
                    await send(outbox.popleft())
                    self._core.frame_sent(self._clock.monotonic())
                transport.wake = anyio.Event()
                if outbox or transport.detached:
                    continue
                await transport.wake.wait()
        except (ConnectionClosed, OSError, WebSocketException) as exc:
            if not transport.detached:
                self._core.transport_closed(
                    f"send failed: {type(exc).__name__}", self._clock.monotonic()
                )
                self.pump()

    async def _timer(self) -> None:
        """Sleep on the clock until the core's next deadline, then ``tick``."""
        core = self._core
        clock = self._clock
        while True:
            now = clock.monotonic()
            deadline = core.next_deadline()
            if deadline is not None and deadline <= now:
                silence = core.silence_deadline
                if silence is not None and silence <= now:
                    # After the loop was blocked (a slow callback in the bot), this task may
                    # wake before the reader has read what arrived meanwhile: let it run first.
                    for _ in range(3):
                        await anyio.lowlevel.checkpoint()
                    now = clock.monotonic()
                core.tick(now)
                self.pump()
                await anyio.lowlevel.checkpoint()
                continue
            self._timer_target = math.inf if deadline is None else deadline
            with anyio.CancelScope() as scope:
                self._timer_scope = scope
                await clock.sleep(math.inf if deadline is None else deadline - now)
            self._timer_scope = None

    async def _release(self, transport: _Transport, graceful: bool) -> None:
        """Free a connection quickly: a closing handshake when the server is talking to us,
        else cut the TCP connection at once (recovery must not wait)."""
        transport.detached = True
        transport.wake.set()
        conn = transport.conn
        with anyio.CancelScope(shield=True):
            if graceful:
                try:
                    await bounded(self._clock, self._close_timeout, conn.close)
                except TimeoutError:
                    pass
                except Exception:  # the peer may be gone already
                    logger.debug("closing handshake failed", exc_info=True)
            conn.transport.abort()
            try:
                await bounded(self._clock, self._close_timeout, conn.wait_closed)
            except TimeoutError:
                pass
