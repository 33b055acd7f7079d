"""tests/forked.py: a child forked from the preloaded server is the process a fresh interpreter
would be, as far as the tests that use it can tell (argv, environment, working directory, umask,
stdio, open descriptors, logging, threads, event loop, exit codes, ``atexit``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from tests.forked import run_module, spawn_code

PROBE = """
import asyncio, atexit, json, logging, os, sys, threading
try:
    asyncio.get_running_loop()
    loop = True
except RuntimeError:
    loop = False
facts = {
    "argv": sys.argv[1:],
    "cwd": os.getcwd(),
    "path0": sys.path[0],
    "env": {k: v for k, v in os.environ.items() if k.startswith("PROBE_")},
    "umask": os.umask(0o022),
    "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
    "handlers": len(logging.getLogger().handlers),
    "threads": threading.active_count(),
    "loop": loop,
    "stdin": sys.stdin.read(),
    "stdout": [sys.stdout.line_buffering, sys.stdout.write_through, sys.stdout.encoding],
    "stderr": [sys.stderr.line_buffering, sys.stderr.errors],
}
atexit.register(lambda: print("atexit ran", flush=True))
print(json.dumps(facts))
print("to stderr", file=sys.stderr)
sys.exit(int(sys.argv[1]))
"""


def probe_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PROBE_ONE": "1", "PROBE_TWO": "zwei", **extra}


def facts_of(stdout: str) -> dict[str, Any]:
    first, rest = stdout.split("\n", 1)
    assert rest == "atexit ran\n"
    return dict(json.loads(first))


async def fresh_python(
    code: str, args: list[str], env: dict[str, str], cwd: Path, stdin: bytes = b""
) -> subprocess.CompletedProcess[str]:
    """``python -c code *args`` in a fresh interpreter, to compare a forked child with."""
    command = [sys.executable, "-c", code, *args]

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, input=stdin.decode(), capture_output=True, text=True, env=env, cwd=cwd
        )

    return await anyio.to_thread.run_sync(run)


@pytest.mark.parametrize("unbuffered", ["", "1"])
async def test_a_forked_child_is_what_a_fresh_interpreter_would_be(
    tmp_path: Path, unbuffered: str
) -> None:
    env = probe_env(PYTHONUNBUFFERED=unbuffered)
    if not unbuffered:
        del env["PYTHONUNBUFFERED"]  # buffered stdio, whatever this process runs with
    args = ["3", "two words"]
    fresh = await fresh_python(PROBE, args, env, tmp_path, b"input line\n")
    process = await spawn_code(PROBE, args, env=env, cwd=tmp_path)
    await process.stdin.send(b"input line\n")
    await process.stdin.aclose()
    chunks = []
    with anyio.fail_after(20):
        while True:
            try:
                chunks.append(await process.stdout.receive())
            except anyio.EndOfStream:
                break
        assert await process.wait() == fresh.returncode == 3
    await process.aclose()
    forked = facts_of(b"".join(chunks).decode())
    assert forked == facts_of(fresh.stdout)
    assert forked["argv"] == args and forked["cwd"] == str(tmp_path)
    assert forked["stdin"] == "input line\n"
    assert forked["stdout"][1] is bool(unbuffered)  # write-through: PYTHONUNBUFFERED


async def test_the_command_line_forked_and_fresh_answer_alike(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TRADOVATE_USERNAME=someone\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADOVATE_")}
    for args in (["--version"], ["token"], ["nonsense"]):
        runs = [
            await anyio.to_thread.run_sync(
                lambda a=args, f=fresh: run_module(  # type: ignore[misc]
                    "tradovate_async", a, env=env, cwd=tmp_path, fresh=f
                )
            )
            for fresh in (True, False)
        ]
        assert [(r.returncode, r.stdout, r.stderr) for r in runs] == [
            (runs[0].returncode, runs[0].stdout, runs[0].stderr)
        ] * 2


async def test_a_killed_child_reports_the_signal(tmp_path: Path) -> None:
    process = await spawn_code(
        "import time; print('up', flush=True); time.sleep(60)", [], env=probe_env(), cwd=tmp_path
    )
    with anyio.fail_after(20):
        # "up" and "\n" may come in two writes (PYTHONUNBUFFERED), as from any process
        assert await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 99) == b"up"
        assert process.returncode is None
        process.send_signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL
    process.send_signal(signal.SIGKILL)  # after its end: nothing happens
    await process.aclose()


async def test_an_uncaught_exception_exits_1_with_its_traceback(tmp_path: Path) -> None:
    code = "import sys; print('before', file=sys.stderr); raise ValueError('boom')"
    fresh = await fresh_python(code, [], probe_env(), tmp_path)
    err_r, err_w = os.pipe()
    try:
        process = await spawn_code(code, [], env=probe_env(), cwd=tmp_path, stderr=err_w)
    finally:
        os.close(err_w)
    with anyio.fail_after(20):
        assert await process.wait() == fresh.returncode == 1
    await process.aclose()
    with os.fdopen(err_r) as stderr:
        forked = stderr.read()
    for text in (forked, fresh.stderr):
        assert text.startswith("before\nTraceback (most recent call last):\n")
        assert text.endswith("\nValueError: boom\n")


def test_a_start_up_variable_cannot_differ(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="PYTHONHASHSEED"):
        run_module(
            "tradovate_async", ["--version"], env=probe_env(PYTHONHASHSEED="7"), cwd=tmp_path
        )
