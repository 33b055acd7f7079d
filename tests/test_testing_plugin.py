"""The pytest plugin users load into their own suites (``tradovate_async.testing``).

These tests use the plugin's fixtures as a user's bot tests would, with no conftest of ours in
between (the project's conftest defines other names), and check in a child pytest that loading
the plugin into a project that does not use it imports neither the simulator nor its server.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from tradovate_async import TradovateError, TradovateSession, TradovateWebSocket
from tradovate_async.sim import Fault, SimulatedTradovate, WarpClock
from tradovate_async.testing import FaultInjector


async def test_my_bot(
    tradovate_sim: SimulatedTradovate, tradovate_session: TradovateSession
) -> None:
    me = await tradovate_session.me()
    assert me.name == tradovate_sim.users[0].username


async def test_one_login_serves_the_session_and_both_sockets(
    tradovate_sim: SimulatedTradovate,
    tradovate_socket: TradovateWebSocket,
    tradovate_md_socket: TradovateWebSocket,
) -> None:
    accounts = await tradovate_socket.request("account/list")
    assert [a["id"] for a in accounts] == [a.id for a in tradovate_sim.users[0].accounts]
    await tradovate_md_socket.subscribe("md/subscribeQuote", {"symbol": "ESZ6"})
    with anyio.fail_after(10):
        async for event in tradovate_md_socket.events():
            if event.kind == "md":
                break
    assert tradovate_sim.logins == 1
    kinds = sorted(c.kind for c in tradovate_sim.ws_connections())
    assert kinds == ["md", "trading"]


@pytest.mark.tradovate_sim(speed=1000, token_lifetime=600)
async def test_the_marker_configures_clock_and_simulator(
    tradovate_clock: WarpClock, tradovate_session: TradovateSession
) -> None:
    assert tradovate_clock.speed == 1000
    lifetime = tradovate_session.token.expiration_time - tradovate_clock.now()
    assert dt.timedelta(seconds=500) < lifetime <= dt.timedelta(seconds=600)


async def test_injected_faults_reach_the_client(
    tradovate_faults: FaultInjector, tradovate_session: TradovateSession
) -> None:
    tradovate_faults.inject("account/list", Fault.error_text("Access is denied"), transport="rest")
    with pytest.raises(TradovateError, match="Access is denied"):
        await tradovate_session.get("account/list")
    assert await tradovate_session.get("account/list"), "the fault served once"


async def test_a_refused_authorize_is_seen_by_the_socket(
    tradovate_sim: SimulatedTradovate,
    tradovate_faults: FaultInjector,
    tradovate_session: TradovateSession,
) -> None:
    tradovate_faults.refuse_authorize(times=1)
    async with tradovate_session.websocket("trading") as socket:
        await socket.request("account/list")
    refused = [r for r in tradovate_sim.request_log if r.path == "authorize" and r.status == 401]
    assert len(refused) == 1


def test_jump_moves_the_shared_clock(
    tradovate_faults: FaultInjector, tradovate_sim: SimulatedTradovate
) -> None:
    before = tradovate_sim.now()
    tradovate_faults.jump_clock(3600)
    assert tradovate_sim.now() - before >= 3600


def test_the_simulator_fixture_works_in_a_sync_test(tradovate_sim: SimulatedTradovate) -> None:
    assert tradovate_sim.api_url.startswith("http://127.0.0.1:")


REPORT_CONFTEST = """
import json, os, sys

def pytest_sessionfinish(session):
    names = sorted(m for m in sys.modules if m.split(".")[0] in
                   {"tradovate_async", "starlette", "uvicorn", "httpx", "websockets"})
    with open(os.environ["MODULES_REPORT"], "w") as f:
        json.dump(names, f)
"""


def run_child_pytest(tmp_path: Path, test_source: str) -> list[str]:
    """Run pytest on ``test_source`` in a fresh project (plugins autoloaded by entry point);
    the modules of interest it had imported at the end."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "conftest.py").write_text(REPORT_CONFTEST)
    (project / "test_user.py").write_text(test_source)
    report = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_DISABLE_PLUGIN_AUTOLOAD"}
    env["MODULES_REPORT"] = str(report)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
        capture_output=True,
        text=True,
        cwd=project,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    names: list[str] = json.loads(report.read_text())
    return names


def test_loading_the_plugin_imports_no_simulator(tmp_path: Path) -> None:
    modules = run_child_pytest(tmp_path, "def test_unrelated():\n    assert 1 + 1 == 2\n")
    assert "tradovate_async.testing" in modules, "the entry point loaded the plugin"
    assert not [m for m in modules if m.startswith(("tradovate_async.sim", "starlette", "uvicorn"))]


def test_asking_for_a_fixture_imports_the_simulator(tmp_path: Path) -> None:
    modules = run_child_pytest(
        tmp_path, "def test_uses_sim(tradovate_sim):\n    assert tradovate_sim.port > 0\n"
    )
    assert "tradovate_async.sim" in modules
    assert "uvicorn" in modules
