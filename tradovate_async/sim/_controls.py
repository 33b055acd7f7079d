"""What tests read from and script into a running simulator: counters and the request log,
faults, sessions and entities, sockets.

:class:`SimControls` is a base of :class:`~tradovate_async.sim.SimulatedTradovate`, which
keeps construction, the lifecycle, URLs and clocks; split out when the simulator class passed
400 lines (issue 8). The reference shows these methods on ``SimulatedTradovate`` itself. Control
methods are called from other threads: they take the state lock for data and hand socket work
to the server loop, returning once it is done.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Iterable
from typing import Any, Literal

from ._serving import ServerThread
from ._state import SimState
from ._types import ConnectionInfo, Fault, RequestRecord
from ._ws import SocketHub

__all__ = ["SimControls"]


class SimControls:
    """Counters, faults, sessions, entities and sockets of a simulator (see the module notes)."""

    _state: SimState
    _hub: SocketHub
    _serving: ServerThread

    # ------------------------------------------------------------------------ counters

    def count(self, path: str, *, status: int | None = None) -> int:
        """Requests answered for ``path`` (any casing, with or without ``/v1``; ``*`` = all)."""
        return self._state.count(path, status)

    @property
    def token_requests(self) -> int:
        """``auth/accesstokenrequest`` calls, whatever their outcome."""
        return self.count("auth/accesstokenrequest")

    @property
    def logins(self) -> int:
        """Successful logins (each one a new server session)."""
        with self._state.lock:
            return self._state.logins

    @property
    def renewals(self) -> int:
        """Successful ``/auth/renewaccesstoken`` calls."""
        with self._state.lock:
            return self._state.renewals

    @property
    def expired_token_rejections(self) -> int:
        """Requests and authorizations refused because the token had expired."""
        with self._state.lock:
            return self._state.expired_rejections

    @property
    def invalid_token_rejections(self) -> int:
        """Refusals for any other token reason: missing, unknown, revoked, superseded."""
        with self._state.lock:
            return self._state.rejected_tokens

    @property
    def request_log(self) -> list[RequestRecord]:
        """The requests answered (the newest ``request_log_limit``)."""
        with self._state.lock:
            return list(self._state.log)

    def reset_counters(self) -> None:
        """Clear the request log and all counters (sessions, limits and faults stay)."""
        self._state.reset_counters()
        with self._state.lock:
            self._hub.total = 0
            self._hub.authorizations = 0

    def reset_limits(self) -> None:
        """Forget failed logins, renewals and penalty tickets (lift every lockout)."""
        self._state.reset_limits()

    # ------------------------------------------------------------------------- faults

    def inject(
        self,
        path: str,
        fault: Fault,
        times: int = 1,
        *,
        transport: Literal["rest", "ws"] | None = None,
    ) -> None:
        """Apply ``fault`` to the next ``times`` requests to ``path`` (``*``: any path),
        first-in first-out per path; an exact path is served before ``*``. WebSocket requests
        match by endpoint (``authorize`` included); ``transport`` limits a fault to REST or
        WebSocket requests."""
        self._state.inject(path, fault, times, transport)

    def clear_faults(self) -> None:
        """Forget every fault not yet served."""
        self._state.clear_faults()

    # ----------------------------------------------------------------------- sessions

    def revoke_tokens(self, username: str | None = None) -> None:
        """End every session of ``username`` (or of everyone): tokens get 401, their open
        sockets are closed. Returns once the sockets are closed."""
        ended = self._state.revoke(username)
        if ended and self._serving.started:
            self._serving.run(self._hub.close_sessions(ended))

    def user_sessions(self, username: str) -> int:
        """Sessions of ``username`` that are neither revoked nor expired."""
        return self._state.user_sessions(username)

    def orders(self, username: str | None = None) -> list[dict[str, Any]]:
        """Orders placed by ``username`` (default: the first user)."""
        return self.entities("order", username)

    def cash_balance(self, account_id: int) -> dict[str, Any]:
        """The ``cashBalance`` record of an account (fills book realized profit into it)."""
        with self._state.lock:
            record = self._state.store.get("cashBalance", account_id)
            if record is None:
                raise KeyError(f"no cash balance for account {account_id}")
            return dict(record)

    @property
    def rate_limited(self) -> int:
        """Requests refused with 429 by ``max_requests_per_hour``/``max_syncrequests_per_hour``."""
        with self._state.lock:
            return self._state.rate_limited

    def entities(self, entity: str, username: str | None = None) -> list[dict[str, Any]]:
        """Copies of the records of ``entity`` (a catalogue name: ``position``,
        ``cashBalance``...) that ``username`` (default: the first user) may see."""
        name = username or next(iter(self._state.users))
        user = self._state.users[name]
        with self._state.lock:
            return [dict(r) for r in self._state.store.visible(user, entity)]

    # ---------------------------------------------------------------------- WebSockets

    @property
    def api_hosts(self) -> dict[str, str] | None:
        """The ``apiHosts`` object token answers carry (bare ``host[:port]`` values per purpose:
        ``live``, ``demo``, ``mdLive`` ...), or None for answers without one."""
        with self._state.lock:
            hosts = self._state.api_hosts
            return dict(hosts) if hosts is not None else None

    @api_hosts.setter
    def api_hosts(self, hosts: dict[str, str] | None) -> None:
        with self._state.lock:
            self._state.api_hosts = dict(hosts) if hosts is not None else None

    @property
    def authorize_delay(self) -> float:
        """Seconds to wait before answering ``authorize`` (to test client timeouts)."""
        return self._hub.authorize_delay

    @authorize_delay.setter
    def authorize_delay(self, value: float) -> None:
        self._hub.authorize_delay = float(value)

    def ws_connections(self, kind: str | None = None) -> list[ConnectionInfo]:
        """Snapshots of the open sockets (of ``kind``, if given)."""
        with self._state.lock:
            return [
                c.info()
                for c in sorted(self._hub.conns.values(), key=lambda c: c.id)
                if kind is None or c.kind == kind
            ]

    @property
    def ws_total_connections(self) -> int:
        """Sockets accepted since start (or the last ``reset_counters``)."""
        with self._state.lock:
            return self._hub.total

    @property
    def ws_authorizations(self) -> int:
        """Successful socket ``authorize`` requests."""
        with self._state.lock:
            return self._hub.authorizations

    def drop_sockets(self, kind: str | None = None) -> int:
        """Abort open sockets without a close frame; how many were dropped."""
        return self._serving.run(self._hub.drop(kind))

    def send_shutdown(
        self, reason_code: str = "Maintenance", reason: str | None = None, kind: str | None = None
    ) -> int:
        """Send a ``shutdown`` event, then close (``c[1001,...]`` and close code 1001)."""
        return self._serving.run(self._hub.shutdown(reason_code, reason, kind))

    def send_raw(self, frame: str, kind: str | None = None) -> int:
        """Send any text frame to every open socket (of ``kind``); how many got it."""
        return self._serving.run(self._hub.send_raw(frame, kind))

    async def push_props(
        self,
        username: str,
        events: Iterable[tuple[str, str, dict[str, Any]]],
        *,
        per_frame: int = 50,
    ) -> int:
        """Apply ``(entityType, eventType, entity)`` events to the user's account state (later
        snapshots include them) and push them as ``props`` events, ``per_frame`` to an ``a``
        frame, to the user's synced trading sockets connected now. Returns frames sent."""
        props = self._state.scripted.apply(username, events)
        frames = [
            "a" + json.dumps([{"e": "props", "d": d} for d in props[i : i + per_frame]])
            for i in range(0, len(props), per_frame)
        ]
        loop = self._serving.loop
        if loop is None:
            raise RuntimeError("the simulator is not running")
        future = asyncio.run_coroutine_threadsafe(self._hub.send_to_user(username, frames), loop)
        return await asyncio.wrap_future(future)

    def start_md_burst(self, count: int, batch: int = 1) -> concurrent.futures.Future[int]:
        """Start sending ``count`` md frames of ``batch`` quotes to every authorized md socket
        as fast as the sockets take them. Returns at once with a future of the frames sent:
        waiting in the thread that also reads the sockets would deadlock."""
        if count < 0 or batch < 1:
            raise ValueError("count must be >= 0 and batch >= 1")
        loop = self._serving.loop
        if loop is None:
            raise RuntimeError("the simulator is not running")
        return asyncio.run_coroutine_threadsafe(self._hub.burst(count, batch), loop)

    async def md_burst(self, count: int, batch: int = 1) -> int:
        """``start_md_burst`` for async code: waits without blocking the caller's loop."""
        return await asyncio.wrap_future(self.start_md_burst(count, batch))
