"""A wall clock that can run fast and jump, shared by a simulator and the sessions under test.

Token lifetimes, renewal budgets (15 an hour) and lockout windows are all wall-clock rules.
Compressing *time* instead of the lifetimes keeps every one of them at its real value: at
``speed=1000`` a 90-minute token lives 5.4 real seconds and the hourly budgets still apply per
simulated hour. ``jump()`` models a suspended laptop: the wall clock moves, the event loop's
monotonic clock does not.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any, Protocol

import anyio

from .._clock import Clock

__all__ = ["DateHeader", "SkewedClock", "WarpClock"]

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Any]
_Send = Callable[[_Message], Any]
_App = Callable[[_Scope, _Receive, _Send], Any]


class WarpClock:
    """A :class:`tradovate_async._clock.Clock`: ``now()`` (aware UTC datetime) and ``time()`` (epoch seconds) running ``speed`` times
    faster than real time from ``epoch`` (default: the moment of creation), plus any ``jump()``
    offsets. Processes that share ``epoch`` and ``speed`` share the clock (jumps are local)."""

    def __init__(self, speed: float = 1.0, *, epoch: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self.epoch = time.time() if epoch is None else epoch
        self._offset = 0.0
        self._mono_start = time.monotonic()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"WarpClock(speed={self.speed}, offset={self._offset:.1f}s)"

    def time(self) -> float:
        """The warped wall clock in epoch seconds."""
        with self._lock:
            offset = self._offset
        return self.epoch + (time.time() - self.epoch) * self.speed + offset

    def now(self) -> dt.datetime:
        """The warped wall clock as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.time(), dt.UTC)

    def monotonic(self) -> float:
        """Monotonic seconds at ``speed`` (``jump()`` does not move them, as after a suspend)."""
        return (time.monotonic() - self._mono_start) * self.speed

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of warped time (``seconds / speed`` of real time)."""
        await anyio.sleep(max(seconds, 0.0) / self.speed)

    def jump(self, seconds: float) -> None:
        """Move the clock forward (or back) at once, as after a suspend or a VM pause."""
        with self._lock:
            self._offset += seconds

    def real_seconds(self, simulated: float) -> float:
        """How long ``simulated`` seconds take in real time at this speed."""
        return simulated / self.speed


class EpochClock(Clock, Protocol):
    """A :class:`~tradovate_async._clock.Clock` that also tells its wall time in epoch seconds
    (``WarpClock`` and ``FakeClock``): the simulator reads it, a ``SkewedClock`` offsets it."""

    def time(self) -> float: ...


class SkewedClock:
    """A host whose wall clock is ``skew`` seconds off ``base``'s: its monotonic clock and its
    sleeps are ``base``'s own. Set ``skew`` mid-run to make the host's wall clock jump (an NTP
    step, a manual change) while the simulator's clock, driven by ``base``, does not move."""

    def __init__(self, base: EpochClock, skew: float = 0.0) -> None:
        self.base = base
        self.skew = float(skew)

    def __repr__(self) -> str:
        return f"SkewedClock({self.base!r}, skew={self.skew:+g}s)"

    def monotonic(self) -> float:
        return self.base.monotonic()

    def time(self) -> float:
        """The skewed wall clock in epoch seconds."""
        return self.base.time() + self.skew

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.time(), dt.UTC)

    async def sleep(self, seconds: float) -> None:
        await self.base.sleep(seconds)


class DateHeader:
    """ASGI middleware that puts a ``Date`` header on every HTTP answer and WebSocket
    handshake, read from ``clock`` (epoch seconds) and rounded down to whole seconds, as an
    origin server does (RFC 9110 §6.6.1)."""

    def __init__(self, app: _App, clock: Callable[[], float]) -> None:
        self._app = app
        self._clock = clock

    def _date(self) -> tuple[bytes, bytes]:
        return b"date", email.utils.formatdate(self._clock(), usegmt=True).encode("ascii")

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        async def send_dated(message: _Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != b"date"
                ]
                headers.append(self._date())
                message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, receive, send_dated)
