"""An HTTP/1.1 server that is faster than any client: one fixed JSON answer, keep-alive, in its
own process. Answers every complete request head it has received with the same pre-encoded
response (pipelining included), so a client's throughput is never limited by the server. Prints
``{"url": ...}`` as its first line and ends on stdin EOF. Loopback only; no validation."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import json
import sys
import time

BODY = json.dumps(
    [
        {
            "id": 100 + n,
            "name": f"DEMO{48_000 + n}",
            "userId": 4_000_001,
            "accountType": "Customer",
            "active": True,
            "clearingHouseId": 2,
            "riskCategoryId": 2,
            "autoLiqProfileId": 2,
            "marginAccountType": "Speculator",
            "legalStatus": "Individual",
            "archived": False,
            "timestamp": "2026-11-30T21:00:00Z",
        }
        for n in range(3)
    ],
    separators=(",", ":"),
).encode()


def _response(body: bytes) -> bytes:
    date = email.utils.formatdate(usegmt=True).encode()
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: %s\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (date, len(body), body)
    )


def _token_answer() -> bytes:
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=90)
    return json.dumps(
        {
            "accessToken": "fast-server-token-" + "x" * 40,
            "mdAccessToken": "fast-server-md-token-" + "x" * 40,
            "expirationTime": expires.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "userStatus": "Active",
            "userId": 4_000_001,
            "name": "bench",
            "hasLive": False,
        }
    ).encode()


class _Answers:
    """The pre-encoded answer, made again once a second so that its Date header is true."""

    def __init__(self) -> None:
        self.made_at = 0.0
        self.response = b""

    def current(self) -> bytes:
        now = time.monotonic()
        if now - self.made_at >= 1.0:
            self.response = _response(BODY)
            self.made_at = now
        return self.response


_answers = _Answers()


class _Protocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.pending = b""

    def data_received(self, data: bytes) -> None:
        data = self.pending + data
        complete = data.count(b"\r\n\r\n")
        self.pending = data[data.rfind(b"\r\n\r\n") + 4 :] if complete else data
        if not complete:
            return
        if b"/auth/" in data:  # login or renewal of the library under test: the slow path
            for head in data.split(b"\r\n\r\n")[:complete]:
                auth = b"/auth/accesstoken" in head or b"/auth/renewaccesstoken" in head
                self.transport.write(_response(_token_answer()) if auth else _answers.current())
            return
        self.transport.write(_answers.current() * complete)


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Protocol, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"url": f"http://127.0.0.1:{port}/v1"}), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
