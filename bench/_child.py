"""A fast server of the benchmarks in a child process: its own interpreter lock, so that the
client under test never shares one with it. The child prints ``{"url": ...}`` as its first
line and ends when its stdin closes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


class ChildServer:
    def __init__(self, script: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name(script))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url: str = json.loads(self.proc.stdout.readline())["url"]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)
