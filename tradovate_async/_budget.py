"""One request budget per user, shared by every session, socket and process of that user.

Tradovate limits requests per *user*, not per connection: about 5,000 an hour (rolling), 300
``user/syncrequest`` an hour, penalty tickets for bursts, and after a 429 a rolling one-hour
lockout that no program can lift (protocol reference §5.6 and §9: partner rate-limits page;
maintainer answer in tradovate/api issue 25; request-limits FAQ). Eight bots of one user that
each keep "their own" limit lock the user out together. So the budget lives where the token
lives: in the token store (memory, file or Redis), and every request of every process takes
from the same ledger before it is sent.

How it counts: each rule (at most ``limit`` requests in any ``window`` seconds, for every
request or for one endpoint) keeps counts in ``BUCKETS`` time buckets of ``window / BUCKETS``
seconds. A request is allowed when the buckets that overlap the last ``window`` seconds hold
fewer than ``limit`` requests. Counting the oldest, partly expired bucket whole over-counts a
little and never under-counts, so no rolling window of the server's can see more than
``limit`` — the safe side. Bucket counts keep the shared record small (a few hundred bytes per
rule), which matters for the file store, rewritten at every request.

The ledger is sans-I/O (:class:`BudgetLedger`); the backends only move it: in memory, in a
JSON file beside the token file under its own ``flock`` (not the token lock, which a login may
hold for seconds), or in one Redis hash updated by one Lua script (atomic on the server).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import math
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

import anyio

from ._errors import BudgetExhaustedError, TokenStoreError, excerpt
from ._exports import publish
from ._safe_file import Unusable, check_lock_file, open_regular, read_capped

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "BUCKETS",
    "BudgetBackend",
    "BudgetLedger",
    "BudgetStats",
    "FileBudget",
    "MemoryBudget",
    "RateBudget",
    "RateLimit",
    "RateLimits",
    "RedisBudget",
]

logger = logging.getLogger(__name__)

BUCKETS: Final = 60
FORMAT: Final = "tradovate-async/budget"
VERSION: Final = 1
HOUR: Final = 3600.0
_MAX_FILE: Final = 1 << 20


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` requests in any ``window`` seconds; for one ``endpoint`` (normalized,
    e.g. ``user/syncrequest``) or, with ``endpoint=None``, for every request."""

    limit: int
    window: float
    endpoint: str | None = None

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("a rate limit needs limit >= 1")
        if not self.window > 0 or not math.isfinite(self.window):
            raise ValueError("a rate limit needs a positive, finite window")

    @property
    def name(self) -> str:
        """The rule's key in the shared ledger: endpoint (or ``*``) and window."""
        return f"{self.endpoint or '*'}@{self.window:g}"

    @property
    def width(self) -> float:
        """Seconds per ledger bucket (the window split in equal buckets)."""
        return self.window / BUCKETS

    def applies_to(self, endpoint: str) -> bool:
        """Whether a request to ``endpoint`` counts against this rule."""
        return self.endpoint is None or self.endpoint == endpoint


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimits:
    """The local request budget of a user (shared through the token store).

    Defaults stay 10 % under Tradovate's published per-user limits (5,000 requests and 300
    ``user/syncrequest`` per rolling hour), leaving room for logins, renewals and a human on
    the web platform. ``burst`` optionally caps requests per ``burst_window`` seconds: the
    server answers bursts with ``p-ticket`` penalties (which the library waits out) at
    thresholds it deliberately does not publish (request-limits FAQ); the only published
    short-window figure is 1,000 requests a second, so there is no default cap.

    When the budget is short, a read waits for room up to ``max_read_wait`` seconds (session
    clock) and then raises :class:`~tradovate_async.BudgetExhaustedError`; a command raises it
    at once, unsent (an order sent late is worse than an order refused now).
    """

    per_hour: int = 4_500
    syncrequests_per_hour: int = 270
    burst: int | None = None
    burst_window: float = 1.0
    max_read_wait: float = 60.0
    extra: tuple[RateLimit, ...] = ()

    def rules(self) -> tuple[RateLimit, ...]:
        """Every rule of this budget, the optional burst cap included."""
        rules = [
            RateLimit(self.per_hour, HOUR),
            RateLimit(self.syncrequests_per_hour, HOUR, "user/syncrequest"),
            *self.extra,
        ]
        if self.burst is not None:
            rules.append(RateLimit(self.burst, self.burst_window))
        return tuple(rules)


@dataclasses.dataclass(slots=True)
class BudgetStats:
    """What the budget did: requests counted, waits, refusals, store trouble."""

    counted: int = 0
    waits: int = 0
    wait_seconds: float = 0.0
    refused: int = 0
    store_errors: int = 0


# --------------------------------------------------------------------------------------------
# The ledger (sans-I/O)


class BudgetLedger:
    """Request counts per rule and time bucket, for one user.

    ``take`` returns 0.0 and records the request when every rule that applies has room, else
    the seconds until it has (and records nothing, unless ``force``).
    """

    __slots__ = ("counts",)

    def __init__(self, counts: Mapping[str, Mapping[int, int]] | None = None) -> None:
        self.counts: dict[str, dict[int, int]] = {
            name: dict(buckets) for name, buckets in (counts or {}).items()
        }

    def _live(self, rule: RateLimit, now: float) -> dict[int, int]:
        """The rule's buckets that overlap the last window (older ones are dropped)."""
        buckets = self.counts.setdefault(rule.name, {})
        first = math.floor((now - rule.window) / rule.width)
        for index in [i for i in buckets if i < first]:
            del buckets[index]
        return buckets

    def wait_for(self, rules: Iterable[RateLimit], endpoint: str, now: float) -> float:
        """Seconds until one more ``endpoint`` request fits every rule (0.0: it fits now)."""
        wait = 0.0
        for rule in rules:
            if not rule.applies_to(endpoint):
                continue
            buckets = self._live(rule, now)
            excess = sum(buckets.values()) + 1 - rule.limit
            if excess <= 0:
                continue
            for index in sorted(buckets):
                excess -= buckets[index]
                if excess <= 0:
                    # Bucket ``index`` stops counting once the window starts after its end.
                    wait = max(wait, (index + 1) * rule.width + rule.window - now)
                    break
            else:  # pragma: no cover - excess <= sum, so the loop always breaks
                wait = max(wait, rule.window)
        return wait if wait == 0.0 else max(wait, 1e-3)

    def add(self, rules: Iterable[RateLimit], endpoint: str, now: float) -> None:
        for rule in rules:
            if rule.applies_to(endpoint):
                buckets = self._live(rule, now)
                index = math.floor(now / rule.width)
                buckets[index] = buckets.get(index, 0) + 1

    def take(
        self, rules: Sequence[RateLimit], endpoint: str, now: float, *, force: bool = False
    ) -> float:
        wait = self.wait_for(rules, endpoint, now)
        if wait == 0.0 or force:
            self.add(rules, endpoint, now)
        return wait

    def used(self, rule: RateLimit, now: float) -> int:
        return sum(self._live(rule, now).values())

    def to_record(self) -> dict[str, dict[str, int]]:
        return {
            name: {str(i): n for i, n in buckets.items()}
            for name, buckets in self.counts.items()
            if buckets
        }

    @classmethod
    def from_record(cls, record: object) -> BudgetLedger:
        """A ledger from :meth:`to_record` output; anything malformed counts as empty."""
        counts: dict[str, dict[int, int]] = {}
        if isinstance(record, dict):
            for name, buckets in record.items():
                if not isinstance(name, str) or not isinstance(buckets, dict):
                    continue
                good: dict[int, int] = {}
                for index, count in buckets.items():
                    if isinstance(index, str) and index.lstrip("-").isdigit():
                        if isinstance(count, int) and not isinstance(count, bool) and count > 0:
                            good[int(index)] = count
                counts[name] = good
        return cls(counts)


# --------------------------------------------------------------------------------------------
# Backends: where the ledger of a key lives


@runtime_checkable
class BudgetBackend(Protocol):
    """Shared storage of ledgers, one per key; ``take`` is atomic for every sharer of the
    backend. Failures of the medium raise :class:`~tradovate_async.TokenStoreError`."""

    async def take(
        self, key: str, rules: Sequence[RateLimit], endpoint: str, now: float, force: bool
    ) -> float: ...


class MemoryBudget:
    """Ledgers in this process (shared by every session given the same memory store)."""

    def __init__(self) -> None:
        self._ledgers: dict[str, BudgetLedger] = {}

    def __repr__(self) -> str:
        return f"MemoryBudget(keys={len(self._ledgers)})"

    async def take(
        self, key: str, rules: Sequence[RateLimit], endpoint: str, now: float, force: bool
    ) -> float:
        ledger = self._ledgers.setdefault(key, BudgetLedger())
        return ledger.take(rules, endpoint, now, force=force)


class FileBudget:
    """Ledgers in one JSON file (mode 0600), changed under an exclusive ``flock`` of
    ``<path>.lock`` held only for the read-modify-write. A crashed process loses its lock with
    its file descriptor; an unreadable file counts as empty (logged once) and is rewritten."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lock_timeout: float = 5.0,
        prepare: Callable[[], None] | None = None,
    ) -> None:
        import filelock

        self._path = Path(path)
        self._prepare = prepare  # makes missing directories the way the token store does
        self._lock_timeout = lock_timeout
        self._lock_path = self._path.with_name(self._path.name + ".lock")
        self._file_lock = filelock.FileLock(str(self._lock_path), mode=0o600, thread_local=False)
        self._guard = anyio.Lock()
        self._warned = False

    def __repr__(self) -> str:
        return f"FileBudget(path={str(self._path)!r})"

    async def take(
        self, key: str, rules: Sequence[RateLimit], endpoint: str, now: float, force: bool
    ) -> float:
        async with self._guard:
            with anyio.CancelScope(shield=True):  # never abandon a thread holding the flock
                wait = await anyio.to_thread.run_sync(
                    self._take_sync, key, rules, endpoint, now, force
                )
        return wait

    def _take_sync(
        self, key: str, rules: Sequence[RateLimit], endpoint: str, now: float, force: bool
    ) -> float:
        import filelock

        try:
            if self._prepare is not None:
                self._prepare()
            check_lock_file(self._lock_path)
            self._file_lock.acquire(timeout=self._lock_timeout)
        except filelock.Timeout:
            raise TokenStoreError(
                f"timed out after {self._lock_timeout:g} s waiting for the budget file lock"
            ) from None
        except OSError as exc:
            raise TokenStoreError(f"cannot lock the budget file: {_reason(exc)}") from exc
        try:
            keys = self._read()
            ledger = BudgetLedger.from_record(keys.get(key))
            wait = ledger.take(rules, endpoint, now, force=force)
            if wait == 0.0 or force:
                keys[key] = ledger.to_record()
                self._write(keys)
            return wait
        finally:
            with contextlib.suppress(Exception):
                self._file_lock.release()

    def _read(self) -> dict[str, Any]:
        """The ledgers in the file; a missing, foreign, planted or oversized file counts as
        empty (it is replaced by the next write, never followed or trusted)."""
        try:
            fd, info = open_regular(self._path)
            try:
                raw = read_capped(fd, info, _MAX_FILE)
            finally:
                os.close(fd)
        except FileNotFoundError:
            return {}
        except Unusable as exc:
            self._warn(str(exc))
            return {}
        except OSError as exc:
            raise TokenStoreError(f"cannot read the budget file: {_reason(exc)}") from exc
        try:
            document = json.loads(raw)
            if document.get("format") != FORMAT or document.get("version") != VERSION:
                raise ValueError("not a budget record")
            keys = document["keys"]
            if not isinstance(keys, dict):
                raise ValueError("no keys")
            return keys
        except (ValueError, KeyError, AttributeError, TypeError, RecursionError) as exc:
            self._warn(str(exc))
            return {}

    def _warn(self, why: str) -> None:
        if not self._warned:
            self._warned = True
            logger.warning("budget file %s unusable (%s); starting it afresh", self._path, why)

    def _write(self, keys: dict[str, Any]) -> None:
        """Through a fresh temporary file (O_EXCL, 0600) and ``os.replace``: a link planted at
        the path is replaced, never written through. No fsync: a budget lost in a crash only
        forgets the last requests' counts, and an fsync per request would be the cost."""
        payload = json.dumps(
            {"format": FORMAT, "version": VERSION, "keys": keys}, separators=(",", ":")
        ).encode()
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self._path.name}.", dir=self._path.parent)
        except OSError as exc:
            raise TokenStoreError(f"cannot write the budget file: {_reason(exc)}") from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
            os.replace(tmp, self._path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise TokenStoreError(f"cannot write the budget file: {_reason(exc)}") from exc


# One Lua script: read the hash, drop expired buckets, check every applicable rule, and add
# the request only if all have room (or it is forced). Atomic on the Redis server.
# KEYS[1]: the hash. ARGV: now, force, rule count, then per rule name, window, width, limit,
# applies. Returns the wait as a string (Lua numbers returned to Redis are truncated).
_TAKE: Final = """
local now = tonumber(ARGV[1])
local force = ARGV[2] == '1'
local n = tonumber(ARGV[3])
local raw = redis.call('HGETALL', KEYS[1])
local counts = {}
for i = 1, #raw, 2 do counts[raw[i]] = tonumber(raw[i + 1]) end
local wait = 0
local longest = 0
local adds = {}
for r = 0, n - 1 do
  local base = 4 + r * 5
  local name = ARGV[base]
  local window = tonumber(ARGV[base + 1])
  local width = tonumber(ARGV[base + 2])
  local limit = tonumber(ARGV[base + 3])
  local applies = ARGV[base + 4] == '1'
  if window + width > longest then longest = window + width end
  local first = math.floor((now - window) / width)
  local live = {}
  local total = 0
  for field, count in pairs(counts) do
    local fname, index = string.match(field, '^(.*)|(%-?%d+)$')
    if fname == name then
      index = tonumber(index)
      if index < first then
        redis.call('HDEL', KEYS[1], field)
      else
        table.insert(live, index)
        total = total + count
      end
    end
  end
  if applies then
    local excess = total + 1 - limit
    if excess > 0 then
      table.sort(live)
      for _, index in ipairs(live) do
        excess = excess - counts[name .. '|' .. index]
        if excess <= 0 then
          local w = (index + 1) * width + window - now
          if w > wait then wait = w end
          break
        end
      end
    end
    table.insert(adds, name .. '|' .. math.floor(now / width))
  end
end
if wait <= 0 or force then
  for _, field in ipairs(adds) do redis.call('HINCRBY', KEYS[1], field, 1) end
  redis.call('PEXPIRE', KEYS[1], math.ceil(longest * 1000))
end
if wait > 0 and wait < 0.001 then wait = 0.001 end
return tostring(wait)
"""


class RedisBudget:
    """Ledgers in Redis: one hash per key (``{prefix}:budget:{key}``), fields
    ``<rule>|<bucket>``, updated by one Lua script, expiring after the longest window."""

    def __init__(self, client: Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_TAKE)

    def __repr__(self) -> str:
        return f"RedisBudget(prefix={self._prefix!r})"

    async def take(
        self, key: str, rules: Sequence[RateLimit], endpoint: str, now: float, force: bool
    ) -> float:
        from redis.exceptions import RedisError

        args: list[str | float | int] = [repr(now), "1" if force else "0", len(rules)]
        for rule in rules:
            args += [
                rule.name,
                repr(rule.window),
                repr(rule.width),
                rule.limit,
                "1" if rule.applies_to(endpoint) else "0",
            ]
        try:
            raw = await self._script(keys=[f"{self._prefix}:budget:{key}"], args=args)
        except (RedisError, OSError) as exc:
            raise TokenStoreError(f"Redis budget update failed: {_reason(exc)}") from exc
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        try:
            return max(float(text), 0.0)
        except ValueError:
            raise TokenStoreError("Redis budget script answered nonsense") from None


# --------------------------------------------------------------------------------------------
# The session-facing budget


class RateBudget:
    """Takes one request from the user's shared budget before each request is sent.

    ``backend`` is the token store's budget (see ``budget_backend``); if it fails, the budget
    falls back to a ledger in this process for that request (logged, counted in
    ``stats.store_errors``): a store outage must not stop trading, and one process alone stays
    within the same limits.
    """

    def __init__(
        self,
        limits: RateLimits,
        backend: BudgetBackend,
        key: str,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        poll: float = 1.0,
    ) -> None:
        self.limits = limits
        self.rules = limits.rules()
        self.backend = backend
        self.key = key
        self.stats = BudgetStats()
        self._clock = clock
        self._sleep = sleep
        self._poll = poll
        self._fallback = MemoryBudget()

    def __repr__(self) -> str:
        return f"RateBudget(per_hour={self.limits.per_hour}, backend={self.backend!r})"

    async def _take(self, endpoint: str, now: float, force: bool) -> float:
        try:
            return await self.backend.take(self.key, self.rules, endpoint, now, force)
        except TokenStoreError as exc:
            self.stats.store_errors += 1
            logger.warning("shared request budget unavailable (%s); counting locally", exc)
            return await self._fallback.take(self.key, self.rules, endpoint, now, force)

    async def acquire(self, endpoint: str, *, command: bool) -> None:
        """Take one request for ``endpoint`` (normalized), waiting if a read must.

        Raises :class:`~tradovate_async.BudgetExhaustedError` for a command that does not fit
        now, and for a read that would not fit within ``max_read_wait``.
        """
        deadline: float | None = None
        waited = False
        while True:
            now = self._clock()
            wait = await self._take(endpoint, now, False)
            if wait == 0.0:
                self.stats.counted += 1
                return
            if deadline is None:
                deadline = now + self.limits.max_read_wait
            if command or now + wait > deadline:
                self.stats.refused += 1
                kind = "command" if command else "read"
                logger.debug("budget: %s %s refused, room again in %.1f s", kind, endpoint, wait)
                raise BudgetExhaustedError(
                    f"{endpoint} not sent: the user's request budget is spent "
                    f"(room again in {wait:.1f} s)",
                    retry_after=dt.timedelta(seconds=wait),
                )
            if not waited:
                waited = True
                self.stats.waits += 1
            logger.debug("budget: read %s waits %.2f s for room", endpoint, wait)
            pause = min(wait, self._poll)
            await self._sleep(pause)
            self.stats.wait_seconds += max(self._clock() - now, 0.0)

    async def record(self, endpoint: str) -> None:
        """Count a request that is sent whatever the budget says (socket authorization)."""
        await self._take(endpoint, self._clock(), True)
        self.stats.counted += 1


def budget_backend(store: object) -> BudgetBackend | None:
    """The shared budget a token store offers through its ``rate_budget()`` hook, if any."""
    hook = getattr(store, "rate_budget", None)
    if hook is None:
        return None
    backend = hook()
    return backend if isinstance(backend, BudgetBackend) else None


def _reason(exc: BaseException) -> str:
    text = excerpt(str(exc), 160)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


publish(globals())  # its public classes show tradovate_async.X (see _exports)
