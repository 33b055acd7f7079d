"""Shared fixtures: the asyncio backend, the simulator, and a config pointing at it."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    # The websockets asyncio client is asyncio-only.
    return "asyncio"
