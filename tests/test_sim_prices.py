"""The simulator's price path: deterministic per seed, and bounded in memory however long the
simulator runs (the soak runs 30 simulated days; the last 48 hours drawn are kept, not every
hour, and an hour drawn again is the same)."""

from __future__ import annotations

import tracemalloc

from tradovate_async.sim._prices import HOUR, PricePath


def test_an_hour_is_the_same_whenever_it_is_drawn() -> None:
    first = PricePath(7)
    prices, sizes = first.hour(3570918, 500_000, 5870.25, 0.25)
    for hour in range(500_001, 500_060):  # pushes the first hour out of what is kept
        first.hour(3570918, hour, 5870.25, 0.25)
    again, again_sizes = first.hour(3570918, 500_000, 5870.25, 0.25)
    assert list(again) == list(prices) and list(again_sizes) == list(sizes)
    assert len(prices) == len(sizes) == HOUR
    assert all(1 <= size <= 20 for size in sizes)
    assert all(round(price / 0.25) * 0.25 == price for price in prices)


def test_days_of_hours_keep_a_bounded_amount_of_memory() -> None:
    path = PricePath(1)
    path.hour(3570918, 0, 5870.25, 0.25)
    tracemalloc.start()
    try:
        for hour in range(1, 24 * 5):  # 5 days
            path.hour(3570918, hour, 5870.25, 0.25)
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 2_500_000, f"{held:,} bytes held for 5 days of prices"
