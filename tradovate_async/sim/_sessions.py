"""Users' sessions and tokens in the simulator: logins, renewals, token checks, revocation,
the login and renewal limits and penalty tickets.

:class:`SessionDesk` is a base of :class:`~tradovate_async.sim._state.SimState` (the state
lock, clock and counters are shared, so it is a mixin over the same object rather than a
separate one); it was split out when ``SimState`` passed 400 lines (issue 8). Like the rest of
the state it does no I/O, and no method awaits while holding the lock.
"""

from __future__ import annotations

import collections
import dataclasses
import hmac
import itertools
import json
import logging
import secrets
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from ._market import iso_time
from ._reply import Reply
from ._types import DEFAULT_ERROR_TEXT, SimUser

__all__ = [
    "HOUR",
    "Rolling",
    "Session",
    "SessionDesk",
    "SessionRules",
    "TokenReason",
    "users_by_name",
]

logger = logging.getLogger(__name__)

HOUR = 3600.0
_MAX_FIELD = 64
_MAX_SEC = 8192
_TICKET_LIFETIME = HOUR

TokenReason = Literal["ok", "missing", "unknown", "revoked", "superseded", "expired", "wrong-kind"]


@dataclasses.dataclass(slots=True, eq=False)
class Session:
    """One server session: created by a login, extended by renewals, ended by revocation."""

    id: int
    user: SimUser
    created: float
    access_token: str
    md_token: str | None
    expires_at: float
    device_id: str | None
    revoked: bool = False


@dataclasses.dataclass(slots=True, eq=False)
class _Token:
    session: Session
    kind: Literal["access", "md"]
    expires_at: float
    superseded: bool = False


@dataclasses.dataclass(slots=True, eq=False)
class _Ticket:
    path: str
    issued: float
    p_time: float
    captcha: bool


class Rolling:
    """Event times per key in a rolling window, judged by the simulator clock."""

    def __init__(self, window: float) -> None:
        self._window = window
        self._times: dict[str, collections.deque[float]] = {}

    def count(self, key: str, now: float) -> int:
        times = self._times.get(key)
        if not times:
            return 0
        while times and times[0] <= now - self._window:
            times.popleft()
        return len(times)

    def add(self, key: str, now: float) -> None:
        self._times.setdefault(key, collections.deque(maxlen=10_000)).append(now)

    def clear(self) -> None:
        self._times.clear()


def users_by_name(users: Iterable[SimUser]) -> dict[str, SimUser]:
    """The simulated users by name; at least one, names and account ids unique."""
    by_name: dict[str, SimUser] = {}
    for user in users:
        if user.username in by_name:
            raise ValueError(f"duplicate simulated user {user.username!r}")
        by_name[user.username] = user
    if not by_name:
        raise ValueError("the simulator needs at least one user")
    account_ids = [a.id for u in by_name.values() for a in u.accounts]
    if len(account_ids) != len(set(account_ids)):
        raise ValueError("account ids must be unique across simulated users")
    return by_name


@dataclasses.dataclass(frozen=True)
class SessionRules:
    """How the simulated token endpoint treats logins and renewals (the
    :class:`~tradovate_async.sim.SimulatedTradovate` arguments of the same names)."""

    token_lifetime: float = 5400.0
    max_sessions_per_user: int = 2
    md_access_token: bool = True
    renew_invalidates_old: bool = True
    max_failed_logins: int | None = 5
    max_renewals_per_hour: int | None = 15
    strict_penalties: bool = True

    def __post_init__(self) -> None:
        if self.token_lifetime <= 0:
            raise ValueError("token_lifetime must be positive")
        if self.max_sessions_per_user < 1:
            raise ValueError("max_sessions_per_user must be at least 1")


class SessionDesk:
    """Sessions, tokens, login and renewal limits and penalty tickets (see the module notes)."""

    lock: threading.Lock
    users: dict[str, SimUser]

    def __init__(self, rules: SessionRules) -> None:
        self.rules = rules
        #: ``apiHosts`` of token answers (the real server sends them since 2026-10); None: none.
        self.api_hosts: dict[str, str] | None = None
        self._session_ids = itertools.count(1)
        self.sessions: dict[int, Session] = {}
        self._tokens: dict[str, _Token] = {}
        self._failed = Rolling(HOUR)
        self._renewed = Rolling(HOUR)
        self._tickets: dict[str, _Ticket] = {}
        self.logins = 0
        self.renewals = 0
        self.expired_rejections = 0
        self.rejected_tokens = 0

    def now(self) -> float:
        """The simulator's wall clock (``SimState.now``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------------ penalties

    def issue_penalty(self, path: str, p_time: float, captcha: bool) -> dict[str, Any]:
        """A new ticket for ``path``; the retry must echo it no earlier than ``p_time`` later."""
        ticket = secrets.token_urlsafe(24)
        with self.lock:
            self._tickets[ticket] = _Ticket(path, self.now(), p_time, captcha)
        payload: dict[str, Any] = {"p-ticket": ticket, "p-time": p_time}
        if captcha:
            payload["p-captcha"] = True
        logger.debug("penalty ticket %s... for %s (p-time %s)", ticket[:8], path, p_time)
        return payload

    def check_ticket(self, path: str, ticket: object) -> dict[str, Any] | None:
        """None when the request may proceed, else a fresh penalty payload.

        A ticket passes once, if it was issued for this path, is not a captcha ticket and
        ``p-time`` has passed. Without a ticket, a request passes unless ``strict_penalties``
        is on and a ticket for this path is still outstanding: the real server keys penalties
        to the caller's address, so ignoring a ticket does not make it go away.
        """
        with self.lock:
            now = self.now()
            for key in [k for k, t in self._tickets.items() if now - t.issued > _TICKET_LIFETIME]:
                del self._tickets[key]
            if ticket is None:
                pending = [t for t in self._tickets.values() if t.path == path]
                if not (self.rules.strict_penalties and pending):
                    return None
                last = max(pending, key=lambda t: t.issued)
                p_time, captcha = last.p_time, last.captcha
                why = "request without the outstanding p-ticket"
            else:
                found = self._tickets.get(ticket) if isinstance(ticket, str) else None
                if found is not None and found.path == path and not found.captcha:
                    if now - found.issued >= found.p_time:
                        for key in [k for k, t in self._tickets.items() if t.path == path]:
                            del self._tickets[key]
                        return None
                    why = "retry before p-time elapsed"
                else:
                    why = "unknown or captcha p-ticket"
                p_time = found.p_time if found else 1.0
                captcha = found.captcha if found else False
                if found is not None:
                    del self._tickets[ticket]  # type: ignore[arg-type]
        logger.debug("penalising %s again: %s", path, why)
        return self.issue_penalty(path, p_time, captcha)

    # -------------------------------------------------------------------------- tokens

    def _new_token(self, session: Session, kind: Literal["access", "md"]) -> str:
        token = secrets.token_urlsafe(48)
        self._tokens[token] = _Token(session, kind, session.expires_at)
        return token

    def _live_sessions(self, username: str, now: float) -> list[Session]:
        return [
            s
            for s in self.sessions.values()
            if s.user.username == username and not s.revoked and s.expires_at > now
        ]

    def user_sessions(self, username: str) -> int:
        with self.lock:
            return len(self._live_sessions(username, self.now()))

    def check_token(
        self, token: str | None, *, accept: tuple[str, ...] = ("access",)
    ) -> tuple[Session | None, TokenReason]:
        """The session of a usable token, or the reason it is refused (and count refusals)."""
        with self.lock:
            reason: TokenReason
            entry = self._tokens.get(token) if token else None
            if not token:
                reason = "missing"
            elif entry is None:
                reason = "unknown"
            elif entry.session.revoked:
                reason = "revoked"
            elif entry.kind not in accept:
                reason = "wrong-kind"
            elif entry.superseded and self.rules.renew_invalidates_old:
                reason = "superseded"
            elif entry.expires_at <= self.now():
                reason = "expired"
            else:
                return entry.session, "ok"
            if reason == "expired":
                self.expired_rejections += 1
            else:
                self.rejected_tokens += 1
            return None, reason

    def session_expired(self, session: Session) -> bool:
        with self.lock:
            return session.expires_at <= self.now()

    def revoke(self, username: str | None) -> tuple[int, ...]:
        """End every session of ``username`` (or all); their tokens stop working at once."""
        with self.lock:
            ended = []
            for session in self.sessions.values():
                if not session.revoked and (username is None or session.user.username == username):
                    session.revoked = True
                    ended.append(session.id)
        logger.info("revoked %d session(s) of %s", len(ended), username or "all users")
        return tuple(ended)

    def _token_response(self, session: Session) -> dict[str, Any]:
        user = session.user
        body: dict[str, Any] = {
            "accessToken": session.access_token,
            "expirationTime": iso_time(session.expires_at),
            "userStatus": "Active",
            "userId": user.user_id,
            "name": user.username,
            "hasLive": user.has_live,
            "hasFunded": False,
            "hasMarketData": True,
            "outdatedTaC": user.outdated_tac,
        }
        if session.md_token is not None:
            body["mdAccessToken"] = session.md_token
        if self.api_hosts is not None:
            body["apiHosts"] = dict(self.api_hosts)
        return body

    # --------------------------------------------------------------------------- auth

    def access_token_request(self, raw: bytes) -> Reply:
        """``POST auth/accesstokenrequest``: validate, apply limits, start a session."""
        try:
            body = json.loads(raw)
        except ValueError:
            return Reply.plain(400, "Request body is not valid JSON", "bad-request")
        if not isinstance(body, dict):
            return Reply.plain(400, "Request body must be a JSON object", "bad-request")
        problem = _login_problem(body)
        if problem:
            return Reply.plain(400, problem, "bad-request")
        name: str = body["name"]
        device = body.get("deviceId")
        revoked: list[int] = []
        with self.lock:
            now = self.now()
            if self.rules.max_failed_logins is not None and (
                self._failed.count(name, now) >= self.rules.max_failed_logins
            ):
                self._failed.add(name, now)  # repeated attempts extend the lockout
                return Reply.plain(429, "", "locked-out")
            user = self.users.get(name)
            if user is None or not _credentials_match(user, body):
                self._failed.add(name, now)
                return Reply(200, payload={"errorText": DEFAULT_ERROR_TEXT}, reason="credentials")
            live = sorted(self._live_sessions(name, now), key=lambda s: s.created)
            while len(live) >= self.rules.max_sessions_per_user:
                oldest = live.pop(0)
                oldest.revoked = True
                revoked.append(oldest.id)
            session = Session(
                id=next(self._session_ids),
                user=user,
                created=now,
                access_token="",
                md_token=None,
                expires_at=now + self.rules.token_lifetime,
                device_id=device if isinstance(device, str) else None,
            )
            session.access_token = self._new_token(session, "access")
            if self.rules.md_access_token:
                session.md_token = self._new_token(session, "md")
            self.sessions[session.id] = session
            self.logins += 1
            payload = self._token_response(session)
        logger.info(
            "login of %s: session %d, token %s..., %d older session(s) evicted",
            name,
            session.id,
            session.access_token[:8],
            len(revoked),
        )
        return Reply(200, payload=payload, revoked=tuple(revoked))

    def renew(self, session: Session) -> Reply:
        """``GET auth/renewaccesstoken`` for an already validated session: new tokens, same
        session, expiry moved to now + lifetime."""
        with self.lock:
            now = self.now()
            name = session.user.username
            if (
                self.rules.max_renewals_per_hour is not None
                and self._renewed.count(name, now) >= self.rules.max_renewals_per_hour
            ):
                self._renewed.add(name, now)
                return Reply.plain(429, "", "renewal-limit")
            self._renewed.add(name, now)
            for token in (session.access_token, session.md_token):
                if token is not None and token in self._tokens:
                    self._tokens[token].superseded = True
            session.expires_at = now + self.rules.token_lifetime
            session.access_token = self._new_token(session, "access")
            if session.md_token is not None:
                session.md_token = self._new_token(session, "md")
            self.renewals += 1
            payload = self._token_response(session)
        logger.info("renewed session %d: token %s...", session.id, session.access_token[:8])
        return Reply.json(payload)


def _login_problem(body: Mapping[str, Any]) -> str | None:
    """Why a token request body is malformed (HTTP 400), or None."""
    for field in ("name", "password", "appId", "appVersion", "sec"):
        value = body.get(field)
        limit = _MAX_SEC if field == "sec" else _MAX_FIELD
        if not isinstance(value, str) or not value:
            return f"Missing or invalid field: {field}"
        if len(value) > limit:
            return f"Field too long: {field}"
    cid = body.get("cid")
    if isinstance(cid, bool) or not isinstance(cid, int):
        return "Missing or invalid field: cid"
    device = body.get("deviceId")
    if device is not None and (not isinstance(device, str) or len(device) > _MAX_FIELD):
        return "Invalid field: deviceId"
    return None


def _credentials_match(user: SimUser, body: Mapping[str, Any]) -> bool:
    """Constant-time comparison of the secret fields; appId and cid must match too."""
    ok = hmac.compare_digest(user.password.encode(), str(body["password"]).encode())
    ok &= hmac.compare_digest(user.sec.encode(), str(body["sec"]).encode())
    return ok and body["appId"] == user.app_id and body["cid"] == user.cid
