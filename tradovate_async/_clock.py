"""The one way the library reads time and sleeps: an injectable clock.

Two kinds of time matter and they must not be confused:

* **monotonic seconds** (:meth:`Clock.monotonic`) for intervals that belong to this process:
  heartbeats, silence, request deadlines, reconnect backoff. A wall-clock jump (NTP, a user
  fixing the date) must not fire or starve them.
* **wall time** (:meth:`Clock.now`, an aware UTC ``datetime``) for instants the server states:
  a token's ``expirationTime``, the rolling hour of the renewal budget, lockout windows. After a
  suspended laptop wakes up the wall clock has moved and the monotonic one has not, and the
  token did expire.

No module of the I/O layer calls ``time.monotonic()``, ``time.time()`` or ``datetime.now()``
itself: each takes a :class:`Clock` (default :data:`SYSTEM_CLOCK`), and the sans-I/O cores take
"now" as an argument. Tests pass a :class:`FakeClock` and move it by hand, so heartbeat, silence,
backoff and renewal timing get exact assertions with no sleeping; ``tradovate_async.sim``'s
``WarpClock`` is a clock too (fast time for end-to-end runs).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import anyio
import anyio.lowlevel

from ._exports import publish

__all__ = [
    "SYSTEM_CLOCK",
    "Clock",
    "FakeClock",
    "SystemClock",
    "elapsed_seconds",
    "fast_elapsed_clock",
    "fast_monotonic",
]

_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None)


def elapsed_seconds() -> float:
    """The host's elapsed time in seconds: ``CLOCK_BOOTTIME`` where it exists (Linux: it counts
    time spent suspended and never steps), else ``time.monotonic()``. The server-time estimate
    runs on it (``_server_time``)."""
    if _BOOTTIME is not None:
        return time.clock_gettime(_BOOTTIME)
    return time.monotonic()  # pragma: no cover - non-Linux


def fast_elapsed_clock() -> Callable[[], float]:
    """:func:`elapsed_seconds` as a callable without a Python frame of its own: the session
    reads it several times per request."""
    if _BOOTTIME is not None:
        return functools.partial(time.clock_gettime, _BOOTTIME)
    return time.monotonic  # pragma: no cover - non-Linux


def fast_monotonic(clock: Clock) -> Callable[[], float]:
    """``clock.monotonic`` as a callable, without a Python frame of its own for the system
    clock: the socket reads it once per message."""
    return time.monotonic if type(clock) is SystemClock else clock.monotonic


@runtime_checkable
class Clock(Protocol):
    """Monotonic seconds, wall time, and a sleep measured on the same clock."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (only differences mean anything)."""
        ...

    def now(self) -> dt.datetime:
        """The wall time as an aware UTC ``datetime``."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of this clock's monotonic time (a cancellation point)."""
        ...


class SystemClock:
    """The machine's clocks: ``time.monotonic()``, ``datetime.now(UTC)`` and ``anyio.sleep``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SystemClock()"

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(seconds, 0.0))


#: The clock every object uses unless given another.
SYSTEM_CLOCK: SystemClock = SystemClock()

_EPOCH_2026 = 1_767_225_600.0  # 2026-01-01T00:00:00Z: a fixed, realistic start for fakes


class FakeClock:
    """A clock that moves only when told: for tests, with exact times and no sleeping.

    :meth:`advance` moves monotonic and wall time together and wakes every :meth:`sleep` whose
    deadline has come, in deadline order (a cancellation point is passed after each wake-up so
    the woken task runs before the next one). :meth:`jump` moves only the wall clock, as a
    suspended laptop or an NTP step does. ``sleep(0)`` and negative sleeps return at once.
    """

    def __init__(self, start: float = 0.0, *, wall: float = _EPOCH_2026) -> None:
        self._mono = float(start)
        self._wall_offset = float(wall) - float(start)
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._seq = 0

    def __repr__(self) -> str:
        return f"FakeClock(monotonic={self._mono:g}, now={self.now().isoformat()})"

    def monotonic(self) -> float:
        return self._mono

    def time(self) -> float:
        """Wall time in epoch seconds (what ``time.time()`` would say)."""
        return self._mono + self._wall_offset

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.time(), dt.UTC)

    @property
    def sleepers(self) -> int:
        """How many tasks are sleeping on this clock right now."""
        return len(self._sleepers)

    def next_wakeup(self) -> float | None:
        """The earliest deadline of a sleeping task, if any."""
        return min((d for d, _, _ in self._sleepers), default=None)

    async def sleep(self, seconds: float) -> None:
        if not seconds > 0:
            await anyio.lowlevel.checkpoint()
            return
        if math.isinf(seconds):
            await anyio.sleep_forever()
        event = anyio.Event()
        self._seq += 1
        entry = (self._mono + seconds, self._seq, event)
        self._sleepers.append(entry)
        try:
            await event.wait()
        finally:
            if entry in self._sleepers:
                self._sleepers.remove(entry)

    def jump(self, seconds: float) -> None:
        """Move only the wall clock (suspend, NTP step); sleepers are not woken."""
        self._wall_offset += seconds

    async def advance(self, seconds: float) -> None:
        """Move both clocks forward, waking each sleeper at its own deadline in order."""
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go back")
        target = self._mono + seconds
        while True:
            due = sorted(s for s in self._sleepers if s[0] <= target)
            if not due:
                break
            deadline, _, event = due[0]
            self._sleepers.remove(due[0])
            self._mono = max(self._mono, deadline)
            event.set()
            for _ in range(5):  # let the woken task run up to its next await
                await anyio.lowlevel.checkpoint()
        self._mono = target
        await anyio.lowlevel.checkpoint()


publish(globals())  # its public classes show tradovate_async.X (see _exports)
