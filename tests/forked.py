"""Child processes forked from a preloaded fork server, for tests that run the CLI or a
``python -c`` child: each child starts with the library, its HTTP clients and its stores already
imported, instead of paying 0.2-0.5 s of CPU for a fresh interpreter's start-up and imports.

* :func:`run_module` is ``subprocess.run([python, "-m", module, *args], capture_output=True)``:
  a return code, stdout and stderr (``fresh=True`` runs a real fresh interpreter instead, for
  the tests that are about one).
* :func:`spawn_code` is ``python -c code *args`` as a long-lived child with pipes for stdin and
  stdout (a :class:`ForkedProcess`, used like an ``anyio`` process).

The server is a fresh interpreter started once per test process (lazily, on first use). It
imports :data:`PRELOAD`, then forks one child per request. A child gets, as a real run would:
its own argv (``sys.argv[0]`` the module's file, or ``-c``), environment (``os.environ`` is
replaced), working directory, umask, stdin/stdout/stderr (the given descriptors on 0, 1 and 2,
with new ``sys.std*`` objects built as the interpreter builds them, ``PYTHONUNBUFFERED``
honoured), ``sys.path[0]`` (the working directory for ``-m``, ``''`` for ``-c``), a fresh
``__main__`` module, and a normal interpreter exit: a ``SystemExit`` code, an uncaught
exception's traceback and exit code 1, threads joined, ``atexit`` handlers run, streams flushed.
Its exit code comes back through the server as ``subprocess`` reports it (``-N`` for signal N).

What a fresh process would not have, and how it is avoided: the server never configures
logging, never runs an event loop, starts no thread (it checks), reads no ``.env`` and calls
none of the library's per-process caches; the child closes every descriptor the server holds
(its control socket, the other children's channels and pidfds, the selector) and resets
``tempfile``'s cached directory. What stays the server's: the string hash seed, the parent
process (the server), the import order of the preloaded modules, ``sys.path`` past its first
entry, and the interpreter's start-up settings; a request whose environment differs from the
server's in a variable read only at start-up (:data:`STARTUP_VARS`) is refused rather than run
with the wrong one. The preloaded objects are frozen (``gc.freeze``, as Python's documentation
advises for forking servers): the cyclic collector never walks them, which makes a child's exit
four times cheaper (50 ms, not 200) and leaves them uncollected at exit, where a fresh process
would collect any that had become garbage.
"""

from __future__ import annotations

import atexit
import builtins
import gc
import importlib
import io
import json
import locale
import os
import runpy
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

REPO_ROOT = Path(__file__).resolve().parents[1]

#: What the server imports before forking: everything a CLI command, ``doctor`` or a store
#: child imports (a child imports anything else itself, as a fresh process would).
PRELOAD = (
    "anyio._backends._asyncio",
    "tradovate_async",
    "tradovate_async._cli",
    "tradovate_async._config",
    "tradovate_async._doctor",
    "tradovate_async._file_store",
    "tradovate_async._redis_store",
    "tradovate_async._session",
    "cryptography.fernet",
    "redis.asyncio",
)

#: Environment variables the interpreter reads only at start-up: a child cannot have them
#: differ from the server's.
STARTUP_VARS = (
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONDEVMODE",
    "PYTHONHASHSEED",
    "PYTHONIOENCODING",
    "PYTHONOPTIMIZE",
    "PYTHONSAFEPATH",
    "PYTHONUTF8",
    "PYTHONWARNINGS",
)

_BOOT = (
    "import sys; from tests.forked import run_request, serve; run_request(serve(int(sys.argv[1])))"
)
_MESSAGE_SIZE = 1 << 20


# --- the test process's side ---------------------------------------------------------------


class _Child:
    """One forked child as the test process sees it: its pid, a pidfd to signal it without a
    pid-reuse race, and the channel its exit code arrives on."""

    def __init__(self, pid: int, pidfd: int, channel: socket.socket) -> None:
        self.pid, self.pidfd, self.channel = pid, pidfd, channel
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit code once the server has reaped the child, else None (never blocks)."""
        if self.returncode is None:
            try:
                data = self.channel.recv(64, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return None
            if not data:
                raise RuntimeError("the fork server went away before the child ended")
            self.returncode = int(json.loads(data))
            self.channel.close()
            os.close(self.pidfd)
        return self.returncode

    def wait(self, timeout: float | None) -> int | None:
        """Block up to ``timeout`` seconds for the exit code."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            with selectors.DefaultSelector() as selector:
                selector.register(self.channel, selectors.EVENT_READ)
                selector.select(left)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                signal.pidfd_send_signal(self.pidfd, sig)
            except ProcessLookupError:  # it has ended; the server has its exit code
                pass


class _Server:
    """The fork server of this test process: started on first use, stopped at exit."""

    _lock = threading.Lock()
    _instance: _Server | None = None

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        self.env = env
        self.process = subprocess.Popen(
            [sys.executable, "-c", _BOOT, str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            env=env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        theirs.close()
        self.control = ours
        atexit.register(self.stop)

    @classmethod
    def get(cls) -> _Server:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def stop(self) -> None:
        """Closing the control socket ends the server (it kills any child still running); then
        reap it, so that its CPU time counts for this process as a subprocess's would."""
        self.control.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def send(self, request: dict[str, Any], fds: Sequence[int]) -> socket.socket:
        """Ask for a child with ``fds`` as its stdin, stdout and stderr; the channel its pid,
        then its exit code, come back on."""
        env: dict[str, str] = request["env"]
        for var in STARTUP_VARS:
            if env.get(var) != self.env.get(var):
                raise ValueError(f"a forked child cannot have its own {var}: use fresh=True")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            socket.send_fds(self.control, [json.dumps(request).encode()], [*fds, theirs.fileno()])
        finally:
            theirs.close()
        return ours


def _send(
    request: dict[str, Any], fds: Sequence[int], *, handed_over: Sequence[int], ours: Sequence[int]
) -> socket.socket:
    """Send ``request`` with the child's stdin, stdout and stderr (``fds``). The pipe ends
    ``handed_over`` to the child are closed here either way; if the request fails, so are the
    ends that would have been ``ours``."""
    try:
        return _Server.get().send(request, fds)
    except BaseException:
        for fd in ours:
            os.close(fd)
        raise
    finally:
        for fd in handed_over:
            os.close(fd)


def _started(channel: socket.socket) -> _Child:
    """The child whose pid (and pidfd) is waiting on ``channel``."""
    data, fds, _flags, _address = socket.recv_fds(channel, 64, 1)
    if not data:
        raise RuntimeError("the fork server failed (see stderr)")
    return _Child(int(json.loads(data)), fds[0], channel)


def _request(
    kind: str, target: str, args: Sequence[str], env: dict[str, str], cwd: Path
) -> dict[str, Any]:
    return {
        "kind": kind,
        "target": target,
        "args": list(args),
        "env": dict(env),
        "cwd": str(cwd),
        "umask": _umask(),
    }


def _umask() -> int:
    """This process's umask (a child gets it, as a subprocess does), read without setting it:
    ``os.umask`` would change it for a moment under the other threads' feet."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    raise RuntimeError("no Umask in /proc/self/status")


def run_module(
    module: str,
    args: Sequence[str],
    *,
    env: dict[str, str],
    cwd: Path,
    stdin: int | None = None,
    text: bool = True,
    timeout: float = 60.0,
    fresh: bool = False,
) -> subprocess.CompletedProcess[Any]:
    """``subprocess.run([python, "-m", module, *args], capture_output=True, ...)``, forked from
    the preloaded server (``fresh=True``: that very call). ``stdin`` is a descriptor (default:
    this process's, inherited as by ``subprocess``). Blocking: call it from a worker thread in
    async code."""
    command = [sys.executable, "-m", module, *args]
    if fresh:
        return subprocess.run(
            command, stdin=stdin, capture_output=True, text=text, env=env, cwd=cwd, timeout=timeout
        )
    deadline = time.monotonic() + timeout
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    channel = _send(
        _request("module", module, args, env, cwd),
        [0 if stdin is None else stdin, out_w, err_w],
        handed_over=(out_w, err_w),
        ours=(out_r, err_r),
    )
    child = _started(channel)
    outputs = _read_to_eof([out_r, err_r], deadline)
    returncode = child.wait(max(0.0, deadline - time.monotonic())) if outputs else None
    if outputs is None or returncode is None:
        child.send_signal(signal.SIGKILL)
        child.wait(None)
        raise subprocess.TimeoutExpired(command, timeout)
    stdout, stderr = (_decoded(outputs[fd]) if text else outputs[fd] for fd in (out_r, err_r))
    return subprocess.CompletedProcess(command, returncode, stdout, stderr)


def _read_to_eof(fds: list[int], deadline: float) -> dict[int, bytes] | None:
    """Everything written to the pipes ``fds`` (read ends, closed here) until each is at EOF,
    read together as ``communicate`` does; None if ``deadline`` passes first."""
    chunks: dict[int, list[bytes]] = {fd: [] for fd in fds}
    try:
        with selectors.DefaultSelector() as selector:
            for fd in fds:
                selector.register(fd, selectors.EVENT_READ)
            while selector.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                for key, _events in selector.select(left):
                    data = os.read(key.fd, 1 << 16)
                    if data:
                        chunks[key.fd].append(data)
                    else:
                        selector.unregister(key.fd)
    finally:
        for fd in fds:
            os.close(fd)
    return {fd: b"".join(parts) for fd, parts in chunks.items()}


def _decoded(data: bytes) -> str:
    """Bytes as ``subprocess`` decodes them with ``text=True`` (locale encoding, universal
    newlines)."""
    text = data.decode(locale.getpreferredencoding(False))
    return text.replace("\r\n", "\n").replace("\r", "\n")


class _PipeReceiveStream(anyio.abc.ByteReceiveStream):
    """The read end of a pipe, non-blocking, read on the event loop."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd

    async def receive(self, max_bytes: int = 1 << 16) -> bytes:
        while True:
            try:
                data = os.read(self._fd, max_bytes)
            except BlockingIOError:
                await anyio.wait_readable(self._fd)
                continue
            if not data:
                raise anyio.EndOfStream
            return data

    async def aclose(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _PipeSendStream(anyio.abc.ByteSendStream):
    """The write end of a pipe, non-blocking, written on the event loop."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd

    async def send(self, item: bytes) -> None:
        view = memoryview(item)
        while view:
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                await anyio.wait_writable(self._fd)

    async def aclose(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class ForkedProcess:
    """A child from :func:`spawn_code`, used as an ``anyio`` process is: ``pid``, ``stdin``,
    ``stdout``, ``returncode``, ``send_signal``, ``wait`` and ``aclose``."""

    def __init__(self, child: _Child, stdin_fd: int, stdout_fd: int) -> None:
        self._child = child
        self.pid = child.pid
        self.stdin = _PipeSendStream(stdin_fd)
        self.stdout = _PipeReceiveStream(stdout_fd)

    @property
    def returncode(self) -> int | None:
        return self._child.poll()

    def send_signal(self, sig: int) -> None:
        self._child.send_signal(sig)

    async def wait(self) -> int:
        while (code := self._child.poll()) is None:
            await anyio.wait_readable(self._child.channel)
        return code

    async def aclose(self) -> None:
        """Close the pipes and wait for the child (kill it first if it should not outlive
        them)."""
        await self.stdin.aclose()
        await self.stdout.aclose()
        await self.wait()


async def spawn_code(
    code: str, args: Sequence[str], *, env: dict[str, str], cwd: Path, stderr: int = 2
) -> ForkedProcess:
    """``python -c code *args`` forked from the preloaded server, with pipes for its stdin and
    stdout; its stderr is ``stderr`` (default: this process's, inherited)."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    channel = _send(
        _request("code", code, args, env, cwd),
        [in_r, out_w, stderr],
        handed_over=(in_r, out_w),
        ours=(in_w, out_r),
    )
    await anyio.wait_readable(channel)  # the server may still be importing: not on this loop
    return ForkedProcess(_started(channel), in_w, out_r)


# --- the fork server's side ----------------------------------------------------------------

_Children = dict[int, tuple[int, socket.socket]]  # pidfd: (pid, the channel to its client)


def serve(control_fd: int) -> dict[str, Any]:
    """The fork server: import :data:`PRELOAD`, then fork a child per request on
    ``control_fd`` until it closes. Returns only in a child, with the child's request."""
    for name in PRELOAD:
        importlib.import_module(name)
    if threading.active_count() != 1:
        raise RuntimeError(f"a preloaded module started a thread: {threading.enumerate()}")
    gc.freeze()  # the children's collector skips the preloaded objects: exits in 50 ms, not 200
    control = socket.socket(fileno=control_fd)
    children: _Children = {}
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    while True:
        for key, _events in selector.select():
            if key.fileobj is not control:
                _reap(selector, children, key.fd)
                continue
            message, fds, _flags, _address = socket.recv_fds(control, _MESSAGE_SIZE, 8)
            if not message:  # the test process is done (or gone)
                _kill_all(children)
                raise SystemExit(0)
            if _fork(selector, control, children, fds):
                return dict(json.loads(message))


def _fork(
    selector: selectors.BaseSelector, control: socket.socket, children: _Children, fds: list[int]
) -> bool:
    """Fork a child with ``fds`` (stdin, stdout, stderr, channel): True in the child, which
    has closed everything of the server's and has its stdio on 0, 1 and 2."""
    *stdio, channel_fd = fds
    channel = socket.socket(fileno=channel_fd)
    pid = os.fork()
    if pid == 0:
        selector.close()  # closes the epoll descriptor only: the server's registrations stay
        control.close()
        channel.close()
        for pidfd, (_pid, other) in children.items():
            os.close(pidfd)
            other.close()
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
            os.close(fd)
        return True
    for fd in stdio:
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    try:
        socket.send_fds(channel, [json.dumps(pid).encode()], [pidfd])
    except OSError:  # the client is gone; the child is still reaped and reported to no one
        pass
    children[pidfd] = (pid, channel)
    selector.register(pidfd, selectors.EVENT_READ)
    return False


def _reap(selector: selectors.BaseSelector, children: _Children, pidfd: int) -> None:
    """Reap the child that ended (its pidfd is readable) and send its client the exit code."""
    pid, channel = children.pop(pidfd)
    selector.unregister(pidfd)
    os.close(pidfd)
    _pid, status = os.waitpid(pid, 0)
    try:
        channel.send(json.dumps(os.waitstatus_to_exitcode(status)).encode())
    except OSError:
        pass
    channel.close()


def _kill_all(children: _Children) -> None:
    """The test process is gone: its children go with it (a test kills its own; this is for
    an interrupted run)."""
    for pidfd, (pid, _channel) in children.items():
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)


def run_request(request: dict[str, Any]) -> None:
    """In a forked child: become the process the request describes and run its program here,
    at the top of the interpreter, so that its exit is an interpreter's exit."""
    os.umask(request["umask"])
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # a cache of the server's TMPDIR, were anything to have filled it
    _install_stdio(unbuffered=bool(os.environ.get("PYTHONUNBUFFERED")))
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main
    if request["kind"] == "module":
        sys.argv = ["-m", *request["args"]]  # runpy puts the module's file in sys.argv[0]
        sys.path[0] = os.getcwd()
        runpy.run_module(request["target"], run_name="__main__", alter_sys=True)
        return
    sys.argv = ["-c", *request["args"]]
    sys.path[0] = ""
    exec(compile(request["target"], "<string>", "exec"), main.__dict__)


def _install_stdio(*, unbuffered: bool) -> None:
    """New ``sys.stdin``/``stdout``/``stderr`` on descriptors 0, 1 and 2, built as the
    interpreter builds them at start-up (``create_stdio``): line-buffered stderr (and any
    terminal), ``PYTHONUNBUFFERED`` writing through, the server's encodings."""
    streams = []
    for fd, old in enumerate((sys.stdin, sys.stdout, sys.stderr)):
        write = fd != 0
        raw = io.FileIO(fd, "wb" if write else "rb", closefd=False)
        buffered: Any = raw
        if not (write and unbuffered):
            buffered = io.BufferedWriter(raw) if write else io.BufferedReader(raw)
        streams.append(
            io.TextIOWrapper(
                buffered,
                encoding=old.encoding,
                errors=old.errors,
                newline="\n",
                line_buffering=not unbuffered and (raw.isatty() or fd == 2),
                write_through=unbuffered,
            )
        )
    sys.stdin, sys.stdout, sys.stderr = streams
    sys.__dict__.update(__stdin__=streams[0], __stdout__=streams[1], __stderr__=streams[2])
