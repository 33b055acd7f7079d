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
import anyio.lowlevel
import pytest
from websockets.asyncio.server import ServerConnection, serve

from tradovate_async import TradovateSession
from tradovate_async._ws import PULLS_PER_TURN, TradovateWebSocket
from tradovate_async._ws_transport import HANDOFF_EVENTS, SLICE
from tradovate_async.sim import SimulatedTradovate

Script = Callable[[ServerConnection], Awaitable[None]]


async def _authorize(conn: ServerConnection) -> None:
    await conn.send("o")
    request = str(await conn.recv())
    request_id = request.split("\n")[1]
    await conn.send('a[{"s":200,"i":' + request_id + "}]")


@contextlib.asynccontextmanager
async def plain_server(script: Script, *, compression: str | None = None) -> AsyncIterator[str]:
    async def handler(conn: ServerConnection) -> None:
        await _authorize(conn)
        await script(conn)
        await conn.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=compression) as server:
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


async def test_a_consumer_decodes_its_next_slices_itself_and_other_tasks_still_get_turns(
    sim: SimulatedTradovate,
) -> None:
    """3,000 frames of 10 events written at once. The consumer decodes the next slice itself
    when it has taken every event (``DirectConnection.pull``), so it never finds more than
    ``HANDOFF_EVENTS`` plus one frame waiting; but after ``PULLS_PER_TURN`` slices it waits
    for a turn of the event loop, so another task keeps running during the burst (a consumer
    that pulled without that limit would hold the loop for a whole socket read)."""
    frames, per_frame = 3000, 10

    async def script(conn: ServerConnection) -> None:
        for f in range(frames):
            events = ",".join(md(f * per_frame + n) for n in range(per_frame))
            await conn.send("a[" + events + "]")

    turns = 0

    async def other_task() -> None:
        nonlocal turns
        while True:
            turns += 1
            await anyio.lowlevel.checkpoint()

    async with plain_server(script) as url, TradovateSession(sim.config()) as session:
        async with session.websocket(kind="md", url=url) as ws, anyio.create_task_group() as tg:
            waiting: list[int] = []
            numbers: list[int] = []
            with anyio.fail_after(10):
                first = await anext(ws.events())  # the burst is under way
                tg.start_soon(other_task)
                numbers.append(first.data["n"])
                async for event in ws.events():
                    waiting.append(len(ws._core.events))
                    numbers.append(event.data["n"])
                    if len(numbers) == frames * per_frame:
                        break
            tg.cancel_scope.cancel()
    assert numbers == list(range(frames * per_frame))
    assert max(waiting[2 * SLICE :]) < HANDOFF_EVENTS + per_frame
    # A turn at least every PULLS_PER_TURN + 1 slices of one frame each; twice that as slack.
    # Without the limit: about 10 turns in all, one per socket read.
    assert 2 * (PULLS_PER_TURN + 1) < 100
    assert turns >= frames / (2 * (PULLS_PER_TURN + 1)), turns
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
            print("SEEN", seen)
    numbers = [e.data["n"] for e in seen if e.kind == "md"]
    assert numbers == list(range(200))
    assert "closed 4000 'bye'" in seen[-1].data.reason


def _frame(payload: bytes, *, opcode: int = 0x1, fin: bool = True) -> bytes:
    """A server frame (unmasked) as it goes on the wire."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        return head + bytes([n]) + payload
    if n < 1 << 16:
        return head + bytes([126]) + n.to_bytes(2, "big") + payload
    return head + bytes([127]) + n.to_bytes(8, "big") + payload


async def test_frames_cut_anywhere_across_reads_are_put_back_together(
    sim: SimulatedTradovate,
) -> None:
    """Raw bytes written in pieces that cut headers (the 2-, 4- and 10-byte forms) and
    payloads at every kind of place, a ping among them: every message arrives whole and in
    order, and the ping is answered."""
    small, medium, large = (
        ("a[" + md(n) + "]").encode() + pad
        for n, pad in ((1, b""), (2, b" " * 300), (3, b" " * 70_000))
    )
    wire = _frame(small) + _frame(b"ping!", opcode=0x9) + _frame(medium) + _frame(large)
    pongs: list[bytes] = []

    async def script(conn: ServerConnection) -> None:
        original = conn.protocol.receive_data

        def spy(data: bytes) -> None:
            if b"ping!" in data or b"\x8a" in data[:1]:
                pongs.append(bytes(data))
            original(data)

        conn.protocol.receive_data = spy  # type: ignore[method-assign]
        for cut in (1, 3, 5, 9, 40, 200, 1000, 30_000, len(wire)):
            conn.transport.write(wire[:cut])
            wire_rest = wire[cut:]
            await anyio.sleep(0.01)
            conn.transport.write(wire_rest)
            await anyio.sleep(0.01)

    async with plain_server(script) as url, TradovateSession(sim.config()) as session:
        async with session.websocket(kind="md", url=url) as ws:
            stream = ws.events()
            with anyio.fail_after(10):
                numbers = [(await anext(stream)).data["n"] for _ in range(27)]
    assert numbers == [1, 2, 3] * 9
    assert ws.stats.malformed_frames == 0
    assert pongs  # the client answered the pings


async def test_a_message_over_the_limit_fails_the_connection_and_the_socket_recovers(
    sim: SimulatedTradovate,
) -> None:
    connections = 0

    async def script(conn: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        if connections == 1:
            await conn.send("a[" + md(1) + "]" + " " * 5000)
        else:
            await conn.send("a[" + md(2) + "]")

    async with plain_server(script) as url, TradovateSession(sim.config()) as session:
        async with session.websocket(kind="md", url=url, max_message_size=4096) as ws:
            seen = await events_until(ws, "md")
    assert [e.kind for e in seen] == ["disconnected", "reconnected", "md"]
    assert "1009" in seen[0].data.reason
    assert seen[-1].data["n"] == 2


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (bytes([0x81, 0x85, 1, 2, 3, 4]) + b"hello", 1002),  # a server frame must not be masked
        (bytes([0xC1, 0x02]) + b"a[", 1002),  # RSV1 set, no extension negotiated
        (bytes([0x83, 0x00]), 1002),  # a reserved opcode
        (bytes([0x81, 0x7F]) + (1 << 62).to_bytes(8, "big") + b"a[", 1009),  # claims 4 EiB
        (bytes([0x80, 0x02]) + b"a[", 1002),  # a continuation with no message to continue
    ],
    ids=["masked", "rsv1", "reserved-opcode", "huge-length", "stray-continuation"],
)
async def test_a_broken_frame_fails_the_connection_and_the_socket_recovers(
    sim: SimulatedTradovate, raw: bytes, code: int
) -> None:
    """What websockets' parser refuses, the frame splitter hands to it: the connection fails
    with the code RFC 6455 gives, and the socket reconnects and goes on streaming."""
    connections = 0

    async def script(conn: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        if connections == 1:
            conn.transport.write(raw)
        else:
            await conn.send("a[" + md(7) + "]")

    async with plain_server(script) as url, TradovateSession(sim.config()) as session:
        async with session.websocket(kind="md", url=url) as ws:
            seen = await events_until(ws, "md")
    assert [e.kind for e in seen] == ["disconnected", "reconnected", "md"]
    assert f"failed by this side {code}" in seen[0].data.reason
    assert seen[-1].data["n"] == 7


async def test_compressed_frames_take_websockets_parser_and_arrive_whole(
    sim: SimulatedTradovate,
) -> None:
    """With permessage-deflate every frame has RSV1 set: none is split here, websockets'
    parser inflates each one, and the messages arrive as with plain frames."""

    async def script(conn: ServerConnection) -> None:
        for n in range(500):
            await conn.send("a[" + md(n) + "]")
        await conn.send(iter(["a[", md(500), "]"]))

    async with plain_server(script, compression="deflate") as url:
        async with TradovateSession(sim.config()) as session:
            async with session.websocket(kind="md", url=url, compression="deflate") as ws:
                stream = ws.events()
                with anyio.fail_after(10):
                    numbers = [(await anext(stream)).data["n"] for _ in range(501)]
    assert numbers == list(range(501))
    assert ws.stats.malformed_frames == 0


async def test_a_bug_while_taking_a_message_drops_the_connection_and_the_socket_recovers(
    sim: SimulatedTradovate, caplog: pytest.LogCaptureFixture
) -> None:
    """The code that takes a message must never raise; if it does (a bug), the socket must not
    go silent: the connection is dropped with the traceback logged, and rebuilt."""
    broken = True

    def frame_tap(text: Any) -> bool:
        if broken and b'"n":1}' in bytes(text):
            raise RuntimeError("a bug in a tap")
        return False

    connections = 0

    async def script(conn: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        if connections == 1:  # the frames come once the client asks: its tap is set then
            request = str(await conn.recv())
            await conn.send('a[{"s":200,"i":' + request.split("\n")[1] + "}]")
        await conn.send("a[" + md(0) + "]")
        await conn.send("a[" + md(1) + "]")

    async with plain_server(script) as url, TradovateSession(sim.config()) as session:
        async with session.websocket(kind="md", url=url) as ws:
            ws.set_taps(None, frame_tap)
            await ws.request("bench/go")
            seen = await events_until(ws, "disconnected")
            assert [e.data["n"] for e in seen if e.kind == "md"] == [0]
            assert seen[-1].data.reason == "reader error"
            broken = False
            again = await events_until(ws, "md")  # the next connection streams again
            assert again[-1].data["n"] == 0
    assert any("failed to take a message" in r.getMessage() for r in caplog.records)
