"""One deterministic, seedable price path per contract: quotes, DOM, histograms, chart
history and live bars all read from it, so they agree with each other.

The path has one trade per second of market time. Hour ``h`` is a random walk of one-tick steps
from an anchor price to the next hour's anchor (a Brownian bridge), drawn from a generator
seeded by ``(seed, contract, h)``; anchors are a bounded function of the hour. Any second can
therefore be computed without the ones before it, history of any length costs only the hours it
spans (cached), and two simulators with the same seed produce the same market.

Product specifications (tick size, ``valuePerPoint``) of the symbols the simulator knows are
here too, because prices are whole ticks of them.
"""

from __future__ import annotations

import array
import dataclasses
import functools
import itertools
import math
import random
import zlib
from collections.abc import Sequence
from typing import Final

__all__ = ["HOUR", "PricePath", "ProductSpec", "product_of", "product_spec", "root_spec"]

HOUR: Final = 3600
_STEPS: Final = (-1, 0, 0, 1)
_SIZES: Final = tuple(range(1, 21))
#: strides from which ``span`` reads the hourly anchors instead of every second
_COARSE: Final = 60


@dataclasses.dataclass(frozen=True, slots=True)
class ProductSpec:
    """What the simulator knows of a futures product."""

    name: str
    description: str
    tick_size: float
    value_per_point: float
    base_price: float
    product_id: int


# Public contract specifications (CME): E-mini S&P 500 $50/point, tick 0.25; E-mini Nasdaq-100
# $20/point; Crude oil 1,000 barrels ($1,000/point), tick 0.01; Gold 100 oz, tick 0.10.
_PRODUCTS: Final = {
    "ES": ProductSpec("ES", "E-Mini S&P 500", 0.25, 50.0, 5800.0, 9001),
    "MES": ProductSpec("MES", "Micro E-Mini S&P 500", 0.25, 5.0, 5800.0, 9002),
    "NQ": ProductSpec("NQ", "E-Mini NASDAQ 100", 0.25, 20.0, 20500.0, 9003),
    "CL": ProductSpec("CL", "Crude Oil", 0.01, 1000.0, 70.0, 9004),
    "GC": ProductSpec("GC", "Gold", 0.1, 100.0, 2650.0, 9005),
    # Added for the seeded instruments (sim/_instruments.py): E-mini Dow $5/point, tick 1;
    # E-mini Russell 2000 $50/point, tick 0.10; Micro Nasdaq $2/point; Micro crude 100 barrels;
    # Henry Hub natural gas 10,000 MMBtu, tick 0.001.
    "YM": ProductSpec("YM", "E-Mini Dow ($5)", 1.0, 5.0, 44000.0, 9006),
    "RTY": ProductSpec("RTY", "E-Mini Russell 2000", 0.1, 50.0, 2400.0, 9007),
    "MNQ": ProductSpec("MNQ", "Micro E-Mini NASDAQ 100", 0.25, 2.0, 20500.0, 9008),
    "MCL": ProductSpec("MCL", "Micro WTI Crude Oil", 0.01, 100.0, 70.0, 9009),
    "NG": ProductSpec("NG", "Henry Hub Natural Gas", 0.001, 10000.0, 3.2, 9010),
}


def product_of(symbol: str) -> str:
    """``ESZ6`` -> ``ES``, ``CLF27`` -> ``CL``: the name without its month code and year."""
    text = symbol.strip().upper()
    end = len(text)
    while end > 0 and text[end - 1].isdigit():
        end -= 1
    return text[: end - 1] if end >= 2 else text


def product_spec(symbol: str) -> ProductSpec:
    """The product of ``symbol``; unknown roots trade like ES ($50/point, 0.25 ticks)."""
    return root_spec(product_of(symbol))


def root_spec(root: str) -> ProductSpec:
    """The product named ``root`` (``ES``, ``CL`` ...)."""
    root = root.strip().upper()
    spec = _PRODUCTS.get(root)
    if spec is not None:
        return spec
    base = _PRODUCTS["ES"]
    return dataclasses.replace(
        base,
        name=root or "SIM",
        description=f"Simulated {root}",
        product_id=9100 + zlib.crc32(root.encode()) % 800,
    )


#: Hours of prices kept per path. An hour is 32 KB (an array of 3,600 doubles and 3,600 size
#: bytes): a simulator that runs for weeks keeps at most this many, about 1.5 MB.
_HOURS_KEPT: Final = 48


class PricePath:
    """Prices and trade sizes per second of market time, for any contract."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._hour = functools.lru_cache(maxsize=_HOURS_KEPT)(self._make_hour)

    def _anchor(self, cid: int, hour: int, base: float, tick: float) -> float:
        """A bounded, deterministic price for the start of ``hour`` (about +-2% of base)."""
        phase = (zlib.crc32(f"{self.seed}:{cid}".encode()) % 1000) / 1000 * 2 * math.pi
        wave = math.sin(hour / 7.0 + phase) * 0.012 + math.sin(hour / 1.7 + phase) * 0.006
        noise = (zlib.crc32(f"{self.seed}:{cid}:{hour}".encode()) % 2001 - 1000) / 1000 * 0.002
        return round(round(base * (1 + wave + noise) / tick) * tick, 9)

    def _make_hour(
        self, cid: int, hour: int, base: float, tick: float
    ) -> tuple[Sequence[float], Sequence[int]]:
        rng = random.Random(zlib.crc32(f"{self.seed}:{cid}:{hour}:walk".encode()))
        start = self._anchor(cid, hour, base, tick)
        end = self._anchor(cid, hour + 1, base, tick)
        walk = [0, *itertools.accumulate(rng.choices(_STEPS, k=HOUR))]
        drift = (end - start) / tick - walk[-1]
        first = start / tick
        per_second = drift / HOUR
        prices = array.array(
            "d", (round(round(first + walk[i] + per_second * i) * tick, 9) for i in range(HOUR))
        )
        sizes = bytes(rng.choices(_SIZES, k=HOUR))
        return prices, sizes

    def hour(
        self, cid: int, hour: int, base: float, tick: float
    ) -> tuple[Sequence[float], Sequence[int]]:
        """Prices and trade sizes of each second of ``hour`` (epoch hours)."""
        return self._hour(cid, hour, base, tick)

    def at(self, cid: int, second: int, base: float, tick: float) -> tuple[float, int]:
        """Trade price and size at epoch ``second``."""
        prices, sizes = self.hour(cid, second // HOUR, base, tick)
        index = second % HOUR
        return prices[index], sizes[index]

    def span(
        self, cid: int, first: int, last: int, base: float, tick: float, stride: int = 1
    ) -> list[tuple[int, float, int]]:
        """``(second, price, size)`` for ``first <= second < last``, every ``stride`` seconds.

        From a stride of a minute on (daily bars), prices are interpolated between the hourly
        anchors and sizes are nominal: cheap, deterministic, and a day's bar still moves."""
        out: list[tuple[int, float, int]] = []
        if stride >= _COARSE:
            # long bars (daily): between the hourly anchors, without drawing every second
            for s in range(first, last, stride):
                hour, into = divmod(s, HOUR)
                a = self._anchor(cid, hour, base, tick)
                b = self._anchor(cid, hour + 1, base, tick)
                price = round(round((a + (b - a) * into / HOUR) / tick) * tick, 9)
                out.append((s, price, stride * 10))
            return out
        second = first
        while second < last:
            prices, sizes = self.hour(cid, second // HOUR, base, tick)
            stop = min(last, (second // HOUR + 1) * HOUR)
            for s in range(second, stop, stride):
                out.append((s, prices[s % HOUR], sizes[s % HOUR]))
            # keep the stride's phase across hour boundaries
            second += ((stop - second + stride - 1) // stride) * stride
        return out
