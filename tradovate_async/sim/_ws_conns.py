"""The simulator's open sockets: one :class:`Conn` per socket, and the actions the server
takes on them by itself (drop, shutdown, revocation, props pushes, market ticks, md bursts,
closing all).

:class:`ConnActions` is a base of :class:`~tradovate_async.sim._ws.SocketHub`, which serves
the protocol (reading frames, answering requests); split out when the hub passed 400 lines
(issue 8). Everything runs on the simulator's own event loop; fields that tests read from
other threads are only changed while holding the state lock.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Literal

from starlette.websockets import WebSocket, WebSocketDisconnect

from ._market import QuoteFeed
from ._md import MdConnState
from ._state import Reply, Session, SimState
from ._types import ConnectionInfo

__all__ = ["QUOTE", "Conn", "ConnActions", "Kind", "frame", "response"]

logger = logging.getLogger(__name__)

Kind = Literal["trading", "md", "replay"]
QUOTE = "md/subscribeQuote"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def frame(*messages: dict[str, Any]) -> str:
    """An ``a[...]`` frame holding responses and/or events."""
    return "a" + _dumps(list(messages))


def response(rid: int, status: int, data: Any = None, *, has_data: bool = True) -> dict[str, Any]:
    message: dict[str, Any] = {"s": status, "i": rid}
    if has_data and data is not None:
        message["d"] = data
    return message


class Conn:
    """One open socket and what the simulator knows about it."""

    def __init__(self, ident: int, kind: Kind, websocket: WebSocket) -> None:
        self.id = ident
        self.kind: Kind = kind
        self.ws = websocket
        self.client: tuple[str, int] | None = (
            (websocket.client.host, websocket.client.port) if websocket.client else None
        )
        self.opened = time.monotonic()
        self.last_heartbeat = self.opened
        self.last_sent = self.opened
        self.authorized = False
        self.session: Session | None = None
        self.token_prefix: str | None = None
        self.heartbeats: collections.deque[float] = collections.deque(maxlen=1000)
        self.heartbeat_count = 0
        self.subs: set[tuple[str, str]] = set()
        self.requests: collections.deque[str] = collections.deque(maxlen=1000)
        self.request_count = 0
        self.synced = False
        self.md = MdConnState()
        self.closing = False
        self.closed = False
        self.done = asyncio.Event()
        self.send_lock = asyncio.Lock()
        self.tasks: set[asyncio.Task[None]] = set()
        self.outbox: list[str] = []

    @property
    def username(self) -> str | None:
        return self.session.user.username if self.session else None

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def send(self, text: str, *, final: bool = False) -> bool:
        """Send one text frame; False once the socket is gone or closing (except the
        ``final`` frame of a close, so nothing slips in after ``c[...]``)."""
        if self.closed or (self.closing and not final):
            return False
        async with self.send_lock:
            try:
                await self.ws.send_text(text)
            except (OSError, RuntimeError, WebSocketDisconnect):
                self.closed = True
                self.done.set()
                return False
        self.last_sent = time.monotonic()
        return True

    async def close(self, code: int, reason: str, *, c_frame: bool = True) -> None:
        """Server-initiated close: a ``c[code,"reason"]`` frame, then a WebSocket close."""
        if self.closed or self.closing:
            return
        self.closing = True
        if c_frame:
            await self.send("c" + _dumps([code, reason]), final=True)
        self.closed = True
        async with self.send_lock:
            with contextlib.suppress(OSError, RuntimeError, WebSocketDisconnect):
                await self.ws.close(code, reason)
        self.done.set()
        logger.debug("socket %d closed by server: %d %s", self.id, code, reason)

    def info(self) -> ConnectionInfo:
        """Snapshot; call with the state lock held."""
        return ConnectionInfo(
            id=self.id,
            kind=self.kind,
            authorized=self.authorized,
            user=self.username,
            opened_at=self.opened,
            heartbeats=tuple(self.heartbeats),
            heartbeat_count=self.heartbeat_count,
            subscriptions=frozenset(self.subs),
            requests=tuple(self.requests),
            request_count=self.request_count,
            synced=self.synced,
            token_prefix=self.token_prefix,
        )


class ConnActions:
    """What the server does to its sockets unprompted (see the module notes)."""

    state: SimState
    conns: dict[int, Conn]
    feed: QuoteFeed
    stopping: asyncio.Event
    _abort_client: Callable[[tuple[str, int] | None], bool]

    def select(self, kind: str | None) -> list[Conn]:
        if kind not in (None, "trading", "md", "replay"):
            raise ValueError("kind must be 'trading', 'md', 'replay' or None")
        with self.state.lock:
            return [c for c in self.conns.values() if kind is None or c.kind == kind]

    async def _settle(self, conns: Iterable[Conn]) -> None:
        waits = [c.done.wait() for c in conns]
        if waits:
            await asyncio.wait_for(asyncio.gather(*waits), timeout=5.0)

    async def abort(self, conn: Conn) -> None:
        """Cut the TCP connection without a close frame (code 1011 if that is impossible)."""
        if not self._abort_client(conn.client):
            await conn.close(1011, "Internal error", c_frame=False)
        conn.closed = True
        conn.done.set()

    async def drop(self, kind: str | None) -> int:
        conns = self.select(kind)
        for conn in conns:
            await self.abort(conn)
        await self._settle(conns)
        logger.info("dropped %d socket(s)", len(conns))
        return len(conns)

    async def shutdown(self, reason_code: str, reason: str | None, kind: str | None) -> int:
        conns = self.select(kind)
        data: dict[str, Any] = {"reasonCode": reason_code}
        if reason is not None:
            data["reason"] = reason
        event = frame({"e": "shutdown", "d": data})

        async def one(conn: Conn) -> None:
            if await conn.send(event):
                await conn.close(1001, reason_code)

        await asyncio.gather(*(one(c) for c in conns))
        await self._settle(conns)
        logger.info("shutdown (%s) sent to %d socket(s)", reason_code, len(conns))
        return len(conns)

    async def send_raw(self, text: str, kind: str | None) -> int:
        sent = await asyncio.gather(*(c.send(text) for c in self.select(kind)))
        return sum(sent)

    async def close_sessions(self, session_ids: Iterable[int]) -> int:
        ids = set(session_ids)
        conns = [c for c in self.select(None) if c.session is not None and c.session.id in ids]
        await asyncio.gather(*(c.close(1008, "Access token revoked") for c in conns))
        await self._settle(conns)
        return len(conns)

    async def push_events(self, events: Iterable[tuple[str, dict[str, Any]]]) -> None:
        sends: list[Awaitable[bool]] = []
        for username, event in events:
            text = frame({"e": "props", "d": event})
            sends.extend(
                c.send(text)
                for c in self.select(None)
                if c.kind != "md" and c.authorized and c.synced and c.username == username
            )
        await asyncio.gather(*sends)

    async def send_to_user(self, username: str, frames: list[str]) -> int:
        """Send frames, in order, to the user's synced trading sockets; frames sent."""
        conns = [
            c
            for c in self.select(None)
            if c.kind != "md" and c.authorized and c.synced and c.username == username
        ]
        sent = 0
        for text in frames:
            for conn in conns:
                sent += await conn.send(text)
        return sent

    async def run_market(self, interval: float) -> None:
        """Every ``interval`` seconds let the order engine catch up with the price path and
        push what it did (fills of resting orders, expiries) to the synced trading sockets."""
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), interval)
            try:
                events = self.state.tick()
                if events:
                    await self.push_events(events)
            except Exception:  # pragma: no cover - a bug must not stop the market
                logger.exception("order engine tick failed")

    async def apply(self, reply: Reply) -> None:
        """Side effects of a reply: close revoked sessions' sockets, push props events."""
        if reply.revoked:
            await self.close_sessions(reply.revoked)
        if reply.events:
            await self.push_events(reply.events)

    async def burst(self, count: int, batch: int) -> int:
        """``count`` md frames of ``batch`` quotes to every authorized md socket, unthrottled."""
        conns = [c for c in self.select("md") if c.authorized]

        async def one(conn: Conn) -> int:
            with self.state.lock:
                symbols = sorted(s for e, s in conn.subs if e == QUOTE) or ["ESZ5"]
            sent = 0
            for _ in range(count):
                now = self.state.now()
                quotes = [self.feed.quote(symbols[i % len(symbols)], now) for i in range(batch)]
                if not await conn.send(frame({"e": "md", "d": {"quotes": quotes}})):
                    break
                sent += 1
            return sent

        return sum(await asyncio.gather(*(one(c) for c in conns)))

    async def close_all(self) -> None:
        self.stopping.set()
        conns = self.select(None)
        await asyncio.gather(*(c.close(1001, "Server stopping") for c in conns))
        with contextlib.suppress(TimeoutError):
            await self._settle(conns)
