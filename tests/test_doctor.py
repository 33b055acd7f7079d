"""``tradovate-async doctor`` run as a user runs it, against the plugin's simulator: the good
state and one fault at a time, with the exit codes and no secret in any output."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme

from tests.forked import run_module
from tests.sim_env import write_env as _write_env
from tradovate_async.sim import SimulatedTradovate, SimUser, WarpClock
from tradovate_async.testing import FaultInjector

EXIT_OK, EXIT_WARN, EXIT_FAIL = 0, 1, 2


def write_env(path: Path, sim: SimulatedTradovate, **changes: str) -> Path:
    return _write_env(path, sim, device_id="doctor-test-device", **changes)


class Run:
    """One doctor run: exit code, text, and the JSON report of a second, ``--json`` run."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def line(self, name: str) -> str:
        (found,) = [ln for ln in self.out.splitlines() if ln.startswith("[") and f"] {name}:" in ln]
        return found

    def verdict(self, name: str) -> str:
        return self.line(name)[1:5].strip().lower()


async def doctor(
    tmp_path: Path, *args: str, extra_env: dict[str, str] | None = None, fresh: bool = False
) -> Run:
    """``tradovate-async doctor`` in a process of its own, forked from a preloaded server
    (tests/forked.py); ``fresh``: in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADOVATE_")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env.update(extra_env or {})

    def run() -> subprocess.CompletedProcess[str]:
        arguments = ["doctor", "--timeout", "5", *args]
        return run_module(
            "tradovate_async", arguments, env=env, cwd=tmp_path, timeout=120, fresh=fresh
        )

    result = await anyio.to_thread.run_sync(run)
    return Run(result.returncode, result.stdout, result.stderr)


def secrets_of(tmp_path: Path) -> list[str]:
    """The password, the API secret and every full token the store holds."""
    user = SimUser()
    found = [user.password, user.sec]
    store = tmp_path / "cache" / "tradovate-async" / "tokens.json"
    if store.is_file():
        for record in json.loads(store.read_text())["tokens"].values():
            found += [t for t in (record.get("accessToken"), record.get("mdAccessToken")) if t]
    return found


def assert_no_secrets(run: Run, secrets: list[str]) -> None:
    """No secret in the output, nor more than 8 characters of one (tokens show 8)."""
    for secret in secrets:
        assert secret[:9] not in run.out + run.err


async def test_the_good_state_is_all_ok(tradovate_sim: SimulatedTradovate, tmp_path: Path) -> None:
    write_env(tmp_path / ".env", tradovate_sim)
    first = await doctor(tmp_path, fresh=True)  # the one doctor run in a fresh interpreter
    assert first.code == EXIT_OK, first.out + first.err
    for name in ("configuration", "clock", "token store", "/auth/me", "terms"):
        assert first.verdict(name) == "ok"
    assert first.verdict("trading socket") == first.verdict("md socket") == "ok"
    assert "logged in: token " in first.line("login")
    assert first.verdict("request budget") == "ok"
    assert "requests an hour" in first.line("request budget")
    assert "TRADOVATE_PASSWORD = ********" in first.out
    assert f"[.env ({tmp_path / '.env'})]" in first.out
    assert "TRADOVATE_APP_VERSION = (not set) 1.0  [default]" in first.out
    second = await doctor(tmp_path, "--json")
    assert second.code == EXIT_OK
    report: dict[str, Any] = json.loads(second.out)
    assert report["verdict"] == "ok" and report["exit_code"] == EXIT_OK
    by_name = {c["name"]: c for c in report["checks"]}
    assert "adopted the stored token" in by_name["login"]["summary"]
    assert "a fresh token is stored" in by_name["token store"]["summary"]
    assert tradovate_sim.logins == 1, "the second run adopted the stored token"
    for run in (first, second):
        assert_no_secrets(run, secrets_of(tmp_path))


async def test_a_wrong_password_fails_the_login_once(
    tradovate_sim: SimulatedTradovate, tmp_path: Path
) -> None:
    write_env(tmp_path / ".env", tradovate_sim, TRADOVATE_PASSWORD="Wr0ng-Passw0rd-42")
    run = await doctor(tmp_path)
    assert run.code == EXIT_FAIL
    assert run.verdict("login") == "fail"
    assert "InvalidCredentialsError" in run.line("login")
    assert run.verdict("/auth/me") == "skip"
    assert tradovate_sim.token_requests == 1, "the doctor never retries a refused login"
    assert_no_secrets(run, ["Wr0ng-Passw0rd-42", SimUser().sec])
    assert "verdict: FAIL" in run.out


async def test_an_unreadable_store_fails(tradovate_sim: SimulatedTradovate, tmp_path: Path) -> None:
    write_env(tmp_path / ".env", tradovate_sim)
    (tmp_path / "store-is-a-directory").mkdir()
    run = await doctor(tmp_path, "--token-file", str(tmp_path / "store-is-a-directory"))
    assert run.code == EXIT_FAIL
    assert run.verdict("token store") == "fail"
    assert run.verdict("login") == "skip"
    assert tradovate_sim.token_requests == 0


async def test_a_store_others_can_read_is_a_warning(
    tradovate_sim: SimulatedTradovate, tmp_path: Path
) -> None:
    write_env(tmp_path / ".env", tradovate_sim)
    assert (await doctor(tmp_path)).code == EXIT_OK
    store = tmp_path / "cache" / "tradovate-async" / "tokens.json"
    store.chmod(0o644)
    run = await doctor(tmp_path)
    assert run.code == EXIT_WARN, run.out
    assert run.verdict("token store") == "warn"
    assert "mode 0644" in run.out


async def test_a_socket_refusing_authorize_fails(
    tradovate_sim: SimulatedTradovate, tradovate_faults: FaultInjector, tmp_path: Path
) -> None:
    write_env(tmp_path / ".env", tradovate_sim)
    tradovate_faults.refuse_authorize(times=50)
    run = await doctor(tmp_path, "--no-store")
    assert run.code == EXIT_FAIL
    assert run.verdict("trading socket") == "fail"
    assert run.verdict("md socket") == "fail"
    assert "TokenRejectedError" in run.line("trading socket")
    assert run.verdict("/auth/me") == "ok"
    assert run.verdict("token store") == "skip"
    assert_no_secrets(run, secrets_of(tmp_path))


async def test_a_missing_configuration_fails_naming_the_variables(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TRADOVATE_USERNAME=someone\nTRADOVATE_PASSWORD=hunter2-x\n")
    run = await doctor(tmp_path, extra_env={"TRADOVATE_APP_ID": "from-the-environment"})
    assert run.code == EXIT_FAIL
    assert run.verdict("configuration") == "fail"
    for var in ("TRADOVATE_SEC", "TRADOVATE_DEVICE_ID"):
        assert var in run.line("configuration")
    assert "TRADOVATE_APP_ID = from-the-environment  [environment]" in run.out
    assert "hunter2-x" not in run.out + run.err
    checks = [ln for ln in run.out.splitlines() if ln.startswith("[")]
    assert len(checks) == 1, "nothing beyond the configuration is tried"


@pytest.mark.parametrize("flag", [[], ["--json"]])
async def test_an_unreachable_server_fails(tmp_path: Path, flag: list[str]) -> None:
    sim = SimulatedTradovate()
    sim.start()
    sim.stop()  # its port is now closed
    write_env(tmp_path / ".env", sim)
    run = await doctor(tmp_path, *flag)
    assert run.code == EXIT_FAIL
    if flag:
        checks = {c["name"]: c["verdict"] for c in json.loads(run.out)["checks"]}
        assert checks["clock"] == "fail"
    else:
        assert run.verdict("clock") == "fail"


async def test_a_corrupt_store_is_a_warning_and_the_login_replaces_it(
    tradovate_sim: SimulatedTradovate, tmp_path: Path
) -> None:
    write_env(tmp_path / ".env", tradovate_sim)
    store = tmp_path / "tokens.json"
    store.write_text("{not json")
    store.chmod(0o600)
    run = await doctor(tmp_path, "--token-file", str(store))
    assert run.code == EXIT_WARN, run.out
    assert run.verdict("token store") == "warn"
    assert run.verdict("login") == "ok"


async def test_tls_is_verified_against_the_given_ca(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(ca_file))
    async with SimulatedTradovate(certfile=str(certfile), keyfile=str(keyfile)) as sim:
        write_env(tmp_path / ".env", sim)
        trusted = await doctor(tmp_path, "--ca-file", str(ca_file), "--no-store")
        assert trusted.code == EXIT_OK, trusted.out
        assert "DNS, TCP and TLS (certificate verified)" in trusted.line("host 127.0.0.1")
        assert "certificate valid until" in trusted.out
        assert trusted.verdict("trading socket") == "ok"
        untrusted = await doctor(tmp_path, "--no-store")
        assert untrusted.code == EXIT_FAIL
        assert untrusted.verdict("host 127.0.0.1") == "fail"
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted.line("host 127.0.0.1")


def needs_server_clock_offset() -> None:
    if "server_clock_offset" not in inspect.signature(SimulatedTradovate).parameters:
        pytest.skip("this simulator has no server_clock_offset")


@pytest.mark.parametrize("offset", [45.0, -7200.0])
async def test_a_host_clock_off_the_servers_is_a_warning(
    tradovate_clock: WarpClock, tmp_path: Path, offset: float
) -> None:
    needs_server_clock_offset()
    options: dict[str, Any] = {"clock": tradovate_clock.time, "server_clock_offset": offset}
    async with SimulatedTradovate(**options) as sim:
        write_env(tmp_path / ".env", sim)
        run = await doctor(tmp_path)
    assert run.code == EXIT_WARN, run.out
    assert run.verdict("clock") == "warn"
    where = "ahead of" if offset > 0 else "behind"
    measured = re.search(r"the server's clock is ([0-9.]+) s (ahead of|behind)", run.line("clock"))
    assert measured is not None, run.line("clock")
    assert abs(float(measured.group(1)) - abs(offset)) < 2.5
    assert measured.group(2) == where
    assert run.verdict("login") == "ok"
    assert "expires in 90 min (server clock)" in run.line("login")
