"""A wall clock that can run fast and jump, shared by a simulator and the sessions under test.

Token lifetimes, renewal budgets (15 an hour) and lockout windows are all wall-clock rules.
Compressing *time* instead of the lifetimes keeps every one of them at its real value: at
``speed=1000`` a 90-minute token lives 5.4 real seconds and the hourly budgets still apply per
simulated hour. ``jump()`` models a suspended laptop: the wall clock moves, the event loop's
monotonic clock does not.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import anyio

__all__ = ["WarpClock"]


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
        with self._lock:
            offset = self._offset
        return self.epoch + (time.time() - self.epoch) * self.speed + offset

    def now(self) -> dt.datetime:
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
