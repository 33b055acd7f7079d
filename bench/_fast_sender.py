"""A market-data sender that is faster than any client: pre-encoded frames, straight to the socket.

Runs in its own process (its own interpreter lock). It speaks just enough of the WebSocket
protocol (RFC 6455, and permessage-deflate with no context takeover, RFC 7692) and of
Tradovate's framing to serve one benchmark: ``o`` on connect, ``s: 200`` to ``authorize``, and
on ``bench/stream`` (body ``{"events": N, "batch": B}``) the answer followed by N realistic
``md`` quote events in ``a[...]`` frames of B events each. Every burst is encoded once, before
the first byte is sent, into one ``bytes`` blob (WebSocket headers included, compressed when the
client negotiated compression), so sending costs one ``write`` of 1 MiB slices: the kernel and the
client are the only limits. Prints ``{"url": ...}`` as its first line; ends on stdin EOF.

Not a server anyone should run: no validation beyond what the benchmark needs, loopback only.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import sys
import zlib

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_CHUNK = 1 << 20
CONTRACTS = (3570918, 3570919, 2665267, 3128733)


def quote_event(n: int) -> dict[str, object]:
    """One ``md`` quote event shaped like Tradovate's (its MarketData documentation)."""
    base = 5870.25 + (n % 40) * 0.25
    return {
        "e": "md",
        "d": {
            "quotes": [
                {
                    "timestamp": f"2026-12-01T14:{(n // 60) % 60:02d}:{n % 60:02d}.{n % 1000:03d}Z",
                    "contractId": CONTRACTS[n % len(CONTRACTS)],
                    "entries": {
                        "Bid": {"price": base, "size": 7 + n % 13},
                        "TotalTradeVolume": {"size": 1_204_118 + n},
                        "Offer": {"price": base + 0.25, "size": 12 + n % 7},
                        "LowPrice": {"price": 5801.5},
                        "Trade": {"price": base, "size": 1 + n % 3},
                        "OpenInterest": {"size": 2_040_702},
                        "OpeningPrice": {"price": 5830.75},
                        "HighPrice": {"price": 5902.0},
                        "SettlementPrice": {"price": 5828.5},
                    },
                }
            ]
        },
    }


def frame_header(length: int, *, compressed: bool, opcode: int = 1) -> bytes:
    first = 0x80 | opcode | (0x40 if compressed else 0)
    if length < 126:
        return bytes((first, length))
    if length < 1 << 16:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def encode_message(payload: bytes, *, compressed: bool) -> bytes:
    if compressed:
        deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        payload = deflater.compress(payload) + deflater.flush(zlib.Z_SYNC_FLUSH)
        payload = payload[:-4]  # RFC 7692 7.2.1: drop the trailing 00 00 ff ff
    return frame_header(len(payload), compressed=compressed) + payload


_blobs: dict[tuple[int, int, bool], tuple[bytes, int]] = {}


def burst_blob(events: int, batch: int, compressed: bool) -> tuple[bytes, int]:
    """The whole burst, encoded once and cached: (bytes on the wire, payload bytes)."""
    key = (events, batch, compressed)
    if key not in _blobs:
        parts: list[bytes] = []
        payload_bytes = 0
        for start in range(0, events, batch):
            items = [quote_event(n) for n in range(start, min(events, start + batch))]
            payload = b"a" + json.dumps(items, separators=(",", ":")).encode()
            payload_bytes += len(payload)
            parts.append(encode_message(payload, compressed=compressed))
        _blobs[key] = (b"".join(parts), payload_bytes)
    return _blobs[key]


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.compressed = False

    async def handshake(self) -> None:
        request = await self.reader.readuntil(b"\r\n\r\n")
        headers: dict[str, str] = {}
        for line in request.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        accept = base64.b64encode(
            hashlib.sha1(headers["sec-websocket-key"].encode() + _GUID).digest()
        )
        lines = [
            b"HTTP/1.1 101 Switching Protocols",
            b"Upgrade: websocket",
            b"Connection: Upgrade",
            b"Sec-WebSocket-Accept: " + accept,
        ]
        if "permessage-deflate" in headers.get("sec-websocket-extensions", ""):
            self.compressed = True
            lines.append(
                b"Sec-WebSocket-Extensions: permessage-deflate; "
                b"server_no_context_takeover; client_no_context_takeover"
            )
        self.writer.write(b"\r\n".join(lines) + b"\r\n\r\n")
        self.send_text(b"o")

    def send_text(self, payload: bytes) -> None:
        self.writer.write(encode_message(payload, compressed=self.compressed))

    async def read_message(self) -> tuple[int, bytes]:
        first, second = await self.reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        mask = await self.reader.readexactly(4) if second & 0x80 else b"\0\0\0\0"
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(await self.reader.readexactly(length)))
        if first & 0x40:
            data = zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff")
        return first & 0x0F, data

    async def serve(self) -> None:
        await self.handshake()
        while True:
            opcode, data = await self.read_message()
            if opcode == 8:  # close: answer and end
                self.writer.write(frame_header(2, compressed=False, opcode=8) + b"\x03\xe8")
                await self.writer.drain()
                return
            if opcode == 9:
                self.writer.write(frame_header(len(data), compressed=False, opcode=10) + data)
                continue
            if opcode != 1:
                continue
            endpoint, _, rest = data.decode().partition("\n")
            request_id, _, rest = rest.partition("\n")
            if not request_id.isdigit():
                continue  # the client's heartbeat "[]"
            self.send_text(b'a[{"s":200,"i":%d}]' % int(request_id))  # any request: 200
            if endpoint == "bench/stream":
                body = json.loads(rest.partition("\n")[2])
                blob, _ = burst_blob(body["events"], body["batch"], self.compressed)
                view = memoryview(blob)
                for offset in range(0, len(blob), _CHUNK):
                    self.writer.write(view[offset : offset + _CHUNK])
                    await self.writer.drain()


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await _Connection(reader, writer).serve()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(_handle, "127.0.0.1", 0, limit=1 << 20)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"url": f"ws://127.0.0.1:{port}/v1/websocket"}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
