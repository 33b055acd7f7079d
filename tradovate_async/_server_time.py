"""The server's clock, estimated on the host's elapsed time: the sans-I/O core of token time.

Why: ``expirationTime`` is an instant on the *server's* clock. Judging it by the host's wall
clock breaks on every host whose clock is wrong (a real-time clock kept in local time, a VM
restored from a snapshot, a manual change): two hours fast, every token looks expired on
arrival; two hours slow, renewals come too late. So every answer's ``Date`` header is taken as
a sample of the server's clock, tied to the host's *elapsed* time (a monotonic clock, which no
NTP step or manual change moves), and the session asks "what time is it on the server?"
instead of "what time is it here?".

``Date`` has a resolution of one second and was written somewhere between sending the request
and receiving the answer. A request sent at elapsed ``s`` whose answer, received at ``r``,
says ``D`` tells: the server's time minus the elapsed time (the *offset*) lies in
``[D − r, D + 1 − s]``. :class:`ServerClock` keeps the intersection of these intervals (the
tightest samples win), widened slowly for the drift of the host's oscillator (100 ppm). If a
sample contradicts the interval (the server's clock was stepped, or the elapsed clock stood
still through a suspend), the interval restarts from that sample.

:class:`HostClockWatch` notices the host's wall clock moving against the elapsed clock. On a
platform whose elapsed clock stops during a suspend, a forward move may be a suspend (server
time went on) or a wall-clock step (it did not): the estimate is widened by the move, so the
pessimistic bound sees the suspend, and the session takes a fresh sample before acting on it.

Nothing here reads a clock or touches a socket: callers pass the times in.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import functools
import logging
import time
from collections.abc import Callable

from ._clock import Clock, SystemClock, elapsed_seconds, fast_elapsed_clock

__all__ = [
    "HostClockWatch",
    "Lease",
    "ServerClock",
    "SessionTime",
    "elapsed_seconds",
    "parse_http_date",
]

logger = logging.getLogger(__name__)

#: How fast old bounds widen per elapsed second: quartz oscillators stay within 100 ppm.
DRIFT = 1e-4
#: A ``Date`` farther than this from the host's clock is not believed (a broken proxy).
PLAUSIBLE_SKEW = 30 * 86_400.0


def parse_http_date(value: str | None) -> dt.datetime | None:
    """An HTTP ``Date`` header (``Tue, 01 Dec 2026 06:28:48 GMT``) as an aware UTC datetime,
    or ``None`` if absent or malformed."""
    if not value or len(value) > 64:
        return None
    return _parse_http_date(value)


@functools.lru_cache(maxsize=8)
def _parse_http_date(value: str) -> dt.datetime | None:
    # Cached: the header has a one-second resolution, so a busy session sees the same few
    # values many times, and parsing one costs more than the rest of observing it.
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class Lease:
    """A promise of :meth:`ServerClock.lease`: while the elapsed time is in ``[start, until)``
    and the clock's ``generation`` is still ``generation``, the latest the server's clock can
    read is before the instant the lease was taken for.

    Why: a session asks "is the token still usable?" before every request. Answered with
    datetimes that is the largest cost of a call after the HTTP exchange itself; with a lease
    it is two float comparisons. Nothing is lost: a sample only ever tightens the latest bound
    (so the promise stays true), and whatever could move it later (a restart, a suspend seen
    as a wall-clock jump) starts a new generation, which voids every lease.
    """

    start: float
    until: float
    generation: int


#: Taken off a lease's end, far beyond the float and microsecond rounding of the bounds.
_LEASE_MARGIN = 1e-3


class ServerClock:
    """An interval estimate of the server's clock as ``elapsed + offset``.

    Args:
        drift: widening of a bound per elapsed second since its sample.
    """

    def __init__(self, *, drift: float = DRIFT) -> None:
        self._drift = drift
        # (offset in seconds, elapsed time of the sample that set it)
        self._low: tuple[float, float] | None = None
        self._high: tuple[float, float] | None = None
        self.samples = 0
        self.restarts = 0
        self.stale = False  # widened by a jump since the last sample
        # Counts the changes that may move the latest bound later (see Lease): the first
        # sample, a restart, a widening. Tightening samples leave it alone.
        self.generation = 0

    def __repr__(self) -> str:
        if self._low is None or self._high is None:
            return "ServerClock(unknown)"
        return f"ServerClock(samples={self.samples}, width={self._high[0] - self._low[0]:.3f}s)"

    @property
    def known(self) -> bool:
        """Whether at least one sample has been taken."""
        return self._low is not None

    def observe(self, server_time: dt.datetime, *, sent: float, received: float) -> bool:
        """Take the ``Date`` of an answer (``server_time``, whole seconds) to a request sent at
        elapsed ``sent`` and answered at ``received``. Returns ``False`` if the sample
        contradicted the estimate, which then restarts from it."""
        return self.observe_at(server_time.timestamp(), sent=sent, received=received)

    def observe_at(self, date: float, *, sent: float, received: float) -> bool:
        """:meth:`observe` with the ``Date`` as epoch seconds."""
        sent = min(sent, received)
        low, high = date - received, date + 1.0 - sent
        self.samples += 1
        self.stale = False
        known_low, known_high = self._low, self._high
        if known_low is None or known_high is None:
            self._low, self._high = (low, received), (high, received)
            self.generation += 1
            return True
        # _bound_low and _bound_high, written out: this runs for every answer.
        drift = self._drift
        current_low = known_low[0] - drift * abs(received - known_low[1])
        current_high = known_high[0] + drift * abs(received - known_high[1])
        if low > current_high or high < current_low:
            self._low, self._high = (low, received), (high, received)
            self.restarts += 1
            self.generation += 1
            return False
        if low >= current_low:
            self._low = (low, received)
        if high <= current_high:
            self._high = (high, received)
        return True

    def widen(self, seconds: float) -> None:
        """The server's clock may be up to ``seconds`` later than estimated (the elapsed clock
        may have stood still that long, as through a suspend)."""
        if self._high is not None and seconds > 0:
            self._high = (self._high[0] + seconds, self._high[1])
            self.stale = True
            self.generation += 1

    def _bound_low(self, elapsed: float) -> float:
        assert self._low is not None
        offset, at = self._low
        return offset - self._drift * abs(elapsed - at)

    def _bound_high(self, elapsed: float) -> float:
        assert self._high is not None
        offset, at = self._high
        return offset + self._drift * abs(elapsed - at)

    def bounds(self, elapsed: float) -> tuple[float, float] | None:
        """Earliest and latest server time (epoch seconds) at ``elapsed``, or ``None``."""
        if self._low is None:
            return None
        return elapsed + self._bound_low(elapsed), elapsed + self._bound_high(elapsed)

    def uncertainty(self, elapsed: float) -> float | None:
        """Width of the estimate in seconds (``None`` while unknown)."""
        found = self.bounds(elapsed)
        return None if found is None else found[1] - found[0]

    def latest(self, elapsed: float) -> dt.datetime | None:
        """The latest the server's clock can read at ``elapsed``: the bound every expiry
        decision uses, so a token is never thought to live longer than it does."""
        found = self.bounds(elapsed)
        return None if found is None else dt.datetime.fromtimestamp(found[1], dt.UTC)

    def lease(self, instant: float) -> Lease | None:
        """A :class:`Lease` on "the server's clock reads before ``instant`` (epoch seconds)",
        or ``None`` while the clock is unknown.

        From the sample that set the latest bound on, that bound is
        ``elapsed + offset + drift * (elapsed - at)``, which stays below ``instant`` until
        ``elapsed = (instant - offset + drift * at) / (1 + drift)``. A later sample replaces
        the bound only with a tighter one (the lease stays true); anything else bumps the
        generation.
        """
        if self._high is None:
            return None
        offset, at = self._high
        until = (instant - offset + self._drift * at) / (1.0 + self._drift) - _LEASE_MARGIN
        return Lease(at, until, self.generation)

    def offset_from(self, wall: float, elapsed: float) -> float | None:
        """How far a host wall-clock reading ``wall`` (epoch seconds, taken at ``elapsed``) is
        ahead of the server's clock (the middle of the estimate), in seconds."""
        found = self.bounds(elapsed)
        return None if found is None else wall - (found[0] + found[1]) / 2


class HostClockWatch:
    """Notices the host's wall clock moving against its elapsed clock.

    :meth:`check` returns how far the wall clock moved *ahead* beyond ``tolerance`` since the
    last move it reported (0.0 if it did not): a suspend or a forward step. Backward steps are
    absorbed silently: they cannot hide elapsed server time.
    """

    def __init__(self, tolerance: float = 2.0) -> None:
        self._tolerance = tolerance
        self._base: float | None = None
        self.moves = 0

    def check(self, wall: float, elapsed: float) -> float:
        difference = wall - elapsed
        if self._base is None:
            self._base = difference
            return 0.0
        moved = difference - self._base
        if abs(moved) <= self._tolerance:
            return 0.0
        self._base = difference
        self.moves += 1
        return max(moved, 0.0)


class SessionTime:
    """A session's clock: the thin layer that reads the host's clocks, feeds a
    :class:`ServerClock` and a :class:`HostClockWatch`, and is itself a
    :class:`~tradovate_async._clock.Clock`.

    ``now()`` is the latest the server's clock can read, or the host's wall clock while no
    server time is known; ``monotonic()`` and ``sleep()`` are the host clock's own. The elapsed
    clock the estimate runs on is ``CLOCK_BOOTTIME`` for the system clock (it counts suspends
    on Linux) and the given clock's ``monotonic()`` otherwise.

    Args:
        host: the host's clock.
    """

    def __init__(self, host: Clock) -> None:
        self._host = host
        self._elapsed = fast_elapsed_clock() if isinstance(host, SystemClock) else host.monotonic
        # The wall clock in epoch seconds: the jump check runs before every request, and the
        # system clock's datetime costs more than the check itself. Only the system clock
        # itself: a subclass may move its now() (tests of hosts whose clock jumps do).
        plain = type(host) is SystemClock
        self._wall: Callable[[], float] = time.time if plain else self._host_wall
        self.server = ServerClock()
        self.watch = HostClockWatch()
        self._unconfirmed = 0.0  # forward wall-clock moves no sample has settled yet
        self._credit = 0.0  # of those, what the server's clock confirmed as elapsed
        # The last Date header seen and its value (None: malformed): a busy session sees the
        # same header for a second at a time.
        self._last_date: tuple[str, float | None] = ("", None)

    def __repr__(self) -> str:
        return f"SessionTime({self.server!r})"

    def monotonic(self) -> float:
        return self._host.monotonic()

    async def sleep(self, seconds: float) -> None:
        await self._host.sleep(seconds)

    def elapsed(self) -> float:
        return self._elapsed()

    def _host_wall(self) -> float:
        return self._host.now().timestamp()

    def _read(self) -> tuple[float, float]:
        """One reading of the wall clock (epoch seconds) and of the elapsed clock, checked for
        a jump."""
        wall = self._wall()
        elapsed = self._elapsed()
        moved = self.watch.check(wall, elapsed)
        if moved > 0 and self.server.known:
            logger.info(
                "the host's wall clock moved %.0f s ahead of its elapsed clock (a suspend or a "
                "clock step); the server's time is re-read before the token is judged",
                moved,
            )
            self.server.widen(moved)
            self._unconfirmed += moved
        return wall, elapsed

    def now(self) -> dt.datetime:
        """The time every token decision uses (see the class docstring)."""
        _, elapsed = self._read()
        return self.server.latest(elapsed) or self._host.now()

    def lease(self, instant: dt.datetime) -> Lease | None:
        """A :class:`Lease` on "``now()`` is before ``instant``" (``None`` while no server
        time is known: the host's clock then stands in, and nothing is promised on it)."""
        return self.server.lease(instant.timestamp())

    def holds(self, lease: Lease) -> bool:
        """Whether ``lease`` still holds: the same reading of the clocks and the same jump
        check as :meth:`now`, then two comparisons instead of datetime arithmetic."""
        _, elapsed = self._read()
        return lease.generation == self.server.generation and lease.start <= elapsed < lease.until

    @property
    def known(self) -> bool:
        return self.server.known

    def needs_sample(self) -> bool:
        """Whether the host's clock jumped since the last sample of the server's: the
        estimate then includes the jump as a possible suspend and should be re-read before
        a token is renewed or replaced on its account."""
        self._read()
        return self.server.stale

    def _date_value(self, header: str | None) -> float | None:
        """A ``Date`` header in epoch seconds (``None`` if absent or malformed)."""
        if header is None:
            return None
        seen, value = self._last_date
        if header != seen:
            parsed = parse_http_date(header)
            value = None if parsed is None else parsed.timestamp()
            self._last_date = (header, value)
        return value

    def observe(self, date_header: str | None, *, sent: float, received: float) -> None:
        """Take an answer's ``Date`` header (ignored if missing or implausible)."""
        date = self._date_value(date_header)
        if date is None:
            return
        if abs(date - self._wall()) > PLAUSIBLE_SKEW:
            logger.debug("ignoring an implausible Date header")
            return
        unconfirmed = self._unconfirmed > 0
        before = self.server.bounds(received) if unconfirmed else None
        if not self.server.observe_at(date, sent=sent, received=received):
            logger.info("the server's clock moved against the host's elapsed time; re-anchored")
        after = self.server.bounds(received) if unconfirmed else None
        if unconfirmed and before is not None and after is not None:
            # A suspend is time the elapsed clock missed: count it once both clocks agree.
            self._credit += min(max(after[0] - before[0], 0.0), self._unconfirmed)
            self._unconfirmed = 0.0

    def steady(self) -> float:
        """A clock for floors that no single wrong clock may open (the login pacing): the
        elapsed clock, plus suspends it missed that the wall clock *and* the server's clock
        both saw. It never runs backward."""
        return self.elapsed() + self._credit

    def host_offset(self) -> float | None:
        """Seconds the host's wall clock is ahead of the server's (``None`` while unknown)."""
        wall, elapsed = self._read()
        return self.server.offset_from(wall, elapsed)
