"""Token stores against hostile neighbours: planted files, colliding names, leaky URLs."""

from __future__ import annotations

import pytest

from tradovate_async import MemoryTokenStore, RedisTokenStore, TradovateSession
from tradovate_async.sim import SimulatedTradovate, SimUser, WarpClock


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6380/0?password=Q-Secret-Pass",
        "redis://bot:Q-Secret-Pass@127.0.0.1:6380/0",
        "redis://Q-Secret-Pass@127.0.0.1:6380/0",
        "rediss://:Q-Secret-Pass@127.0.0.1:6380/0?ssl_cert_reqs=none&username=bot",
        "redis://127.0.0.1:6380/0?db=1&Password=Q-Secret-Pass#Q-Secret-Pass",
        "redis://127.0.0.1:6380/0?pass%77ord=Q-Secret-Pass",
    ],
)
async def test_redis_repr_masks_every_credential(url: str) -> None:
    store = RedisTokenStore(url)
    try:
        shown = repr(store)
    finally:
        await store.aclose()
    assert "Q-Secret" not in shown
    assert "127.0.0.1:6380" in shown


async def test_users_whose_names_contain_the_separator_do_not_share_a_token() -> None:
    first = SimUser(username="alice|ops", app_id="bot", password="pw-first", user_id=1)
    second = SimUser(
        username="alice", app_id="ops|bot", password="pw-second", user_id=2, accounts=()
    )
    clock = WarpClock(speed=1.0)
    store = MemoryTokenStore()
    async with SimulatedTradovate(clock=clock.time, users=(first, second)) as sim:
        one = TradovateSession(sim.config(first), store=store, clock=clock.now)
        two = TradovateSession(sim.config(second), store=store, clock=clock.now)
        async with one, two:
            assert one.token.access_token != two.token.access_token
            assert (await one.me()).user_id == 1
            assert (await two.me()).user_id == 2
        assert sim.logins == 2
