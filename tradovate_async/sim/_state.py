"""The simulator's server-side state and business rules, free of any I/O.

Everything the REST and WebSocket front ends share lives here: users, sessions and tokens,
rolling rate limits, penalty tickets, scripted faults, orders and the request log. One
``threading.Lock`` guards it all, because the server thread mutates it while tests read
counters and inject faults from their own threads. No method awaits while holding the lock.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from .._catalogue import Catalogue, load_catalogue
from ._commands import install as install_commands
from ._entities import EntityStore
from ._orders import MarketPrices, OrderEngine, PriceSource
from ._props import PropsStore
from ._reply import Reply
from ._routes import Routes
from ._sessions import HOUR, Rolling, Session, SessionDesk, SessionRules, users_by_name
from ._types import Fault, RequestRecord, SimUser

__all__ = ["Reply", "Session", "SimState", "normalize_path"]

logger = logging.getLogger(__name__)

_LOG_LIMIT = 100_000


def normalize_path(path: str) -> str:
    """``/v1/Auth/AccessTokenRequest`` -> ``auth/accesstokenrequest``: the server treats paths
    case-insensitively (official examples use both casings), so faults and counters do too."""
    text = path.strip().strip("/").lower()
    if text.startswith("v1/"):
        text = text[3:]
    return text


def _sync_lists(catalogue: Catalogue) -> dict[str, str]:
    """``SyncMessage`` list fields and the entity each holds: ``{"cashBalances": "cashBalance"}``."""
    by_model = {spec.model: name for name, spec in catalogue.entities.items() if spec.model}
    out = {}
    for field in catalogue.types["SyncMessage"]:
        kind = field.kind
        if kind["kind"] == "list" and kind["of"]["kind"] == "ref":
            entity = by_model.get(kind["of"]["name"])
            if entity is not None:
                out[field.wire] = entity
    return out


@dataclasses.dataclass(slots=True, eq=False)
class _QueuedFault:
    fault: Fault
    transport: Literal["rest", "ws"] | None


class SimState(SessionDesk):
    """Users, limits, faults, orders and counters of one simulator; sessions and tokens come
    from :class:`SessionDesk`."""

    def __init__(
        self,
        *,
        users: Iterable[SimUser],
        rules: SessionRules,
        clock: Callable[[], float],
        request_log_limit: int = _LOG_LIMIT,
        max_requests_per_hour: int | None = None,
        max_syncrequests_per_hour: int | None = None,
        prices: PriceSource | None = None,
    ) -> None:
        self.lock = threading.Lock()
        self.users = users_by_name(users)
        super().__init__(rules)
        self._clock = clock
        self._offset = 0.0
        self._faults: dict[str, collections.deque[_QueuedFault]] = {}
        self.catalogue = load_catalogue()
        self.store = EntityStore(self.catalogue, self.users.values(), self.now())
        self.routes = Routes(self.catalogue, self.store)
        install_commands(self.routes)
        self.engine = OrderEngine(self.store, prices or MarketPrices.default(self.now()))
        self.engine.install(self.routes)  # orders fill, move positions and cash
        self.max_requests = max_requests_per_hour
        self.max_syncrequests = max_syncrequests_per_hour
        self._requests = Rolling(HOUR)
        self._locked_until: dict[str, float] = {}
        self.rate_limited = 0
        self._sync_lists = _sync_lists(self.catalogue)
        #: entities scripted by tests (``SimulatedTradovate.push_props``)
        self.scripted = PropsStore()

        self.log: collections.deque[RequestRecord] = collections.deque(maxlen=request_log_limit)
        self._counts: collections.Counter[tuple[str, int]] = collections.Counter()

    # ----------------------------------------------------------------- clock and bookkeeping

    def now(self) -> float:
        """The simulator's wall clock: the injected clock plus every ``advance_clock``."""
        return self._clock() + self._offset

    def advance(self, seconds: float) -> None:
        with self.lock:
            self._offset += seconds

    @property
    def offset(self) -> float:
        with self.lock:
            return self._offset

    def set_offset(self, seconds: float) -> None:
        with self.lock:
            self._offset = seconds

    def record(self, record: RequestRecord) -> None:
        with self.lock:
            self.log.append(record)
            self._counts[(record.path, record.status)] += 1

    def count(self, path: str, status: int | None) -> int:
        key = normalize_path(path)
        with self.lock:
            return sum(
                n
                for (p, s), n in self._counts.items()
                if (key == "*" or p == key) and (status is None or s == status)
            )

    def reset_counters(self) -> None:
        with self.lock:
            self.log.clear()
            self._counts.clear()
            self.logins = self.renewals = self.expired_rejections = self.rejected_tokens = 0

    def reset_limits(self) -> None:
        with self.lock:
            self._failed.clear()
            self._renewed.clear()
            self._tickets.clear()
            self._requests.clear()
            self._locked_until.clear()

    def _rate_limited(self, username: str, endpoint: str, now: float) -> bool:
        """Whether the user's hourly request limits refuse this request (call under the lock).

        Past a limit the user is locked out for a rolling hour, and every request made while
        locked out extends it (partner rate-limits page); the refused requests count too.
        """
        if self.max_requests is None and self.max_syncrequests is None:
            return False
        locked = self._locked_until.get(username)
        refused = locked is not None and now < locked
        if not refused:
            sync_key = f"{username}|user/syncrequest"
            over_all = (
                self.max_requests is not None
                and self._requests.count(username, now) >= self.max_requests
            )
            over_sync = (
                endpoint == "user/syncrequest"
                and self.max_syncrequests is not None
                and self._requests.count(sync_key, now) >= self.max_syncrequests
            )
            refused = over_all or over_sync
            self._requests.add(username, now)
            if endpoint == "user/syncrequest":
                self._requests.add(sync_key, now)
        if refused:
            self._locked_until[username] = now + HOUR
            self.rate_limited += 1
        return refused

    def tick(self) -> list[tuple[str, dict[str, Any]]]:
        """Let the market move to now: resting orders fill; the events to push."""
        with self.lock:
            return self.engine.advance(self.now())

    # ------------------------------------------------------------------------- faults

    def inject(self, path: str, fault: Fault, times: int, transport: str | None) -> None:
        if times < 1:
            raise ValueError("times must be at least 1")
        if transport not in (None, "rest", "ws"):
            raise ValueError("transport must be 'rest', 'ws' or None")
        key = normalize_path(path) or "*"
        with self.lock:
            queue = self._faults.setdefault(key, collections.deque())
            queue.extend(_QueuedFault(fault, transport) for _ in range(times))  # type: ignore[arg-type]
        logger.debug("fault %s queued %d time(s) for %s", fault.kind, times, key)

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def take_fault(self, path: str, transport: Literal["rest", "ws"]) -> Fault | None:
        """The next queued fault for ``path`` (exact path first, then ``*``), consumed."""
        with self.lock:
            for key in (path, "*"):
                queue = self._faults.get(key)
                if not queue:
                    continue
                for item in queue:
                    if item.transport in (None, transport):
                        queue.remove(item)
                        return item.fault
            return None

    # -------------------------------------------------------------------------- entities

    def me(self, user: SimUser) -> dict[str, Any]:
        return {
            "userId": user.user_id,
            "name": user.username,
            "fullName": user.full_name,
            "email": user.email,
            "emailVerified": True,
            "isTrial": False,
        }

    def knows(self, path: str) -> bool:
        """Whether ``path`` is an endpoint the simulator serves to a bearer token."""
        return path in ("auth/me", "user/syncrequest") or self.routes.knows(path)

    def sync_snapshot(self, user: SimUser, body: Any) -> Reply:
        """``user/syncrequest``: every entity list of a ``SyncMessage`` the user may see,
        filtered by the requested ``users``/``accounts`` ids and, when given, ``entityTypes``."""
        if body is not None and not isinstance(body, dict):
            return Reply.plain(400, "Request body must be a JSON object")
        spec: Mapping[str, Any] = body or {}
        wanted_users = spec.get("users")
        wanted_accounts = spec.get("accounts")
        include_user = not isinstance(wanted_users, list) or user.user_id in wanted_users
        accounts = {a.id for a in user.accounts}
        if isinstance(wanted_accounts, list):
            accounts &= {a for a in wanted_accounts if isinstance(a, int)}
        elif not include_user:
            accounts = set()
        types = spec.get("entityTypes")
        wanted = {str(t).lower() for t in types} if isinstance(types, list) and types else None
        snapshot: dict[str, Any] = {}
        with self.lock:
            for key, entity in self._sync_lists.items():
                if wanted is not None and entity.lower() not in wanted:
                    continue
                records = []
                for record in self.store.visible(user, entity):
                    account = self.store.account_of(entity, record)
                    owner = self.store.owner(entity, record)
                    if account is not None:
                        keep = account in accounts
                    else:
                        keep = owner is None or include_user
                    if keep:
                        records.append(dict(record))
                snapshot[key] = records
        # Entities scripted with push_props join the snapshot under their SyncMessage key.
        for key, items in self.scripted.snapshot(user.username).items():
            if wanted is None or key in snapshot:
                snapshot.setdefault(key, []).extend(items)
        return Reply.json(snapshot)

    def orders(self, user: SimUser) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(o) for o in self.store.visible(user, "order")]

    def api(self, endpoint: str, query: Mapping[str, str], body: Any, session: Session) -> Reply:
        """Entity operations and commands shared by REST and the trading socket (auth
        endpoints excluded), served from the catalogue routes."""
        user = session.user
        with self.lock:
            limited = self._rate_limited(user.username, endpoint, self.now())
        if limited:
            return Reply.plain(429, "", "rate-limited")
        moved = self.tick()  # the market moved since the last look
        if endpoint == "auth/me":
            reply = Reply.json(self.me(user))
        elif endpoint == "user/syncrequest":
            reply = self.sync_snapshot(user, body)
        else:
            with self.lock:
                served = self.routes.serve(endpoint, query, body, user, self.now())
            reply = served if served is not None else Reply.plain(404, f"Not found: {endpoint}")
        reply.events[:0] = moved
        return reply
