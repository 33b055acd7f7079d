"""A fleet sharing one token through Redis: N bot processes, one login, one renewal.

Each worker is a separate process with its own session on a ``RedisTokenStore``; the store's
distributed lock makes the first one log in and the others adopt its token. Needs the
``redis`` extra and ``TRADOVATE_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``).

    python examples/redis_fleet.py [workers]
"""

from __future__ import annotations

import multiprocessing
import os
import sys

import anyio
from dotenv import dotenv_values

from tradovate_async import RedisTokenStore, TradovateConfig, TradovateSession


def redis_url() -> str:
    """``TRADOVATE_REDIS_URL`` from the environment, else from ``.env``, else a local Redis."""
    value = os.environ.get("TRADOVATE_REDIS_URL") or dotenv_values(".env").get(
        "TRADOVATE_REDIS_URL"
    )
    return value or "redis://127.0.0.1:6379/0"


async def worker(index: int) -> tuple[int, str, int]:
    store = RedisTokenStore(redis_url())
    try:
        async with TradovateSession(TradovateConfig.from_env(), store=store) as session:
            await session.get("account/list")
            return index, session.token.access_token.prefix(), session.stats.logins
    finally:
        await store.aclose()


def run_worker(index: int) -> tuple[int, str, int]:
    return anyio.run(worker, index)


def main() -> None:
    workers = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        results = pool.map(run_worker, range(workers))
    for index, prefix, logins in results:
        print(f"worker {index}: token {prefix}..., logins made by this worker: {logins}")
    total = sum(logins for _, _, logins in results)
    print(f"{workers} workers, {len({p for _, p, _ in results})} token(s), {total} login(s) in all")


if __name__ == "__main__":
    main()
