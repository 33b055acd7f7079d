"""An offline Tradovate server for tests, examples and benchmarks.

``SimulatedTradovate`` serves the token endpoints, every entity and command of the REST
catalogue (from a seeded state: accounts, cash balances, positions, front-month equity index
and energy contracts, ...) and the
trading and market-data WebSockets on 127.0.0.1, in its own thread, following the project's
protocol reference. Faults (penalty tickets, HTTP errors, garbage bodies, delays, dropped
connections) are scripted per path with :meth:`SimulatedTradovate.inject`. It needs the
``sim`` extra (starlette and uvicorn).

Example::

    async with SimulatedTradovate(token_lifetime=60) as sim:
        config = sim.config()
        ...
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._clock import SkewedClock, WarpClock
from ._types import (
    ConnectionInfo,
    Fault,
    FaultKind,
    RequestRecord,
    SimAccount,
    SimPosition,
    SimUser,
)

if TYPE_CHECKING:
    from ._server import SimulatedTradovate

__all__ = [
    "ConnectionInfo",
    "Fault",
    "FaultKind",
    "RequestRecord",
    "SimAccount",
    "SimPosition",
    "SimUser",
    "SimulatedTradovate",
    "SkewedClock",
    "WarpClock",
]

logger = logging.getLogger(__name__)


def _load(name: str) -> object:
    """The server (and with it starlette and uvicorn) is imported when first asked for: the
    clocks and plain types serve child processes and the pytest plugin without it."""
    if name != "SimulatedTradovate":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from ._server import SimulatedTradovate

    globals()[name] = SimulatedTradovate
    return SimulatedTradovate


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if not TYPE_CHECKING:  # for mypy, a name missing from the imports above stays an error
    __getattr__ = _load
