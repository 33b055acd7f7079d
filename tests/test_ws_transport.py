"""The socket's transport (``_ws_transport.DirectConnection``) against a plain websockets server.

The server here is not our simulator: a few lines of ``websockets`` that authorize, then send
what each test needs (a fragmented message, a burst, a close), on loopback.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from websockets.asyncio.server import ServerConnection, serve

from tradovate_async import TradovateSession
from tradovate_async._ws import TradovateWebSocket
from tradovate_async._ws_transport import SLICE
from tradovate_async.sim import SimulatedTradovate

Script = Callable[[ServerConnection], Awaitable[None]]


async def _authorize(conn: ServerConnection) -> None:
    await conn.send("o")
    request = str(await conn.recv())
    request_id = request.split("\n")[1]
    await conn.send('a[{"s":200,"i":' + request_id + "}]")


@contextlib.asynccontextmanager
async def plain_server(script: Script) -> AsyncIterator[str]:
    async def handler(conn: ServerConnection) -> None:
        await _authorize(conn)
        await script(conn)
        await conn.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/v1/websocket"


def md(n: int) -> str:
    return json.dumps({"e": "md", "d": {"n": n}}, separators=(",", ":"))


async def events_until(ws: TradovateWebSocket, kind: str) -> list[Any]:
    seen: list[Any] = []
    with anyio.fail_after(10):
        async for event in ws.events():
            seen.append(event)
            if event.kind == kind:
                return seen
    raise AssertionError("the stream ended")  # pragma: no cover


async def test_a_fragmented_message_is_one_message(sim: SimulatedTradovate) -> None:
    async def script(conn: ServerConnection) -> None:
        await conn.send(iter(["a[", md(1), ",", md(2), "]"]))
        await conn.send("a[" + md(3) + "]")

    async with plain_server(script) as url, TradovateSession(sim.config()) as session:
        async with session.websocket(kind="md", url=url) as ws:
            seen = [await anext(ws.events()) for _ in range(3)]
    assert [e.data["n"] for e in seen] == [1, 2, 3]
    assert ws.stats.malformed_frames == 0


async def test_a_burst_reaches_the_consumer_in_small_slices_and_in_order(
    sim: SimulatedTradovate,
) -> None:
    """3,000 frames written at once: the consumer runs between slices of at most ``SLICE``
    messages, so it never finds more waiting than that (a reader that decoded a whole socket
    read first would leave hundreds); none is lost, none is reordered."""
    count = 3000

    async def script(conn: ServerConnection) -> None:
        for n in range(count):
            await conn.send("a[" + md(n) + "]")

    async with plain_server(script) as url, TradovateSession(sim.config()) as session:
        async with session.websocket(kind="md", url=url) as ws:
            waiting: list[int] = []
            numbers: list[int] = []
            with anyio.fail_after(10):
                async for event in ws.events():
                    waiting.append(len(ws._core.events))
                    numbers.append(event.data["n"])
                    if len(numbers) == count:
                        break
    assert numbers == list(range(count))
    # Before the consumer first waits (the socket was still opening) two slices may pile up.
    assert max(waiting) < 2 * SLICE
    assert max(waiting[2 * SLICE :]) < SLICE
    assert ws.stats.dropped_events == 0


async def test_what_came_before_a_close_is_delivered_before_the_loss(
    sim: SimulatedTradovate,
) -> None:
    async def script(conn: ServerConnection) -> None:
        for n in range(200):
            await conn.send("a[" + md(n) + "]")
        await conn.close(4000, "bye")

    async with plain_server(script) as url, TradovateSession(sim.config()) as session:
        async with session.websocket(kind="md", url=url) as ws:
            seen = await events_until(ws, "disconnected")
    numbers = [e.data["n"] for e in seen if e.kind == "md"]
    assert numbers == list(range(200))
    assert "closed 4000 'bye'" in seen[-1].data.reason
