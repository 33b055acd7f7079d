"""Fault-table rows for hostile input: bad settings, planted files, hostile servers, echoed secrets.

Same conventions as ``fault_table.py`` (whose :data:`~tests.reliability.fault_table.CASES` these
rows extend in the README and in ``test_faults.py``): ``setup`` provokes the fault against real
things, ``check`` asserts the outcome.
"""

from __future__ import annotations

from typing import Any

from tests.reliability.fault_table import FaultCase, Lab, error_of
from tradovate_async import (
    ConfigError,
    MemoryTokenStore,
    RedisTokenStore,
    TradovateConfig,
    TradovateSession,
)
from tradovate_async.sim import SimUser

__all__ = ["HOSTILE_CASES"]

_ENV = {
    "TRADOVATE_USERNAME": "env-user",
    "TRADOVATE_PASSWORD": "env-password-123",
    "TRADOVATE_APP_ID": "env-app",
    "TRADOVATE_DEVICE_ID": "env-device",
    "TRADOVATE_SEC": "env-secret-456",
}


# ------------------------------------------------------------------ settings


async def env_not_utf8_setup(lab: Lab) -> None:
    path = lab.tmp_path / ".env"
    path.write_bytes(b"TRADOVATE_USERNAME=u\nTRADOVATE_PASSWORD=p\xe4ss-Hidden\n")

    async def load() -> Any:
        return TradovateConfig.from_env(path, environ={})

    lab.facts["error"] = await error_of(load())


async def env_not_utf8_check(lab: Lab) -> None:
    error = lab.facts["error"]
    assert isinstance(error, ConfigError) and list(error.problems) == ["TRADOVATE_PASSWORD"]
    assert "not valid UTF-8 (line 2)" in str(error) and "Hidden" not in str(error)


async def port_out_of_range_setup(lab: Lab) -> None:
    async def load() -> Any:
        return TradovateConfig.from_env(
            None, environ={**_ENV, "TRADOVATE_API_URL": "https://example.com:99999/v1"}
        )

    lab.facts["error"] = await error_of(load())


async def port_out_of_range_check(lab: Lab) -> None:
    error = lab.facts["error"]
    assert isinstance(error, ConfigError)
    assert "port" in error.problems["TRADOVATE_API_URL"]


async def spaced_password_setup(lab: Lab) -> None:
    user = SimUser(password=" spaced password ")
    await lab.start_sim(users=(user,))
    path = lab.tmp_path / ".env"
    path.write_text(
        f'TRADOVATE_USERNAME={user.username}\nTRADOVATE_PASSWORD=" spaced password "\n'
        f"TRADOVATE_APP_ID={user.app_id}\nTRADOVATE_SEC={user.sec}\n"
        f"TRADOVATE_DEVICE_ID=dev-1\nTRADOVATE_API_URL={lab.sim.api_url}\n"
    )
    config = TradovateConfig.from_env(path, environ={})
    session = TradovateSession(config, clock=lab.clock.now)
    await lab.stack.enter_async_context(session)
    lab.session = session


async def spaced_password_check(lab: Lab) -> None:
    assert lab.sim.logins == 1 and lab.sim.token_requests == 1
    assert any("TRADOVATE_PASSWORD has leading or trailing whitespace" in m for m in lab.warnings)
    assert not any("spaced password" in m for m in lab.warnings)


# ------------------------------------------------------------------ stores


async def key_collision_setup(lab: Lab) -> None:
    first = SimUser(username="alice|ops", app_id="bot", password="pw-first", user_id=1)
    second = SimUser(
        username="alice", app_id="ops|bot", password="pw-second", user_id=2, accounts=()
    )
    sim = await lab.start_sim(users=(first, second))
    store = MemoryTokenStore()
    sessions = []
    for user in (first, second):
        session = TradovateSession(sim.config(user), store=store, clock=lab.clock.now)
        await lab.stack.enter_async_context(session)
        sessions.append(session)
    lab.facts["me"] = [(await s.me()).user_id for s in sessions]
    lab.facts["tokens"] = {s.token.access_token.reveal() for s in sessions}


async def key_collision_check(lab: Lab) -> None:
    assert lab.facts["me"] == [1, 2]
    assert len(lab.facts["tokens"]) == 2 and lab.sim.logins == 2


async def redis_url_setup(lab: Lab) -> None:
    shown = []
    for url in (
        "redis://127.0.0.1:1/0?password=Q-Secret-Pass",
        "redis://bot:Q-Secret-Pass@127.0.0.1:1/0",
    ):
        store = RedisTokenStore(url)
        shown.append(repr(store))
        await store.aclose()
    lab.facts["shown"] = shown


async def redis_url_check(lab: Lab) -> None:
    assert all("Q-Secret" not in s and "127.0.0.1:1" in s for s in lab.facts["shown"])


HOSTILE_CASES: list[FaultCase] = [
    FaultCase(
        "env-not-utf8",
        fault="`.env` file that is not valid UTF-8 (a Latin-1 password)",
        setup=env_not_utf8_setup,
        expected_outcome=(
            "ConfigError naming the variable on the undecodable line and the line number; the "
            "bytes themselves are never shown."
        ),
        check=env_not_utf8_check,
    ),
    FaultCase(
        "url-port-out-of-range",
        fault="A URL setting with a port out of range (`:99999`)",
        setup=port_out_of_range_setup,
        expected_outcome="ConfigError naming the variable, before anything connects.",
        check=port_out_of_range_check,
    ),
    FaultCase(
        "password-edge-spaces",
        fault="A password with leading and trailing spaces (quoted in `.env`)",
        setup=spaced_password_setup,
        expected_outcome=(
            "Kept exactly as written (secrets are never trimmed): one login succeeds; a WARNING "
            "names the variable (not the value) before the first login."
        ),
        check=spaced_password_check,
    ),
    FaultCase(
        "store-key-collision",
        fault="Users `alice|ops`/app `bot` and `alice`/app `ops|bot` share one token store",
        setup=key_collision_setup,
        expected_outcome=(
            "Two keys (`%` and `|` inside a part are percent-encoded), two logins, and "
            "`/auth/me` answers each session as its own user."
        ),
        check=key_collision_check,
    ),
    FaultCase(
        "redis-url-credentials",
        fault="Redis URL with a `?password=` query or a password in the userinfo",
        setup=redis_url_setup,
        expected_outcome="`repr(RedisTokenStore)` masks the userinfo and every credential query.",
        check=redis_url_check,
    ),
]
