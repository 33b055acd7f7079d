"""A pytest plugin for testing your own bots against the simulator: ``tradovate_async.testing``.

Installed with the package and registered through the ``pytest11`` entry point, so the fixtures
are there in any project that has ``tradovate-async[testing]`` installed. A bot test is::

    async def test_my_bot(tradovate_sim, tradovate_session):
        me = await tradovate_session.me()
        assert me.name == tradovate_sim.users[0].username

The async fixtures run on anyio's pytest plugin (which anyio installs): they ask for
``anyio_backend`` themselves, so an ``async def`` test that uses one needs no marker. The
client's sockets are asyncio-only, so the backend must be ``"asyncio"`` (define an
``anyio_backend`` fixture returning ``"asyncio"`` if trio is installed too).

Loading the plugin costs nothing in a project that does not use it: the simulator (and with
it starlette and uvicorn) is imported only when a fixture is set up.

Fixtures (function scope):

``tradovate_clock``
    A :class:`~tradovate_async.sim.WarpClock` shared by the simulator and the session.
``tradovate_sim``
    A running :class:`~tradovate_async.sim.SimulatedTradovate` on a free loopback port.
``tradovate_config``
    A :class:`~tradovate_async.TradovateConfig` for the simulator's first user.
``tradovate_session``
    An open :class:`~tradovate_async.TradovateSession` on the simulator (logged in).
``tradovate_socket``, ``tradovate_md_socket``
    An authorized trading and market-data :class:`~tradovate_async.TradovateWebSocket`.
``tradovate_faults``
    A :class:`FaultInjector` for the simulator; faults are cleared after the test.

Options go on the ``tradovate_sim`` marker: ``speed`` for the clock, anything else to
:class:`~tradovate_async.sim.SimulatedTradovate`::

    @pytest.mark.tradovate_sim(speed=1000, token_lifetime=600)
    async def test_renews_in_the_background(tradovate_sim, tradovate_session): ...
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Literal

import pytest

if TYPE_CHECKING:
    from ._config import TradovateConfig
    from ._session import TradovateSession
    from ._ws import TradovateWebSocket
    from .sim import Fault, SimulatedTradovate, WarpClock

__all__ = [
    "FaultInjector",
    "tradovate_clock",
    "tradovate_config",
    "tradovate_faults",
    "tradovate_md_socket",
    "tradovate_session",
    "tradovate_sim",
    "tradovate_socket",
]

logger = logging.getLogger(__name__)

MARKER = "tradovate_sim"


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``tradovate_sim`` marker (so ``--strict-markers`` projects accept it)."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(speed=1.0, **options): options for the tradovate_sim fixture "
        "(speed: the WarpClock's; the rest go to SimulatedTradovate)",
    )


def _marker_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker(MARKER)
    if marker is None:
        return {}
    if marker.args:
        raise pytest.UsageError(f"@pytest.mark.{MARKER} takes keyword arguments only")
    return dict(marker.kwargs)


def _check_backend(anyio_backend: object) -> None:
    name = anyio_backend[0] if isinstance(anyio_backend, tuple) else anyio_backend
    if name != "asyncio":
        pytest.skip("tradovate_async's sockets run on asyncio only (anyio_backend='asyncio')")


class FaultInjector:
    """Scripted trouble for the simulator under test, in a bot's vocabulary.

    Every method acts on the running ``tradovate_sim``; :meth:`inject` is the general form
    (see :meth:`SimulatedTradovate.inject <tradovate_async.sim.SimulatedTradovate.inject>`,
    with a :class:`~tradovate_async.sim.Fault`).
    The fixture clears pending faults when the test ends.
    """

    def __init__(self, sim: SimulatedTradovate, clock: WarpClock) -> None:
        self.sim = sim
        self.clock = clock

    def __repr__(self) -> str:
        return f"FaultInjector(sim={self.sim.api_url!r})"

    def inject(
        self,
        path: str,
        fault: Fault,
        times: int = 1,
        *,
        transport: Literal["rest", "ws"] | None = None,
    ) -> None:
        """Apply ``fault`` to the next ``times`` requests to ``path`` (``*``: any path)."""
        self.sim.inject(path, fault, times, transport=transport)

    def penalize_login(self, p_time: float = 1.0, *, captcha: bool = False, times: int = 1) -> None:
        """Answer the next token requests with a penalty ticket (``p-time``, maybe captcha)."""
        from .sim import Fault

        self.sim.inject("auth/accesstokenrequest", Fault.penalty(p_time, captcha), times)

    def refuse_authorize(self, times: int = 1) -> None:
        """Make the next ``times`` socket ``authorize`` requests answer 401."""
        from .sim import Fault

        self.sim.inject("authorize", Fault.status(401), times, transport="ws")

    def drop_sockets(self, kind: str | None = None) -> int:
        """Cut every socket (or every socket of ``kind``) without a close frame."""
        return self.sim.drop_sockets(kind)

    def revoke_tokens(self, username: str | None = None) -> None:
        """End the sessions of ``username`` (default: everyone): tokens get 401."""
        self.sim.revoke_tokens(username)

    def jump_clock(self, seconds: float) -> None:
        """Move the shared wall clock at once, as a suspended laptop does on waking."""
        self.clock.jump(seconds)

    def clear(self) -> None:
        """Forget faults not yet served."""
        self.sim.clear_faults()


@pytest.fixture
def tradovate_clock(request: pytest.FixtureRequest) -> WarpClock:
    """A WarpClock (``speed`` from the ``tradovate_sim`` marker, default 1) shared by the
    simulator and the session, so that token lifetimes can pass in seconds."""
    from .sim import WarpClock

    return WarpClock(float(_marker_options(request).get("speed", 1.0)))


@pytest.fixture
def tradovate_sim(
    request: pytest.FixtureRequest, tradovate_clock: WarpClock
) -> Iterator[SimulatedTradovate]:
    """A running simulator on a free loopback port, stopped after the test.

    It runs in its own thread, so this fixture is synchronous and works in sync tests too.
    """
    from .sim import SimulatedTradovate

    options = _marker_options(request)
    options.pop("speed", None)
    options.setdefault("clock", tradovate_clock.time)
    sim = SimulatedTradovate(**options)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def tradovate_config(tradovate_sim: SimulatedTradovate) -> TradovateConfig:
    """The simulator's URLs and its first user's credentials."""
    return tradovate_sim.config()


@pytest.fixture
async def tradovate_session(
    anyio_backend: object, tradovate_config: TradovateConfig, tradovate_clock: WarpClock
) -> AsyncIterator[TradovateSession]:
    """An open session on the simulator (logged in, renewing in the background)."""
    _check_backend(anyio_backend)
    from ._session import TradovateSession

    async with TradovateSession(tradovate_config, clock=tradovate_clock) as session:
        yield session


@pytest.fixture
async def tradovate_socket(
    anyio_backend: object, tradovate_session: TradovateSession
) -> AsyncIterator[TradovateWebSocket]:
    """An authorized trading socket of ``tradovate_session``."""
    async with tradovate_session.websocket("trading") as socket:
        yield socket


@pytest.fixture
async def tradovate_md_socket(
    anyio_backend: object, tradovate_session: TradovateSession
) -> AsyncIterator[TradovateWebSocket]:
    """An authorized market-data socket of ``tradovate_session``."""
    async with tradovate_session.websocket("md") as socket:
        yield socket


@pytest.fixture
def tradovate_faults(
    tradovate_sim: SimulatedTradovate, tradovate_clock: WarpClock
) -> Iterator[FaultInjector]:
    """Fault injection for ``tradovate_sim``; pending faults are cleared after the test."""
    injector = FaultInjector(tradovate_sim, tradovate_clock)
    try:
        yield injector
    finally:
        injector.clear()
