"""What the interleaved benchmarks share: the order of the clients in one round, and how far
the rounds' noise could move a median."""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence


def round_order(names: Sequence[str], paired: Sequence[str], round_no: int) -> list[str]:
    """The clients of one round: the library clients and the baselines they are compared with
    run back to back (seconds apart, so that the machine's drift reaches both sides of a ratio
    alike), in an order that rotates every round, so that each of them goes first as often
    (for a pair: which goes first alternates); the others rotate around them."""
    others = [name for name in names if name not in paired]
    turn = round_no % len(paired)
    block = list(paired[turn:]) + list(paired[:turn])
    shift = round_no % (len(others) + 1)
    return others[:shift] + block + others[shift:]


def median_interval(values: Sequence[float], resamples: int = 2000) -> tuple[float, float]:
    """The 5th and 95th percentiles of the median of ``values`` over bootstrap resamples (a
    fixed seed: the same rounds give the same interval)."""
    rng = random.Random(11)
    medians = sorted(
        statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples)
    )
    return medians[resamples // 20], medians[resamples - 1 - resamples // 20]
