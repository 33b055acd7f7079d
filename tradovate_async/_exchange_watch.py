"""The time limits of the aiohttp exchanges in flight, kept by one timer for all of them.

aiohttp bounds an exchange with a timer per limit: one for its total, and one for its socket
reads that it cancels and makes again on every read. That is three timers per request, each
made, pushed on the event loop's heap (compared by a Python ``__lt__``), cancelled and popped
again: at 50 requests in flight it was about 40 % of what the library added to a plain
aiohttp call (``bench/session.py``). :class:`ExchangeWatch` keeps both limits of every
exchange in a dict and one timer for the soonest of them. Progress (the request went out, the
answer's head came, a piece of its body came) only moves a number; the timer, when it fires,
cancels the tasks whose exchange is over a limit and is set again for the next soonest one.

A cancelled exchange learns why from :meth:`ExchangeWatch.expired`. The limits are those of
:func:`~tradovate_async._http.bounded_exchange`: the whole exchange within its deadline, and
no more than the read timeout without progress.
"""

from __future__ import annotations

import asyncio
from typing import Literal, TypeAlias

__all__ = ["ExchangeWatch", "Limit"]

#: Which limit ended an exchange: its total deadline, or the read timeout.
Limit: TypeAlias = Literal["deadline", "read"]


class ExchangeWatch:
    """The limits of the exchanges in flight on one event loop, one per task.

    Every exchange calls :meth:`start`, then :meth:`progress` as it advances, and
    :meth:`finish` in a ``finally``. A task is cancelled at most once by the watch, and only
    while it is registered; :meth:`expired` tells its exchange, once, which limit it was."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float) -> None:
        self._loop = loop
        self._read_timeout = read_timeout
        #: task -> [read limit, deadline], in the event loop's time
        self._limits: dict[asyncio.Task[object], list[float]] = {}
        self._expired: dict[asyncio.Task[object], Limit] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._closed = False

    def __len__(self) -> int:
        """Exchanges being watched."""
        return len(self._limits)

    def start(self, task: asyncio.Task[object], deadline: float) -> None:
        """Watch ``task``'s exchange from now: ``deadline`` seconds in all."""
        now = self._loop.time()
        limits = [now + self._read_timeout, now + deadline]
        self._limits[task] = limits
        soonest = min(limits)
        if soonest < self._timer_at:
            self._arm(soonest)

    def progress(self, task: asyncio.Task[object]) -> None:
        """``task``'s exchange advanced: its read timeout starts again."""
        limits = self._limits.get(task)
        if limits is not None:
            limits[0] = self._loop.time() + self._read_timeout

    def finish(self, task: asyncio.Task[object]) -> None:
        """``task``'s exchange is over (its timer stays: it finds nothing due and stops)."""
        self._limits.pop(task, None)

    def expired(self, task: asyncio.Task[object]) -> Limit | None:
        """The limit for which the watch cancelled ``task`` (once), else ``None``."""
        return self._expired.pop(task, None)

    def close(self) -> None:
        """Stop the timer for good (the exchanges in flight are cancelled by their owner)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, float("inf")

    def _arm(self, when: float) -> None:
        if self._closed:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = self._loop.call_at(when, self._fire), when

    def _fire(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        now = self._loop.time()
        soonest = float("inf")
        quiet: list[asyncio.Task[object]] = []
        for task, (read_at, deadline_at) in list(self._limits.items()):
            if deadline_at <= now:
                self._expire(task, "deadline")
            elif read_at <= now:
                quiet.append(task)
            else:
                soonest = min(soonest, read_at, deadline_at)
        if quiet:
            # After a long block of the loop, the read that ends the silence runs in this same
            # turn, before the task that takes it: look again once that task has had its step.
            self._loop.call_soon(self._confirm, quiet)
        if soonest != float("inf"):
            self._arm(soonest)

    def _confirm(self, quiet: list[asyncio.Task[object]]) -> None:
        now = self._loop.time()
        for task in quiet:
            limits = self._limits.get(task)
            if limits is None:
                continue  # finished meanwhile
            if limits[0] <= now:
                self._expire(task, "read")
            elif min(limits) < self._timer_at:
                self._arm(min(limits))

    def _expire(self, task: asyncio.Task[object], limit: Limit) -> None:
        del self._limits[task]
        if not task.done():
            self._expired[task] = limit
            task.cancel()
