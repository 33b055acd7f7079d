"""The command line, run as a user runs it: a process of its own with a .env file (forked from
a preloaded server, see tests/forked.py; the first login runs in a fresh interpreter).

The simulator comes from the project's own pytest plugin (``tradovate_sim``), as in a user's suite.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import anyio
import pytest

from tests.forked import run_module
from tests.sim_env import write_env
from tradovate_async.sim import Fault, SimulatedTradovate, SimUser


def clean_env(tmp_path: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADOVATE_")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    return env


async def run_cli(
    *args: str, env: dict[str, str], cwd: Path, fresh: bool = False
) -> subprocess.CompletedProcess[str]:
    """``python -m tradovate_async *args`` (``fresh``: in a fresh interpreter, not forked)."""

    def run() -> subprocess.CompletedProcess[str]:
        return run_module("tradovate_async", args, env=env, cwd=cwd, timeout=60, fresh=fresh)

    return await anyio.to_thread.run_sync(run)


async def test_token_prints_prefix_expiry_and_user_and_reuses_the_store(
    tradovate_sim: SimulatedTradovate, tmp_path: Path
) -> None:
    env_file = write_env(tmp_path / ".env", tradovate_sim)
    env = clean_env(tmp_path)
    # the end-to-end login of the suite in a fresh interpreter: nothing preloaded
    result = await run_cli("token", "--env-file", str(env_file), env=env, cwd=tmp_path, fresh=True)
    assert result.returncode == 0, result.stderr
    store = tmp_path / "cache" / "tradovate-async" / "tokens.json"
    tokens = json.loads(store.read_text())["tokens"]
    (record,) = tokens.values()
    token = record["accessToken"]
    assert f"Token: {token[:8]}... (truncated for security)" in result.stdout
    assert token not in result.stdout + result.stderr
    assert "Expiration Time: " in result.stdout
    assert f"User ID: {SimUser().user_id}" in result.stdout
    again = await run_cli("token", "--env-file", str(env_file), env=env, cwd=tmp_path)
    assert again.returncode == 0
    assert tradovate_sim.token_requests == 1, "the second run reuses the stored token"


async def test_me_prints_the_user(tradovate_sim: SimulatedTradovate, tmp_path: Path) -> None:
    env_file = write_env(tmp_path / ".env", tradovate_sim)
    result = await run_cli(
        "me", "--env-file", str(env_file), "--no-store", env=clean_env(tmp_path), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    user = SimUser()
    assert f"User ID: {user.user_id}" in result.stdout
    assert f"Username: {user.username}" in result.stdout
    assert f"Email: {user.email}" in result.stdout


async def test_bad_credentials_exit_1_without_the_password(
    tradovate_sim: SimulatedTradovate, tmp_path: Path
) -> None:
    env_file = write_env(tmp_path / ".env", tradovate_sim, TRADOVATE_PASSWORD="Wr0ng-Passw0rd")
    result = await run_cli(
        "token", "--env-file", str(env_file), "--no-store", env=clean_env(tmp_path), cwd=tmp_path
    )
    assert result.returncode == 1
    assert "InvalidCredentialsError" in result.stderr
    assert "Wr0ng-Passw0rd" not in result.stdout + result.stderr
    assert tradovate_sim.token_requests == 1


async def test_api_failure_exits_1(tradovate_sim: SimulatedTradovate, tmp_path: Path) -> None:
    tradovate_sim.inject("auth/accesstokenrequest", Fault.html(502))
    env_file = write_env(tmp_path / ".env", tradovate_sim)
    result = await run_cli(
        "token", "--env-file", str(env_file), "--no-store", env=clean_env(tmp_path), cwd=tmp_path
    )
    assert result.returncode == 1
    assert "502" in result.stderr


async def test_missing_configuration_exits_2_naming_every_variable(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TRADOVATE_USERNAME=someone\n")
    result = await run_cli("token", env=clean_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    for var in ("TRADOVATE_PASSWORD", "TRADOVATE_APP_ID", "TRADOVATE_SEC", "TRADOVATE_DEVICE_ID"):
        assert var in result.stderr
    assert "TRADOVATE_USERNAME" not in result.stderr
    assert "someone" not in result.stderr


async def test_verbose_logs_are_redacted(tradovate_sim: SimulatedTradovate, tmp_path: Path) -> None:
    env_file = write_env(tmp_path / ".env", tradovate_sim)
    env = clean_env(tmp_path)
    result = await run_cli(
        "me", "--env-file", str(env_file), "--verbose", "--no-store", env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "DEBUG" in result.stderr
    user = SimUser()
    for secret in (user.password, user.sec):
        assert secret not in result.stderr
    prefixes = {r.token_prefix for r in tradovate_sim.request_log if r.token_prefix}
    assert prefixes, "the run used a token"


@pytest.mark.parametrize("command", [[], ["token"], ["me"], ["sim"], ["demo"]])
async def test_help(command: list[str], tmp_path: Path) -> None:
    result = await run_cli(*command, "--help", env=clean_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 0
    assert "usage: tradovate-async" in result.stdout
