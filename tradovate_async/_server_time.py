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

import datetime as dt
import email.utils
import functools
import logging

from ._clock import Clock, SystemClock, elapsed_seconds

__all__ = [
    "HostClockWatch",
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
        sent = min(sent, received)
        date = server_time.timestamp()
        low, high = date - received, date + 1.0 - sent
        self.samples += 1
        self.stale = False
        if self._low is None or self._high is None:
            self._low, self._high = (low, received), (high, received)
            return True
        current_low, current_high = self._bound_low(received), self._bound_high(received)
        if low > current_high or high < current_low:
            self._low, self._high = (low, received), (high, received)
            self.restarts += 1
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
        self._elapsed = elapsed_seconds if isinstance(host, SystemClock) else host.monotonic
        self.server = ServerClock()
        self.watch = HostClockWatch()
        self._unconfirmed = 0.0  # forward wall-clock moves no sample has settled yet
        self._credit = 0.0  # of those, what the server's clock confirmed as elapsed

    def __repr__(self) -> str:
        return f"SessionTime({self.server!r})"

    def monotonic(self) -> float:
        return self._host.monotonic()

    async def sleep(self, seconds: float) -> None:
        await self._host.sleep(seconds)

    def elapsed(self) -> float:
        return self._elapsed()

    def _read(self) -> tuple[dt.datetime, float]:
        """One reading of the wall clock and of the elapsed clock, checked for a jump."""
        wall = self._host.now()
        elapsed = self._elapsed()
        moved = self.watch.check(wall.timestamp(), elapsed)
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
        wall, elapsed = self._read()
        return self.server.latest(elapsed) or wall

    @property
    def known(self) -> bool:
        return self.server.known

    def needs_sample(self) -> bool:
        """Whether the host's clock jumped since the last sample of the server's: the
        estimate then includes the jump as a possible suspend and should be re-read before
        a token is renewed or replaced on its account."""
        self._read()
        return self.server.stale

    def observe(self, date_header: str | None, *, sent: float, received: float) -> None:
        """Take an answer's ``Date`` header (ignored if missing or implausible)."""
        date = parse_http_date(date_header)
        if date is None:
            return
        if abs(date.timestamp() - self._host.now().timestamp()) > PLAUSIBLE_SKEW:
            logger.debug("ignoring an implausible Date header")
            return
        before = self.server.bounds(received)
        if not self.server.observe(date, sent=sent, received=received):
            logger.info("the server's clock moved against the host's elapsed time; re-anchored")
        after = self.server.bounds(received)
        if self._unconfirmed > 0 and before is not None and after is not None:
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
        return self.server.offset_from(wall.timestamp(), elapsed)
