"""The WebSocket side: Tradovate's SockJS-like framing over a plain WebSocket.

Each socket gets ``o`` on open, must ``authorize`` within ``auth_timeout`` and send ``[]``
within every ``heartbeat_timeout``; the server sends ``h`` when it has been quiet for
``server_heartbeat`` seconds. Requests (``endpoint\\nid\\nquery\\nbody``) run as tasks so a slow
or delayed answer never blocks the reader, which keeps heartbeat stamps accurate.

All of this runs on the simulator's own event loop. Fields that tests read from other threads
(through ``ConnectionInfo`` snapshots) are only changed while holding the state lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.websockets import WebSocket, WebSocketDisconnect

from ._market import QuoteFeed
from ._md import MarketSim
from ._replay import ReplayClocks
from ._state import Reply, SimState, normalize_path
from ._types import Fault, RequestRecord, echo_text
from ._ws_conns import QUOTE, Conn, ConnActions, Kind, frame, response

__all__ = ["Conn", "SocketHub"]

logger = logging.getLogger(__name__)

DOM = "md/subscribeDOM"
HISTOGRAM = "md/subscribeHistogram"
CHART = "md/getChart"
_SUBSCRIBE = {
    "md/subscribequote": QUOTE,
    "md/subscribedom": DOM,
    "md/subscribehistogram": HISTOGRAM,
}
_UNSUBSCRIBE = {
    "md/unsubscribequote": QUOTE,
    "md/unsubscribedom": DOM,
    "md/unsubscribehistogram": HISTOGRAM,
}


class SocketHub(ConnActions):
    """All open sockets of one simulator and the handlers that serve them; what the server
    does to them on its own (drops, shutdowns, pushes) comes from :class:`ConnActions`."""

    def __init__(
        self,
        state: SimState,
        *,
        auth_timeout: float,
        heartbeat_timeout: float | None,
        server_heartbeat: float,
        quote_interval: float | None,
        close_on_expiry: bool,
        abort_client: Callable[[tuple[str, int] | None], bool],
        market: MarketSim | None = None,
        market_clock: Callable[[], float] | None = None,
    ) -> None:
        self.state = state
        self.market = market or MarketSim()
        self.market_clock = market_clock or state.now
        self.replay = ReplayClocks(state.now)
        self.auth_timeout = auth_timeout
        self.heartbeat_timeout = heartbeat_timeout
        self.server_heartbeat = server_heartbeat
        self.quote_interval = quote_interval
        self.close_on_expiry = close_on_expiry
        self.authorize_delay = 0.0
        self._abort_client = abort_client
        self.conns: dict[int, Conn] = {}
        self.total = 0
        self.authorizations = 0
        self.feed = QuoteFeed()
        self.stopping = asyncio.Event()
        self._ids = itertools.count(1)
        limits = [auth_timeout, server_heartbeat] + (
            [heartbeat_timeout] if heartbeat_timeout else []
        )
        self._tick = max(0.005, min(0.1, *(x / 5 for x in limits)))

    async def pause(self, seconds: float) -> None:
        """Sleep for a scripted delay, cut short when the simulator stops, so that stopping
        never has to cancel a request handler mid-flight."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    # ------------------------------------------------------------------ ASGI endpoints

    async def trading_endpoint(self, websocket: WebSocket) -> None:
        await self._serve(websocket, "trading")

    async def md_endpoint(self, websocket: WebSocket) -> None:
        await self._serve(websocket, "md")

    async def replay_endpoint(self, websocket: WebSocket) -> None:
        await self._serve(websocket, "replay")

    async def _serve(self, websocket: WebSocket, kind: Kind) -> None:
        await websocket.accept()
        conn = Conn(next(self._ids), kind, websocket)
        with self.state.lock:
            self.conns[conn.id] = conn
            self.total += 1
        logger.debug("%s socket %d opened from %s", kind, conn.id, conn.client)
        try:
            if await conn.send("o"):
                conn.spawn(self._read(conn))
                conn.spawn(self._watch(conn))
                if kind in ("md", "replay") and self.quote_interval is not None:
                    conn.spawn(self._stream(conn, self.quote_interval))
                await conn.done.wait()
        finally:
            conn.closed = True
            tasks = list(conn.tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with self.state.lock:
                self.conns.pop(conn.id, None)
            logger.debug("%s socket %d finished", kind, conn.id)

    # ---------------------------------------------------------------- per-socket tasks

    async def _read(self, conn: Conn) -> None:
        try:
            while True:
                message = await conn.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:
                    logger.debug("socket %d: binary frame ignored", conn.id)
                    continue
                self._on_frame(conn, text)
        except (OSError, RuntimeError, WebSocketDisconnect) as exc:
            logger.debug("socket %d: receive failed: %r", conn.id, exc)
        finally:
            conn.closed = True
            conn.done.set()

    async def _watch(self, conn: Conn) -> None:
        """Authorization and heartbeat deadlines, server ``h`` frames, token expiry."""
        while not conn.closed:
            await asyncio.sleep(self._tick)
            now = time.monotonic()
            if not conn.authorized and now - conn.opened >= self.auth_timeout:
                await conn.close(1008, "Authorization timeout")
                return
            if self.heartbeat_timeout and now - conn.last_heartbeat >= self.heartbeat_timeout:
                await conn.close(1008, "Heartbeat timeout")
                return
            if (
                self.close_on_expiry
                and conn.session is not None
                and self.state.session_expired(conn.session)
            ):
                await conn.close(1008, "Access token expired")
                return
            if now - conn.last_sent >= self.server_heartbeat:
                await conn.send("h")

    async def _stream(self, conn: Conn, interval: float) -> None:
        while not conn.closed:
            await asyncio.sleep(interval)
            if conn.authorized and conn.kind == "replay":
                clock = self.replay.clock_event(conn.username)
                if clock is not None and not await conn.send(clock):
                    return
            if conn.authorized and conn.subs:
                await self._send_market_data(conn)

    def market_now(self, conn: Conn) -> float:
        """Market time for ``conn``: the market clock (replay sockets: their replay clock)."""
        if conn.kind == "replay":
            replayed = self.replay.time(conn.username)
            if replayed is not None:
                return replayed
        return self.market_clock()

    async def _send_market_data(self, conn: Conn) -> None:
        for text in self.market.live(conn.md, self.market_now(conn)):
            if not await conn.send(text):
                return

    # ------------------------------------------------------------------------ requests

    def _on_frame(self, conn: Conn, text: str) -> None:
        if text == "[]":
            with self.state.lock:
                conn.last_heartbeat = time.monotonic()
                conn.heartbeats.append(conn.last_heartbeat)
                conn.heartbeat_count += 1
            return
        if text.lstrip().startswith("{"):
            # The source document's ``{"request":"auth","accessToken":...}`` frame; id 0.
            try:
                body = json.loads(text)
            except ValueError:
                body = None
            if isinstance(body, dict) and body.get("request") == "auth":
                token = body.get("accessToken")
                self._note_request(conn, "authorize")
                conn.spawn(
                    self._request(conn, "authorize", 0, "", token if isinstance(token, str) else "")
                )
                return
            logger.debug("socket %d: unexpected JSON frame ignored", conn.id)
            return
        parts = text.split("\n", 3)
        rid_text = parts[1].strip() if len(parts) > 1 else ""
        if len(parts) < 2 or not rid_text.lstrip("-").isdigit():
            logger.debug("socket %d: malformed frame ignored (%d chars)", conn.id, len(text))
            return
        parts += [""] * (4 - len(parts))
        endpoint = normalize_path(parts[0])
        self._note_request(conn, endpoint)
        conn.spawn(self._request(conn, endpoint, int(rid_text), parts[2], parts[3]))

    def _note_request(self, conn: Conn, endpoint: str) -> None:
        with self.state.lock:
            conn.requests.append(endpoint)
            conn.request_count += 1

    async def _request(self, conn: Conn, endpoint: str, rid: int, query: str, body: str) -> None:
        """Tickets, faults, dispatch and the answer frame of one request."""
        parsed: Any = None
        ticket: object = None
        if endpoint != "authorize" and body.strip():
            try:
                parsed = json.loads(body)
            except ValueError:
                await self._answer(conn, endpoint, rid, Reply.plain(400, "Invalid JSON body"))
                return
            if isinstance(parsed, dict):
                ticket = parsed.pop("p-ticket", None)
        penalty = self.state.check_ticket(endpoint, ticket)
        if penalty is not None:
            await self._answer(conn, endpoint, rid, Reply.json(penalty), ticket=ticket)
            return
        fault = self.state.take_fault(endpoint, "ws")
        if fault is not None and fault.kind == "echo":
            text = echo_text(body)
            data: Any = {"errorText": text} if fault.content_type == "application/json" else text
            status = 500 if fault.status_code == 200 else fault.status_code
            await self._answer(conn, endpoint, rid, Reply.json(data, status), fault=fault)
            return
        if fault is not None and fault.kind not in ("delay", "drop", "truncated_json"):
            await self._answer(conn, endpoint, rid, self._fault_reply(endpoint, fault), fault=fault)
            return
        if fault is not None and fault.kind == "delay":
            await self.pause(fault.seconds)
        reply = await self._dispatch(conn, endpoint, rid, query, body, parsed)
        await self._answer(conn, endpoint, rid, reply, fault=fault, ticket=ticket)
        await self.apply(reply)
        outbox, conn.outbox = conn.outbox, []
        for text in outbox:
            await conn.send(text)

    def _fault_reply(self, endpoint: str, fault: Fault) -> Reply:
        if fault.kind == "penalty":
            return Reply.json(self.state.issue_penalty(endpoint, fault.p_time, fault.captcha))
        if fault.kind == "error_text":
            return Reply.json({"errorText": fault.text})
        if fault.kind == "html":
            return Reply.plain(fault.status_code, f"<html><body>{fault.status_code}</body></html>")
        if fault.kind == "malformed_json":
            return Reply(200, text="malformed")
        text = fault.body.decode(errors="replace") if fault.body is not None else ""
        if fault.body is None and fault.status_code == 500:
            text = f"Internal Server Error, error id: {uuid.uuid4()}"
        return Reply.plain(fault.status_code, text)

    async def _answer(
        self,
        conn: Conn,
        endpoint: str,
        rid: int,
        reply: Reply,
        *,
        fault: Fault | None = None,
        ticket: object = None,
    ) -> None:
        if fault is not None and fault.kind == "malformed_json":
            text = "a[{" + f'"s":200,"i":{rid},"d":' + "{oops}]"
        elif reply.is_json:
            text = frame(response(rid, reply.status, reply.payload))
        else:
            data = reply.text or None
            if data is not None and reply.status == 404:
                # The real server JSON-quotes a 404's text inside the string (recorded:
                # tests/wire/samples/frame-404-double-quoted-recorded.json).
                data = json.dumps(data)
            text = frame(response(rid, reply.status, data))
        if fault is not None and fault.kind == "truncated_json":
            text = text[: max(2, len(text) // 2)]
        self.state.record(
            RequestRecord(
                time=self.state.now(),
                method="WS",
                path=endpoint,
                status=reply.status,
                token_prefix=conn.token_prefix,
                has_p_ticket=ticket is not None,
                transport="ws",
                fault=fault.kind if fault else None,
                reason=reply.reason,
            )
        )
        if fault is not None and fault.kind == "drop":
            await self.abort(conn)
            return
        await conn.send(text)

    async def _dispatch(
        self, conn: Conn, endpoint: str, rid: int, query: str, body: str, parsed: Any
    ) -> Reply:
        if endpoint == "authorize":
            return await self._authorize(conn, body)
        if not conn.authorized:
            return Reply.plain(401, "Access is denied", "not-authorized")
        session = conn.session
        assert session is not None
        if conn.kind == "md" or (conn.kind == "replay" and endpoint.startswith("md/")):
            return self._market_data(conn, endpoint, parsed)
        if conn.kind == "replay" and endpoint.startswith("replay/"):
            status, payload = self.replay.request(session.user.username, endpoint, parsed)
            return Reply.json(payload) if status == 200 else Reply.plain(status, str(payload))
        if endpoint.startswith("md/") or (endpoint.startswith("auth/") and endpoint != "auth/me"):
            return Reply.plain(404, f"Not found: {endpoint}")
        params = dict(parse_qsl(query, keep_blank_values=True))
        reply = self.state.api(endpoint, params, parsed, session)
        if endpoint == "user/syncrequest" and reply.status == 200:
            with self.state.lock:
                conn.synced = True
        return reply

    async def _authorize(self, conn: Conn, token: str) -> Reply:
        if self.authorize_delay > 0:
            await self.pause(self.authorize_delay)
        token = token.strip()
        accept = ("access",) if conn.kind == "trading" else ("md", "access")
        session, reason = self.state.check_token(token or None, accept=accept)
        if session is None:
            logger.debug("socket %d: authorize refused (%s)", conn.id, reason)
            return Reply.plain(401, "Invalid access token", reason)
        with self.state.lock:
            conn.authorized = True
            conn.session = session
            conn.token_prefix = token[:8]
            self.authorizations += 1
        logger.debug("socket %d authorized for %s", conn.id, session.user.username)
        return Reply(200, payload=None)

    def _market_data(self, conn: Conn, endpoint: str, body: Any) -> Reply:
        with self.state.lock:
            status, payload, frames = self.market.request(
                conn.md, endpoint, body, self.market_now(conn)
            )
            if status == 200:
                self._note_subscription(conn, endpoint, body, payload)
        if status != 200:
            return Reply.plain(status, str(payload))
        conn.outbox.extend(frames)
        return Reply(200, payload=payload)

    def _note_subscription(self, conn: Conn, endpoint: str, body: Any, payload: Any) -> None:
        """Keep ``conn.subs`` (what ``ConnectionInfo.subscriptions`` shows) in step."""
        symbol = str(body.get("symbol")) if isinstance(body, dict) else ""
        target = _SUBSCRIBE.get(endpoint)
        if target is not None:
            conn.subs.add((target, symbol))
        elif (target := _UNSUBSCRIBE.get(endpoint)) is not None:
            conn.subs.discard((target, symbol))
        elif endpoint == "md/getchart" and isinstance(payload, dict):
            conn.subs.add((CHART, str(payload["realtimeId"])))
        elif endpoint == "md/cancelchart":
            live = {str(rid) for rid in conn.md.charts}
            conn.subs = {(e, s) for e, s in conn.subs if e != CHART or s in live}
