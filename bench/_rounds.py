"""The order of the clients in one round of an interleaved benchmark, shared by the scripts."""

from __future__ import annotations

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
