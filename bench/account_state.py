"""Account mirror benchmark: how fast ``props`` events apply, what 10,000 orders weigh, how long
a rebuild from a 5,000-entity snapshot takes.

Prints, from one process:

- ``props`` events applied per second by the mirror's store (``EntityStore.apply`` with the
  mirror's default decoder into the typed API's models, the code the dispatcher runs per
  event), with and without a change-stream consumer, against the best
  hand-written loop a user could write (``tables[type][id] = entity``), in interleaved rounds,
  as a ratio; the events are decoded from a realistic ``a[...]`` frame first, as the socket
  hands them over;
- end to end over loopback: events pushed by the simulator to ``session.account_state()``
  until the last one is applied (the simulator is the sender here, so this is a floor);
- bytes retained per 10,000 orders held (tracemalloc; typed ``Order`` models), against the
  plain dicts ``json.loads`` makes;
- the median time to rebuild from a 5,000-entity snapshot over a state of 5,000 entities, and
  the differences it found.

Run: ``python bench/account_state.py [--events N] [--rounds R] [--orders N] [--snapshot N]``
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import anyio

from tradovate_async import TradovateSession
from tradovate_async._entity_store import EntityStore, typed_decoder
from tradovate_async.sim import SimulatedTradovate, SimUser

ACCOUNT = SimUser().accounts[0].id


def order(ident: int, version: int = 0) -> dict[str, Any]:
    """An order shaped like Tradovate's ``order/item``."""
    return {
        "id": ident,
        "accountId": ACCOUNT,
        "contractId": 2_083_005,
        "spreadDefinitionId": None,
        "timestamp": "2026-12-01T14:31:07.412Z",
        "action": "Buy" if ident % 2 else "Sell",
        "ordStatus": "Working" if version % 3 else "Filled",
        "executionProviderId": 4,
        "ocoId": None,
        "parentId": None,
        "linkedId": None,
        "admin": False,
        "clOrdId": f"ta-{ident:x}-{version}",
        "orderType": "Limit",
        "price": 5812.25 + version * 0.25,
        "orderQty": 1,
        "isAutomated": True,
    }


def props_events(count: int) -> list[dict[str, Any]]:
    """``props`` data as the socket delivers it: JSON-decoded from ``a[...]`` frames."""
    out: list[dict[str, Any]] = []
    for start in range(0, count, 50):
        batch = [
            {
                "e": "props",
                "d": {"entityType": "order", "eventType": kind, "entity": order(i % 5_000, i)},
            }
            for i in range(start, min(count, start + 50))
            for kind in ("Updated" if i >= 5_000 else "Created",)
        ]
        frame = "a" + json.dumps(batch)
        out.extend(item["d"] for item in json.loads(frame[1:]))
    return out


def timed(func: Callable[[], object]) -> float:
    gc.collect()
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def bench_apply(events: list[dict[str, Any]], rounds: int) -> None:
    def library(want: bool) -> Callable[[], object]:
        def run() -> object:
            store = EntityStore(typed_decoder())
            for data in events:
                store.apply(data, want_changes=want)
            return store

        return run

    def hand_written() -> object:
        tables: dict[str, dict[int, Any]] = {}
        for data in events:
            entity = data["entity"]
            table = tables.setdefault(data["entityType"], {})
            if data["eventType"] == "Deleted":
                table.pop(entity["id"], None)
            else:
                table[entity["id"]] = entity
        return tables

    runs: dict[str, list[float]] = {"hand": [], "store": [], "store+changes": []}
    for _ in range(rounds):
        runs["hand"].append(timed(hand_written))
        runs["store"].append(timed(library(False)))
        runs["store+changes"].append(timed(library(True)))
    n = len(events)
    for name, times in runs.items():
        print(f"  {name:14} {n / statistics.median(times):12,.0f} props events/s")
    ratio = statistics.median(runs["hand"]) / statistics.median(runs["store"])
    print(f"  store / hand-written loop (throughput): {ratio:.2f}")


async def bench_end_to_end(count: int) -> None:
    user = SimUser()
    async with SimulatedTradovate(server_heartbeat=0.5) as sim:
        async with TradovateSession(sim.config()) as session, session.account_state() as state:
            events = [
                ("order", "Updated" if i >= 5_000 else "Created", order(i % 5_000, i))
                for i in range(count)
            ]
            started = time.perf_counter()
            await sim.push_props(user.username, events)
            await state.wait_for(lambda s: s.store.events_applied >= count, timeout=120)
            elapsed = time.perf_counter() - started
    print(f"  end to end (simulator -> socket -> mirror): {count / elapsed:,.0f} props events/s")


def bench_memory(orders: int) -> None:
    """Everything retained once the decoded snapshot itself is gone: the entities and the
    store around them (tracing starts before decoding, so the entity dicts count)."""
    text = json.dumps({"orders": [order(i, i) for i in range(orders)]})

    def held(build: Callable[[Any], object]) -> int:
        gc.collect()
        tracemalloc.start()
        snapshot = json.loads(text)
        keep = build(snapshot)
        del snapshot
        gc.collect()
        size = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        del keep
        return size

    def store_build(snapshot: Any) -> object:
        store = EntityStore(typed_decoder())
        store.load(snapshot)
        return store

    def plain_build(snapshot: Any) -> object:
        return {o["id"]: o for o in snapshot["orders"]}

    per = 10_000 / orders
    mirror = held(store_build) * per
    plain = held(plain_build) * per
    print(
        f"  memory per 10,000 orders held: {mirror / 2**20:.2f} MiB "
        f"(plain dicts from json.loads: {plain / 2**20:.2f} MiB; ratio {mirror / plain:.2f})"
    )


def bench_rebuild(entities: int, rounds: int) -> None:
    kinds = ["order", "position", "fill", "orderVersion", "cashBalance"]

    def snapshot(changed: int) -> dict[str, list[dict[str, Any]]]:
        snap: dict[str, list[dict[str, Any]]] = {f"{k}s": [] for k in kinds}
        for i in range(entities):
            entity = order(i, i + (1 if i < changed else 0))
            snap[f"{kinds[i % len(kinds)]}s"].append(entity)
        return snap

    first = json.dumps(snapshot(0))
    second = json.dumps(snapshot(entities // 20))
    times: list[float] = []
    found = 0
    for _ in range(rounds):
        store = EntityStore(typed_decoder())
        store.load(json.loads(first))
        fresh = json.loads(second)
        gc.collect()
        started = time.perf_counter()
        found = len(store.load(fresh))
        times.append(time.perf_counter() - started)
    print(
        f"  rebuild from a {entities:,}-entity snapshot: {statistics.median(times) * 1e3:.1f} ms "
        f"median of {rounds} ({found} differences found and emitted)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--snapshot", type=int, default=5_000)
    parser.add_argument("--end-to-end", type=int, default=20_000)
    args = parser.parse_args()
    print("props events applied per second:")
    bench_apply(props_events(args.events), args.rounds)
    anyio.run(bench_end_to_end, args.end_to_end)
    print("memory:")
    bench_memory(args.orders)
    print("rebuild:")
    bench_rebuild(args.snapshot, args.rounds)


if __name__ == "__main__":
    main()
