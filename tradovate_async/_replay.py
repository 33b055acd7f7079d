"""Market replay: ``async with session.replay(start=..., speed=...) as replay:``.

A replay socket replays recorded market data on a clock of its own and accepts both market-data
and trading requests (protocol reference §4.10; the OpenAPI "Market Replay" tag; the official
``example-api-trading-strategy`` ``websocket/ReplaySocket.js``). The session object:

* opens the replay socket (``config.replay_url``, a default per environment), asks
  ``replay/checkReplaySession`` whether the start is allowed (``Ineligible`` raises
  :class:`ReplayUnavailableError`; ``StartTimestampAdjusted`` moves the start where the server
  says), then ``replay/initializeClock`` with the start, the speed and the initial balance;
* gives ``replay.md``, the same :class:`~tradovate_async.MarketData` as live, and
  ``replay.account_state()``, the same mirror, on that socket: a strategy written against
  ``md`` and the mirror runs unchanged against replay;
* turns ``clock`` events into :class:`~tradovate_async.ReplayClock` (``replay.clock``,
  ``await replay.wait_until(t)``); ``await replay.change_speed(s)`` (0-400 percent; 0 pauses);
* after a reconnect, initializes the clock again at the last replay time seen, because the
  server discards a replay session once no connection is left.

One socket, one reader of its events: the replay object runs the dispatcher and hands every
event to the market data and to the mirror.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, Unpack

import anyio
import anyio.abc

from ._account_state import AccountState
from ._errors import TradovateError
from ._exports import publish
from ._market_data import MarketData, session_resolver
from ._md_models import ReplayClock
from ._ws import EVENT_RECONNECTED, TradovateWebSocket, WebSocketOptions

if TYPE_CHECKING:
    from ._session import TradovateSession
    from .api import Api

__all__ = ["ReplaySession", "ReplayUnavailableError"]

logger = logging.getLogger(__name__)


class ReplayUnavailableError(TradovateError):
    """The replay cannot start: the start is not allowed (``Ineligible``) or the server
    refused to initialize the clock."""


def _iso(value: dt.datetime | str) -> str:
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError("a replay start must be timezone-aware")
    stamp = value.astimezone(dt.UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


class ReplaySession:
    """One market replay (see the module docstring). Use ``session.replay(...)``."""

    def __init__(
        self,
        session: TradovateSession,
        *,
        start: dt.datetime | str,
        speed: float = 100,
        initial_balance: float = 50_000,
        **options: Unpack[WebSocketOptions],
    ) -> None:
        if isinstance(speed, bool) or not 0 <= speed <= 400:
            raise ValueError("replay speed is 0-400 (percent of real time; 0 pauses)")
        self._session = session
        self.start = _iso(start)
        self.speed = float(speed)
        self.initial_balance = initial_balance
        self.ws: TradovateWebSocket = session.websocket(kind="replay", **options)
        self.md = MarketData(self.ws, resolve=session_resolver(session), dispatch=False)
        self._states: list[AccountState] = []
        self._task_group: anyio.abc.TaskGroup | None = None
        self._scope = anyio.CancelScope()
        self._clock_changed: anyio.Event | None = None
        self.clock: ReplayClock | None = None
        #: ``checkStatus`` of ``replay/checkReplaySession``
        self.check_status: str | None = None

    def __repr__(self) -> str:
        return f"ReplaySession(start={self.start!r}, speed={self.speed:g}, clock={self.clock})"

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.ws.__aenter__()
        try:
            await self._begin()
            await self.md.__aenter__()
        except BaseException:
            await self.ws.aclose()
            raise
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        task_group.start_soon(self._dispatch)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for state in self._states:
            await state.aclose()
        task_group, self._task_group = self._task_group, None
        if task_group is not None:
            self._scope.cancel()
            await task_group.__aexit__(None, None, None)
        await self.md.aclose()
        await self.ws.aclose()
        self._wake()

    async def _begin(self) -> None:
        check = await self.ws.request(
            "replay/checkReplaySession", json={"startTimestamp": self.start}, idempotent=True
        )
        status = check.get("checkStatus") if isinstance(check, Mapping) else None
        self.check_status = status if isinstance(status, str) else None
        if status == "StartTimestampAdjusted" and isinstance(check.get("startTimestamp"), str):
            logger.info("replay start adjusted by the server to %s", check["startTimestamp"])
            self.start = check["startTimestamp"]
        elif status != "OK":
            raise ReplayUnavailableError(
                f"replay from {self.start} is not available ({status or check!r})"
            )
        await self._initialize(self.start)

    async def _initialize(self, start: str) -> None:
        answer = await self.ws.request(
            "replay/initializeClock",
            json={
                "startTimestamp": start,
                "speed": self.speed,
                "initialBalance": self.initial_balance,
            },
            idempotent=False,
        )
        if not (isinstance(answer, Mapping) and answer.get("ok")):
            text = answer.get("errorText") if isinstance(answer, Mapping) else answer
            raise ReplayUnavailableError(f"replay/initializeClock refused: {text}")

    # -- control ------------------------------------------------------------------------------

    async def change_speed(self, speed: float) -> None:
        """Change the replay speed (percent of real time, 0-400; 0 pauses)."""
        if isinstance(speed, bool) or not 0 <= speed <= 400:
            raise ValueError("replay speed is 0-400")
        answer = await self.ws.request("replay/changeSpeed", json={"speed": speed}, idempotent=True)
        if isinstance(answer, Mapping) and answer.get("ok") is False:
            raise TradovateError(f"replay/changeSpeed refused: {answer.get('errorText')}")
        self.speed = float(speed)

    def account_state(self) -> AccountState:
        """The account mirror on the replay socket (``async with``), for the replay account."""
        state = AccountState(
            self.ws, sync_body={"users": [self._session.token.user_id]}, dispatch=False
        )
        self._states.append(state)
        return state

    @property
    def api(self) -> Api:
        """The typed API over the replay socket (``await replay.api.order.place_order(...)``),
        the same object as ``ws.api`` on a live trading socket."""
        return self.ws.api

    async def request(self, endpoint: str, **kwargs: Any) -> Any:
        """Any request over the replay socket (see :meth:`TradovateWebSocket.request`)."""
        return await self.ws.request(endpoint, **kwargs)

    async def wait_until(
        self,
        condition: dt.datetime | Callable[[ReplayClock], object],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a bounded wait is the point
    ) -> ReplayClock:
        """Wait for a ``clock`` event at or after a time (or satisfying ``condition``)."""
        if isinstance(condition, dt.datetime):
            moment = condition

            def reached(clock: ReplayClock) -> object:
                return clock.time >= moment

            test: Callable[[ReplayClock], object] = reached
        else:
            test = condition
        with anyio.fail_after(timeout):
            while True:
                clock = self.clock
                if clock is not None and test(clock):
                    return clock
                if self._task_group is None:
                    raise TradovateError("the replay is closed")
                event = self._clock_changed
                if event is None:
                    event = self._clock_changed = anyio.Event()
                await event.wait()

    # -- the one reader of the socket's events -----------------------------------------------

    def _wake(self) -> None:
        event, self._clock_changed = self._clock_changed, None
        if event is not None:
            event.set()

    async def _dispatch(self) -> None:
        with self._scope:
            try:
                async for event in self.ws.events():
                    kind, data = event.kind, event.data
                    self.md.handle_event(kind, data)
                    for state in self._states:
                        if state.started:
                            state.handle_event(kind, data)
                    if kind == "clock" and self.md.clock is not None:
                        self.clock = self.md.clock
                        self._wake()
                    elif kind == EVENT_RECONNECTED and self._task_group is not None:
                        self._task_group.start_soon(self._resume)
            except TradovateError as exc:
                self.md.finish(exc)
                for state in self._states:
                    state.finish(exc)
            finally:
                self._wake()

    async def _resume(self) -> None:
        """Initialize the clock again where it was (the server may have discarded it)."""
        start = _iso(self.clock.time) if self.clock is not None else self.start
        try:
            await self._initialize(start)
            logger.info("replay resumed at %s after a reconnect", start)
        except TradovateError as exc:
            logger.warning("replay: resuming after a reconnect failed: %s", exc)


publish(globals())  # its public classes show tradovate_async.X (see _exports)
