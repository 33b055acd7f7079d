"""Typed-model decoding against ``json.loads``.

Prints, for a list of N entities (default 10,000) of a few entity types, the median time to
decode the JSON text

- into the library's models, the way ``session.api.<entity>.list()`` does it
  (``msgspec`` straight from bytes, with aware datetimes, int ids and nested structs), and
- into dicts with ``json.loads``, what a user of ``session.get(...)`` gets,

measured in interleaved rounds in one process, and their ratio (target: <= 1.0). The ratio to
``orjson.loads`` (the fastest dict parser a user could reach for) is printed too, for
information: it yields untyped dicts with string timestamps. It also prints the socket path (the frame is parsed by the socket codec, then the dicts are converted
to models) as a ratio to ``json.loads``, for information. The payload carries a few fields the
models do not know, as real answers do.

Run: ``python bench/api.py [--entities N] [--rounds R]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from tradovate_async.api import Fill, Order, Position
from tradovate_async.api._base import decode_answer


def position(i: int) -> dict[str, Any]:
    return {
        "id": 3_800_000 + i,
        "accountId": 70001,
        "contractId": 2_083_005 + i % 7,
        "timestamp": "2026-12-01T14:30:00.123Z",
        "tradeDate": {"year": 2026, "month": 12, "day": 1},
        "netPos": i % 5 - 2,
        "netPrice": 5870.25 + (i % 40) * 0.25,
        "bought": 3,
        "boughtValue": 17610.75,
        "sold": 1,
        "soldValue": 5871.0,
        "prevPos": 0,
        "prevPrice": 5860.5,
        "archived": False,  # not in the OpenAPI schema: ignored
    }


def order(i: int) -> dict[str, Any]:
    return {
        "id": 1_000_000 + i,
        "accountId": 70001,
        "contractId": 2_083_005,
        "timestamp": "2026-12-01T14:30:00.123Z",
        "action": "Buy" if i % 2 else "Sell",
        "ordStatus": "Filled" if i % 3 else "Working",
        "executionProviderId": 4,
        "parentId": 999_999 + i,
        "admin": False,
        "archived": False,
        "external": False,
        "isAutomated": True,
    }


def fill(i: int) -> dict[str, Any]:
    return {
        "id": 2_000_000 + i,
        "orderId": 1_000_000 + i,
        "contractId": 2_083_005,
        "timestamp": "2026-12-01T14:30:00.456Z",
        "tradeDate": {"year": 2026, "month": 12, "day": 1},
        "action": "Buy",
        "qty": 1,
        "price": 5870.25,
        "active": True,
        "finallyPaired": 0,
    }


def best(fn: Callable[[], object], repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def run(name: str, make: Callable[[int], dict[str, Any]], model: Any, n: int, rounds: int) -> float:
    raw = json.dumps([make(i) for i in range(n)], separators=(",", ":")).encode()
    kind = list[model]
    endpoint = f"{name}/list"

    def library() -> None:
        decode_answer(endpoint, raw, kind)

    def plain() -> None:
        json.loads(raw)

    def fastest_dicts() -> None:
        orjson.loads(raw)

    def socket_path() -> None:
        decode_answer(endpoint, json.loads(raw), kind)

    decoded = decode_answer(endpoint, raw, kind)
    assert len(decoded) == n and decoded[0].timestamp.tzinfo is not None
    lib_t: list[float] = []
    plain_t: list[float] = []
    sock_t: list[float] = []
    orjson_t: list[float] = []
    for _ in range(2):  # warm-up
        library(), plain(), socket_path(), fastest_dicts()
    for r in range(rounds):
        order_ = [
            (library, lib_t),
            (plain, plain_t),
            (socket_path, sock_t),
            (fastest_dicts, orjson_t),
        ]
        if r % 2:
            order_.reverse()
        for fn, sink in order_:
            sink.append(best(fn))
    lib = statistics.median(lib_t)
    base = statistics.median(plain_t)
    sock = statistics.median(sock_t)
    fastest = statistics.median(orjson_t)
    ratio = lib / base
    print(
        f"{name:9s} {n:6d} entities, {len(raw) / 1e6:5.2f} MB: models {lib * 1e3:7.2f} ms, "
        f"json.loads {base * 1e3:7.2f} ms, ratio {ratio:.2f} (target <= 1.0); "
        f"orjson.loads {fastest * 1e3:6.2f} ms (models/orjson {lib / fastest:.2f}); "
        f"socket path (json.loads + dicts -> models) {sock / base:.2f} x json.loads"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    print(f"msgspec {msgspec.__version__}; median of {args.rounds} interleaved rounds")
    ratios = [
        run("position", position, Position, args.entities, args.rounds),
        run("order", order, Order, args.entities, args.rounds),
        run("fill", fill, Fill, args.entities, args.rounds),
    ]
    print(f"worst ratio {max(ratios):.2f} (target <= 1.0)")


if __name__ == "__main__":
    main()
