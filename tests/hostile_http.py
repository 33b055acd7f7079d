"""A small hostile HTTP/1.1 server on loopback, written on raw sockets (no framework).

It answers the token endpoint like Tradovate (so a session can start) and misbehaves on the
paths it is told to: trickling an answer one byte at a time, streaming an endless chunked
body, announcing a huge ``Content-Length``, a small gzip body that inflates past any cap, or
echoing the request body in an error. Each
connection is answered once and closed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import gzip
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.abc

from tradovate_async import TradovateConfig

Behaviour = Callable[["Request", anyio.abc.SocketStream], Any]


@dataclasses.dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclasses.dataclass
class Stats:
    requests: list[str] = dataclasses.field(default_factory=list)
    body_bytes_sent: int = 0
    disconnected: int = 0


def token_answer() -> bytes:
    expiry = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=90)
    return json.dumps(
        {
            "accessToken": "hostile-access-token-" + "a" * 40,
            "mdAccessToken": "hostile-md-token-" + "b" * 40,
            "expirationTime": expiry.isoformat().replace("+00:00", "Z"),
            "userStatus": "Active",
            "userId": 77,
            "name": "hostile-user",
            "hasLive": False,
        }
    ).encode()


def head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def answer(stream: anyio.abc.SocketStream, status: int, body: bytes) -> None:
    await stream.send(
        head(
            status,
            {
                "Content-Type": "application/json",
                "Content-Length": str(len(body)),
                "Connection": "close",
            },
        )
        + body
    )


def trickle(interval: float, total: int = 10_000) -> Behaviour:
    """Headers at once, then one byte of body every ``interval`` seconds."""

    async def behave(request: Request, stream: anyio.abc.SocketStream, stats: Stats) -> None:
        await stream.send(
            head(200, {"Content-Type": "application/json", "Content-Length": str(total)})
        )
        for _ in range(total):
            await anyio.sleep(interval)
            await stream.send(b" ")
            stats.body_bytes_sent += 1

    return behave


def silent() -> Behaviour:
    """Reads the request, then never answers (until the client hangs up)."""

    async def behave(request: Request, stream: anyio.abc.SocketStream, stats: Stats) -> None:
        await stream.receive()  # returns or raises when the client closes

    return behave


def silent_after_head(length: int = 100) -> Behaviour:
    """The head of a ``length``-byte answer, then nothing."""

    async def behave(request: Request, stream: anyio.abc.SocketStream, stats: Stats) -> None:
        await stream.send(
            head(200, {"Content-Type": "application/json", "Content-Length": str(length)})
        )
        await stream.receive()

    return behave


def steady(pieces: int, interval: float) -> Behaviour:
    """A JSON answer whose body comes in ``pieces`` pieces, one every ``interval`` seconds."""
    body = b"[" + b" " * (pieces - 2) + b"]"

    async def behave(request: Request, stream: anyio.abc.SocketStream, stats: Stats) -> None:
        await stream.send(
            head(200, {"Content-Type": "application/json", "Content-Length": str(len(body))})
        )
        for n in range(pieces):
            await anyio.sleep(interval)
            await stream.send(body[n : n + 1])
            stats.body_bytes_sent += 1

    return behave


def endless_chunked(chunk: int = 64 * 1024) -> Behaviour:
    """A chunked body that never ends (until the client hangs up)."""

    async def behave(request: Request, stream: anyio.abc.SocketStream, stats: Stats) -> None:
        await stream.send(
            head(200, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        )
        piece = f"{chunk:x}\r\n".encode() + b"[" * chunk + b"\r\n"
        while True:
            await stream.send(piece)
            stats.body_bytes_sent += chunk

    return behave


def announced(length: int) -> Behaviour:
    """A ``Content-Length`` of ``length`` bytes, then the body as fast as possible."""

    async def behave(request: Request, stream: anyio.abc.SocketStream, stats: Stats) -> None:
        await stream.send(
            head(200, {"Content-Type": "application/json", "Content-Length": str(length)})
        )
        block = b" " * 65536
        sent = 0
        while sent < length:
            await stream.send(block)
            sent += len(block)
            stats.body_bytes_sent += len(block)

    return behave


def gzip_bomb(expanded: int) -> Behaviour:
    """A small gzip body (with its true ``Content-Length``) that inflates to ``expanded``
    bytes: a cap on what arrives is not a cap on what the client holds once decoded."""
    body = gzip.compress(b" " * expanded, compresslevel=9)

    async def behave(request: Request, stream: anyio.abc.SocketStream, stats: Stats) -> None:
        headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "Content-Length": str(len(body)),
        }
        await stream.send(head(200, headers) + body)
        stats.body_bytes_sent += len(body)

    return behave


class HostileServer:
    """``async with HostileServer({path: behaviour}) as server``; ``server.config()``."""

    def __init__(self, behaviours: dict[str, Any]) -> None:
        self.behaviours = behaviours
        self.stats = Stats()
        self.port = 0

    def config(self, **overrides: Any) -> TradovateConfig:
        fields: dict[str, Any] = {
            "username": "hostile-user",
            "password": "pw-hostile",
            "app_id": "app",
            "sec": "sec-hostile",
            "device_id": "dev",
            "api_url": f"http://127.0.0.1:{self.port}/v1",
        }
        fields.update(overrides)
        return TradovateConfig(**fields)

    async def _read_request(self, stream: anyio.abc.SocketStream) -> Request | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive(65536)
            if not chunk:
                return None
            data += chunk
        header_block, _, body = data.partition(b"\r\n\r\n")
        lines = header_block.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            body += await stream.receive(65536)
        path = target.split("?", 1)[0].removeprefix("/v1/")
        return Request(method, path, headers, body)

    async def _serve(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                request = await self._read_request(stream)
                if request is None:
                    return
                self.stats.requests.append(request.path)
                behaviour = self.behaviours.get(request.path)
                if behaviour is None:
                    if request.path in ("auth/accesstokenrequest", "auth/renewaccesstoken"):
                        await answer(stream, 200, token_answer())
                    else:
                        await answer(stream, 200, b"[]")
                else:
                    await behaviour(request, stream, self.stats)
            except (anyio.BrokenResourceError, anyio.EndOfStream, ConnectionError, OSError):
                self.stats.disconnected += 1

    @contextlib.asynccontextmanager
    async def _running(self) -> AsyncIterator[HostileServer]:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)

        async def serve() -> None:
            async with listener:
                await listener.serve(self._serve)

        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()

    async def __aenter__(self) -> HostileServer:
        self._cm = self._running()
        return await self._cm.__aenter__()

    async def __aexit__(self, *exc: Any) -> None:
        await self._cm.__aexit__(*exc)
