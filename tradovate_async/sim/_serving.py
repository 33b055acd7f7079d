"""The simulator's server thread: uvicorn on its own event loop, started and stopped from
the caller's thread.

The server gets its own thread and event loop (like httpx's test server) so that it behaves as
an independent process would: a client that blocks its own loop cannot stall the server, and
the server's timers keep running whatever the test does. :class:`ServerThread` owns the
listening socket, the thread, its loop and uvicorn, and runs coroutines on that loop for the
control methods of :class:`~tradovate_async.sim.SimulatedTradovate`; split out of it when it
passed 400 lines (issue 8).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["ServerThread"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Background = Callable[[], Coroutine[Any, Any, None]]
_CONTROL_TIMEOUT = 10.0
_GRACEFUL = 0.5  # seconds in-flight requests get to finish when the simulator stops


class _QuietWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol without per-frame DEBUG logs.

    With DEBUG logging on, the websockets protocol logs the start and end of every frame,
    which for ``authorize`` is most of a token; the simulator keeps to 8 characters.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn.debug = False


def _listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket.

    Created with an explicit ``IPPROTO_TCP``: asyncio turns on ``TCP_NODELAY`` only for
    sockets whose ``proto`` says TCP, and ``socket.create_server`` leaves it 0. Without
    NODELAY uvicorn's separate header and body writes meet delayed ACKs: 40 ms per request.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if os.name != "nt":  # on Windows SO_REUSEADDR would let another process share the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(512)
    except BaseException:
        sock.close()
        raise
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, telling the starting thread when it accepts connections."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

        self._wake: asyncio.Event | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._wake = asyncio.Event()
        await super().startup(sockets=sockets)
        self._on_ready()

    async def main_loop(self) -> None:
        # uvicorn polls ``should_exit`` every 0.1 s; waking on an event makes stop() prompt.
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            assert self._wake is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn's own shutdown always sleeps 0.1 s; every test starts and stops a simulator,
        # so poll instead. Same steps: stop listening, ask connections to close, wait for them
        # and for request tasks (bounded by the graceful timeout), then cancel stragglers.
        loop = asyncio.get_running_loop()
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        deadline = loop.time() + _GRACEFUL
        state = self.server_state
        while (state.connections or state.tasks) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        for task in list(state.tasks):
            task.cancel()
        for connection in list(state.connections):  # e.g. a request still in a Fault.delay
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        await asyncio.sleep(0)  # let connection_lost() run
        for server in self.servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        await self.lifespan.shutdown()

    def request_exit(self) -> None:
        """Ask the server to stop; call on its loop."""
        self.should_exit = True
        if self._wake is not None:
            self._wake.set()


class ServerThread:
    """The listening socket, the server thread and its loop (see the module notes).

    Args:
        host, port: where to listen; port 0 picks a free port (see :attr:`port`).
        certfile, keyfile: PEM files; both given means https/wss.
    """

    def __init__(self, host: str, port: int, certfile: str | None, keyfile: str | None) -> None:
        if (certfile is None) != (keyfile is None):
            raise ValueError("give both certfile and keyfile, or neither")
        self.host = host
        self._port = port
        self.certfile = certfile
        self._keyfile = keyfile
        self._sock: socket.socket | None = None
        self.bound_port: int | None = None
        self._thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: _Server | None = None
        self._ready = threading.Event()
        self._finished = threading.Event()
        self._error: BaseException | None = None
        self._stopped = False
        self._background: Background | None = None
        self._closing: Background | None = None

    @property
    def port(self) -> int:
        """The bound port (known once started; kept after stop)."""
        if self.bound_port is None:
            raise RuntimeError("the simulator is not started")
        return self.bound_port

    @property
    def started(self) -> bool:
        """Started, with its loop running (or stopped since)."""
        return self.loop is not None and self._thread is not None

    def start(self, app: Any, *, background: Background | None, closing: Background) -> None:
        """Bind, start the thread serving ``app`` and return once it accepts connections.
        ``background`` runs beside the server; ``closing`` runs first when it stops."""
        if self._thread is not None or self._stopped:
            raise RuntimeError("a SimulatedTradovate can be started only once")
        self._background, self._closing = background, closing
        sock = _listening_socket(self.host, self._port)
        self._sock = sock
        self.bound_port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            http="h11",
            ws=_QuietWebSocketProtocol,
            ws_ping_interval=None,
            ws_ping_timeout=None,
            proxy_headers=False,
            server_header=False,
            date_header=False,  # uvicorn's Date is the host's clock; ours is the server's
            ssl_certfile=self.certfile,
            ssl_keyfile=self._keyfile,
        )
        try:
            config.load()  # surfaces TLS file errors here, in the caller's thread
        except BaseException:
            sock.close()
            self._sock = None
            raise
        self._server = _Server(config, self._ready.set)
        self._thread = threading.Thread(
            target=self._thread_main, name=f"tradovate-sim-{self.port}", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            sock.close()
            raise RuntimeError("the simulator failed to start") from self._error

    def stop(self) -> bool:
        """Run ``closing``, stop the server and join its thread. Safe to call twice; whether
        there was a running server to stop."""
        thread, loop, server = self._thread, self.loop, self._server
        self._stopped = True
        # ``_finished`` rather than ``thread.is_alive()``: on Python 3.11 a KeyboardInterrupt
        # inside ``Thread.join`` can leave ``is_alive()`` False while the thread still runs.
        if thread is None or self._finished.is_set():
            if thread is not None:
                thread.join(_CONTROL_TIMEOUT)
            self._close_socket()
            return False
        if threading.current_thread() is thread:
            raise RuntimeError("stop() cannot be called from the simulator's own thread")
        if loop is not None and server is not None and self._closing is not None:
            with_sockets = asyncio.run_coroutine_threadsafe(self._closing(), loop)
            try:
                with_sockets.result(_CONTROL_TIMEOUT)
            except (concurrent.futures.TimeoutError, RuntimeError):
                logger.warning("simulator sockets did not close in time")
            loop.call_soon_threadsafe(server.request_exit)
        if self._finished.wait(_CONTROL_TIMEOUT):
            thread.join(_CONTROL_TIMEOUT)
        else:  # pragma: no cover - uvicorn's graceful timeout bounds this
            logger.warning("simulator thread did not stop in time")
        self._close_socket()
        return True

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def wait(self) -> None:
        """Block until the server thread finishes."""
        while not self._finished.wait(0.5):
            pass

    @property
    def thread_started(self) -> bool:
        """Whether :meth:`start` got as far as starting the thread."""
        return self._thread is not None

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
            logger.exception("simulator thread failed")
        finally:
            self._ready.set()
            self._finished.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        server = self._server
        assert server is not None and self._sock is not None
        background = asyncio.create_task(self._background()) if self._background else None
        try:
            await server.serve(sockets=[self._sock])
        finally:
            if background is not None:
                background.cancel()
                await asyncio.gather(background, return_exceptions=True)

    def abort_client(self, client: tuple[str, int] | None) -> bool:
        """Abort the TCP connection of a peer address (runs on the server loop)."""
        server = self._server
        if server is None or client is None:
            return False
        found = False
        for protocol in list(server.server_state.connections):
            transport = getattr(protocol, "transport", None)
            if getattr(protocol, "client", None) == client and transport is not None:
                transport.abort()
                found = True
        return found

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server loop from another thread and wait for its result."""
        loop = self.loop
        if loop is None or self._thread is None or self._finished.is_set():
            coro.close()
            raise RuntimeError("the simulator is not running")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("control methods cannot be called from the simulator's thread")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(_CONTROL_TIMEOUT)
