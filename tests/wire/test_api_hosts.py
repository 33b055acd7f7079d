"""The server's ``apiHosts``: the session moves to the hosts it names, and only to safe ones.

The recorded answers (``token-success-apihosts-demo-2026-09-24``,
``token-renew-apihosts-2026-10-02``) are the starting point; the simulator then names a host of
its own to show that requests, renewals and new sockets really follow it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Literal

import httpx
import pytest

from tradovate_async import ResolvedEndpoints
from tradovate_async._api_hosts import is_trusted_host, resolve_endpoints
from tradovate_async._auth_core import interpret_token_response
from tradovate_async._config import TradovateConfig
from tradovate_async._models import AccessToken
from tradovate_async._session import TradovateSession
from tradovate_async.sim import SimulatedTradovate

from .corpus import SAMPLES

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def recorded_token(sample_id: str, **changes: object) -> AccessToken:
    sample = next(s for s in SAMPLES if s.id == sample_id)
    body = {**sample.raw["body"], **changes}
    token = interpret_token_response(
        "login", 200, json.dumps(body).encode(), issued_at=NOW, scrub=str
    )
    assert isinstance(token, AccessToken)
    return token


def production_config(environment: str) -> TradovateConfig:
    return TradovateConfig(
        username="u", password="p", app_id="a", sec="s", device_id="d", environment=environment
    )


def test_recorded_demo_hosts_resolve_to_the_documented_urls() -> None:
    token = recorded_token("token-success-apihosts-demo-2026-09-24")
    assert resolve_endpoints(production_config("demo"), token) == ResolvedEndpoints(
        api_url="https://demo.tradovateapi.com/v1",
        ws_url="wss://demo.tradovateapi.com/v1/websocket",
        md_url="wss://md-demo.tradovateapi.com/v1/websocket",
        replay_url="wss://replay.tradovateapi.com/v1/websocket",
    )
    assert resolve_endpoints(production_config("live"), token) == ResolvedEndpoints(
        api_url="https://live.tradovateapi.com/v1",
        ws_url="wss://live.tradovateapi.com/v1/websocket",
        md_url="wss://md.tradovateapi.com/v1/websocket",
        replay_url="wss://replay.tradovateapi.com/v1/websocket",
    )


def test_an_organisation_host_replaces_the_shared_one() -> None:
    sample = next(s for s in SAMPLES if s.id == "token-success-apihosts-demo-2026-09-24")
    hosts = {**sample.raw["body"]["apiHosts"], "demo": "demo-eval-7.tradovateapi.com"}
    token = recorded_token("token-success-apihosts-demo-2026-09-24", apiHosts=hosts)
    resolved = resolve_endpoints(production_config("demo"), token)
    assert resolved.api_url == "https://demo-eval-7.tradovateapi.com/v1"
    assert resolved.ws_url == "wss://demo-eval-7.tradovateapi.com/v1/websocket"


def test_no_api_hosts_keeps_the_configured_urls() -> None:
    config = production_config("demo")
    token = recorded_token("token-success-oas-access-tag")
    assert resolve_endpoints(config, token) == resolve_endpoints(config, None)
    assert resolve_endpoints(config, None).api_url == config.api_url


@pytest.mark.parametrize(
    ("host", "configured", "trusted"),
    [
        ("demo.tradovateapi.com", "https://demo.tradovateapi.com/v1", True),
        ("risk-monitor-api-demo.ninjatrader.com", "https://demo.tradovateapi.com/v1", True),
        ("demo-api.staging.ninjatrader.dev", "https://x.tradovateapi.com/v1", True),
        ("tradovateapi.com.evil.example", "https://demo.tradovateapi.com/v1", False),
        ("eviltradovateapi.com", "https://demo.tradovateapi.com/v1", False),
        ("localhost:8443", "https://demo.tradovateapi.com/v1", False),
        ("localhost:8443", "http://127.0.0.1:9000/v1", True),
        ("10.0.0.1", "http://127.0.0.1:9000/v1", False),
    ],
)
def test_tokens_go_only_to_tradovate_hosts(host: str, configured: str, trusted: bool) -> None:
    assert is_trusted_host(host, configured) is trusted


@pytest.mark.parametrize("backend", ["aiohttp", "httpx"])
async def test_session_follows_the_hosts_the_simulator_names(
    sim: SimulatedTradovate, backend: Literal["aiohttp", "httpx"]
) -> None:
    sim.api_hosts = {"live": f"localhost:{sim.port}", "demo": f"localhost:{sim.port}"}

    async with TradovateSession(sim.config(), http_backend=backend) as session:
        assert session.endpoints.api_url == f"http://localhost:{sim.port}/v1"
        assert session.endpoints.ws_url == f"ws://localhost:{sim.port}/v1/websocket"
        sim.reset_counters()
        assert [a["id"] for a in await session.get("account/list")] == [70001]
        async with session.websocket(heartbeat_interval=0.2) as ws:
            assert ws.url.startswith(f"ws://localhost:{sim.port}/")
            assert await ws.request("account/list") == await session.get("account/list")
    hosts = {r.host for r in sim.request_log if r.transport == "rest"}
    assert hosts == {f"localhost:{sim.port}"}


async def test_renewal_goes_to_the_named_host_and_keeps_hosts_when_omitted(
    sim: SimulatedTradovate,
) -> None:
    sim.api_hosts = {"live": f"localhost:{sim.port}"}
    hosts: list[tuple[str, str]] = []

    async def remember(request: httpx.Request) -> None:
        hosts.append((request.url.host, request.url.path))

    async with TradovateSession(sim.config()) as session:
        session.http.event_hooks["request"].append(remember)
        moved = session.endpoints
        sim.api_hosts = None  # the renewal answer names no hosts: keep the last ones
        renewed = await session.token_rejected(session.token)
        assert renewed.api_hosts == ()
        assert session.endpoints == moved
        await session.get("account/list")
    assert sim.renewals == 1
    assert ("localhost", "/v1/auth/renewaccesstoken") in hosts
    assert all(host == "localhost" for host, _ in hosts)


async def test_untrusted_hosts_are_ignored_with_a_warning(
    sim: SimulatedTradovate, caplog: pytest.LogCaptureFixture
) -> None:
    sim.api_hosts = {"live": "attacker.example.com", "mdLive": "md.evil.example"}
    with caplog.at_level(logging.WARNING, logger="tradovate_async"):
        async with TradovateSession(sim.config()) as session:
            assert session.endpoints.api_url == sim.api_url
            assert session.endpoints.md_url == sim.md_url
            await session.get("account/list")
    assert any("attacker.example.com" in r.getMessage() for r in caplog.records)


async def test_api_hosts_can_be_turned_off(sim: SimulatedTradovate) -> None:
    sim.api_hosts = {"live": f"localhost:{sim.port}"}
    async with TradovateSession(sim.config(), use_api_hosts=False) as session:
        assert session.endpoints.api_url == sim.api_url
        assert session.token.api_host("live") == f"localhost:{sim.port}"
