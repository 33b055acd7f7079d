"""A bot process for fleet tests and benchmarks: one session on a shared store.

Settings come from the environment (the simulator's URLs and credentials in TRADOVATE_*,
FLEET_STORE=file:<path> or redis:<url>, FLEET_START_AT=<epoch seconds> to start in step,
FLEET_SECONDS=<how long to keep running>, FLEET_CLOCK_SPEED for a warped clock in step with the
simulator's, FLEET_CLOCK_EPOCH). Its report holds the first 8 characters of every token it used
and its session counters; run as a script, it prints the report as one JSON line.

:func:`run_children` forks the processes from a fork server (``multiprocessing``'s
``forkserver``) that has imported this module, and with it the library, HTTP clients and all:
each bot is a process of its own (its own event loop, session, connections, file handles and
locks, on the shared store), without spending 0.4 s of CPU importing the same modules again.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import multiprocessing
import multiprocessing.forkserver
import os
import time
import traceback
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import anyio

from tradovate_async import (
    Backoff,
    BudgetExhaustedError,
    FileTokenStore,
    OrderRejectedError,
    RateLimitedError,
    RateLimits,
    RedisTokenStore,
    TokenStore,
    TradovateConfig,
    TradovateError,
    TradovateSession,
)
from tradovate_async.sim import SimUser, WarpClock

if TYPE_CHECKING:  # a fleet process needs no server (nor starlette and uvicorn)
    from tradovate_async.sim import SimulatedTradovate


def child_env(sim: SimulatedTradovate, store: str, **extra: str) -> dict[str, str]:
    """The environment of a fleet process: the simulator's URLs and its default user's
    credentials (nothing inherited from TRADOVATE_*), the store, and ``extra`` FLEET_* knobs."""
    user = SimUser()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADOVATE_")}
    env.update(
        TRADOVATE_API_URL=sim.api_url,
        TRADOVATE_WS_URL=sim.ws_url,
        TRADOVATE_MD_URL=sim.md_url,
        TRADOVATE_USERNAME=user.username,
        TRADOVATE_PASSWORD=user.password,
        TRADOVATE_APP_ID=user.app_id,
        TRADOVATE_SEC=user.sec,
        TRADOVATE_DEVICE_ID="fleet-device",
        FLEET_STORE=store,
    )
    env.update(extra)
    return env


def run_children(count: int, env: dict[str, str], *, start_in: float = 1.5) -> list[dict[str, Any]]:
    """Start ``count`` fleet processes to begin together ``start_in`` seconds from now; their
    reports. Blocking: call it from a worker thread in async code."""
    env = {**env, "FLEET_START_AT": str(time.time() + start_in)}
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, "redis.asyncio"])  # what a bot imports
    started = []
    for _ in range(count):
        reports, report = context.Pipe(duplex=False)
        process = context.Process(target=_bot, args=(env, report), daemon=True)
        process.start()
        report.close()  # the child holds its end: EOF here once it is gone
        started.append((process, reports))
    results = []
    for process, reports in started:
        try:
            result = reports.recv() if reports.poll(300) else {"error": "no report in 300 s"}
        except EOFError:
            result = {"error": "it ended without a report"}
        process.join(30)
        if "error" in result or process.exitcode != 0:
            failure = str(result.get("error", ""))[-2000:]
            raise RuntimeError(f"a fleet process failed ({process.exitcode}):\n{failure}")
        results.append(result)
    return results


@atexit.register
def _stop_fork_server() -> None:
    """Stop the fork server (if :func:`run_children` started one) and wait for it, so that its
    CPU time and its bots' count for this process, as a subprocess's would (``time``)."""
    stop = getattr(multiprocessing.forkserver._forkserver, "_stop", None)  # CPython's tests use it
    if stop is not None:
        stop()


def _bot(env: dict[str, str], report: Connection) -> None:
    """A forked fleet process: ``env`` is its environment; its report (or the traceback that
    ended it) goes back through ``report``."""
    os.environ.clear()
    os.environ.update(env)
    try:
        report.send(anyio.run(main))
    except BaseException:
        report.send({"error": traceback.format_exc()})
        raise


def make_store(spec: str) -> TokenStore:
    kind, _, where = spec.partition(":")
    if kind == "file":
        return FileTokenStore(where)
    if kind == "redis":
        return RedisTokenStore(where)
    raise SystemExit(f"unknown store {spec!r}")


async def hammer(
    session: TradovateSession, seconds: float, workers: int, pause: float = 0.0
) -> dict[str, int]:
    """Budget mode: ``workers`` tasks send as fast as they can for ``seconds`` (real), resting
    ``pause`` seconds between tries: reads, every 10th a command, every 25th a
    ``user/syncrequest``. Counts what came of each."""
    counts = {"tried": 0, "answered": 0, "refused": 0, "429": 0, "failed": 0}
    deadline = time.monotonic() + seconds

    async def worker(offset: int) -> None:
        i = offset
        while time.monotonic() < deadline:
            i += 1
            counts["tried"] += 1
            try:
                if i % 10 == 0:
                    await session.post("order/cancelorder", json={"orderId": 1})
                elif i % 25 == 0:
                    await session.post("user/syncrequest", json={"users": []})
                else:
                    await session.get("account/list")
                counts["answered"] += 1
            except BudgetExhaustedError:
                counts["refused"] += 1
            except RateLimitedError:
                counts["429"] += 1
            except OrderRejectedError:
                counts["answered"] += 1  # the server answered the command (no such order)
            except TradovateError:
                counts["failed"] += 1
            await anyio.sleep(pause)

    async with anyio.create_task_group() as tg:
        for n in range(workers):
            tg.start_soon(worker, n * 7)
    return counts


async def main() -> dict[str, Any]:
    config = TradovateConfig.from_env(None)
    store = make_store(os.environ["FLEET_STORE"])
    start_at = float(os.environ.get("FLEET_START_AT", "0"))
    seconds = float(os.environ.get("FLEET_SECONDS", "0"))
    speed = float(os.environ.get("FLEET_CLOCK_SPEED", "1"))
    epoch = float(os.environ.get("FLEET_CLOCK_EPOCH", "0")) or None
    clock = WarpClock(speed, epoch=epoch)
    await anyio.sleep(max(0.0, start_at - time.time()))
    prefixes: list[str] = []
    try:
        async with TradovateSession(
            config,
            store=store,
            clock=clock,
            renew_before=float(os.environ.get("FLEET_RENEW_BEFORE", "300")),
            check_interval=0.01 * clock.speed,
            renewal_backoff=Backoff(0.05 * clock.speed, 60.0 * clock.speed),
            rate_limits=RateLimits(
                per_hour=int(os.environ.get("FLEET_PER_HOUR", "4500")),
                syncrequests_per_hour=int(os.environ.get("FLEET_SYNC_PER_HOUR", "270")),
            ),
        ) as session:
            session.add_token_listener(lambda t: prefixes.append(t.access_token.prefix()))
            prefixes.append(session.token.access_token.prefix())
            counts: dict[str, int] = {}
            if os.environ.get("FLEET_MODE") == "budget":
                workers = int(os.environ.get("FLEET_WORKERS", "4"))
                pause = float(os.environ.get("FLEET_PAUSE", "0"))
                counts = await hammer(session, seconds, workers, pause)
            else:
                await session.get("account/list")
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    await session.get("account/list")
                    await anyio.sleep(0.01)
            stats = session.stats
    finally:
        await store.aclose()
    return {
        "tokens": sorted(set(prefixes)),
        "logins": stats.logins,
        "renewals": stats.renewals,
        "adopted": stats.adopted_from_store,
        "budget": dataclasses.asdict(stats.budget),
        "counts": counts,
    }


if __name__ == "__main__":
    print(json.dumps(anyio.run(main)), flush=True)
