"""Token acquisition against the simulator: every answer the real server gives."""

from __future__ import annotations

import dataclasses
import logging
import socket
import ssl
from pathlib import Path

import pytest
import trustme

from tests.conftest import RecordCollector
from tradovate_async._config import TradovateConfig
from tradovate_async._errors import (
    APIError,
    CaptchaRequiredError,
    InvalidCredentialsError,
    InvalidResponseError,
    LockoutWarningError,
    PenaltyLimitError,
    RateLimitedError,
    TransportError,
)
from tradovate_async._penalty import PenaltyPolicy
from tradovate_async._secret import Secret
from tradovate_async._session import TradovateSession
from tradovate_async.sim import Fault, SimulatedTradovate, SimUser

LOGIN = "auth/accesstokenrequest"


async def test_login_parses_the_token_and_me(
    sim: SimulatedTradovate, config: TradovateConfig
) -> None:
    async with TradovateSession(config) as session:
        token = session.token
        user = sim.users[0]
        assert token.user_id == user.user_id
        assert token.name == user.username
        assert token.md_access_token is not None
        assert token.expiration_time.tzinfo is not None
        me = await session.me()
        assert (me.user_id, me.name, me.email) == (user.user_id, user.username, user.email)
        accounts = await session.get("account/list")
        assert accounts[0]["id"] == user.accounts[0].id
    assert sim.token_requests == 1


async def test_penalty_round_trip_waits_and_echoes_the_ticket(
    sim: SimulatedTradovate, config: TradovateConfig, caplog: pytest.LogCaptureFixture
) -> None:
    sim.inject(LOGIN, Fault.penalty(0.4))
    caplog.set_level(logging.WARNING, "tradovate_async")
    async with TradovateSession(config) as session:
        assert session.token.user_id == sim.users[0].user_id
    records = [r for r in sim.request_log if r.path == LOGIN]
    assert len(records) == 2
    assert not records[0].has_p_ticket and records[1].has_p_ticket
    assert records[1].time - records[0].time >= 0.4
    assert any("0.4 s" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


async def test_penalty_rounds_are_bounded(sim: SimulatedTradovate, config: TradovateConfig) -> None:
    sim.inject(LOGIN, Fault.penalty(0.05), times=5)
    with pytest.raises(PenaltyLimitError):
        async with TradovateSession(config, penalties=PenaltyPolicy(max_rounds=2)):
            pass
    assert sim.token_requests == 3


async def test_penalty_longer_than_allowed_is_not_waited(
    sim: SimulatedTradovate, config: TradovateConfig
) -> None:
    sim.inject(LOGIN, Fault.penalty(3600))
    with pytest.raises(PenaltyLimitError, match="3600"):
        async with TradovateSession(config, penalties=PenaltyPolicy(max_wait=60)):
            pass
    assert sim.token_requests == 1


async def test_captcha_is_never_retried(sim: SimulatedTradovate, config: TradovateConfig) -> None:
    sim.inject(LOGIN, Fault.penalty(1, captcha=True))
    with pytest.raises(CaptchaRequiredError, match="hour"):
        async with TradovateSession(config):
            pass
    assert sim.token_requests == 1


async def test_bad_credentials_make_exactly_one_request(sim: SimulatedTradovate) -> None:
    config = sim.config(password="wrong-password")
    with pytest.raises(InvalidCredentialsError, match="Incorrect username or password") as info:
        async with TradovateSession(config):
            pass
    assert "wrong-password" not in str(info.value)
    assert sim.token_requests == 1


@pytest.mark.parametrize(
    ("fault", "error", "status"),
    [
        (Fault.status(429), RateLimitedError, 429),
        (Fault.status(423), LockoutWarningError, 423),
        (Fault.html(502), APIError, 502),
        (Fault.status(500, b"Internal Server Error, error id: 1234"), APIError, 500),
        (Fault.truncated_json(), InvalidResponseError, 200),
        (Fault.malformed_json(), InvalidResponseError, 200),
        (Fault.error_text("Incorrect username or password."), InvalidCredentialsError, None),
    ],
)
async def test_failures_are_typed_and_not_retried(
    sim: SimulatedTradovate,
    config: TradovateConfig,
    fault: Fault,
    error: type[Exception],
    status: int | None,
) -> None:
    sim.inject(LOGIN, fault)
    with pytest.raises(error) as info:
        async with TradovateSession(config):
            pass
    if status is not None:
        assert getattr(info.value, "status", None) == status
    assert sim.token_requests == 1
    assert config.password.reveal() not in str(info.value)


async def test_html_excerpt_is_short(sim: SimulatedTradovate, config: TradovateConfig) -> None:
    sim.inject(LOGIN, Fault.html(502))
    with pytest.raises(APIError) as info:
        async with TradovateSession(config):
            pass
    assert info.value.body_excerpt is not None
    assert 0 < len(info.value.body_excerpt) <= 200


async def test_dropped_connection_is_a_transport_error(
    sim: SimulatedTradovate, config: TradovateConfig
) -> None:
    sim.inject(LOGIN, Fault.drop())
    with pytest.raises(TransportError) as info:
        async with TradovateSession(config):
            pass
    assert info.value.__cause__ is not None


async def test_timeout_is_a_transport_error(
    sim: SimulatedTradovate, config: TradovateConfig
) -> None:
    sim.inject(LOGIN, Fault.delay(2.0))
    with pytest.raises(TransportError):
        async with TradovateSession(config, timeout=0.3):
            pass


async def test_connection_refused_is_a_transport_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    user = SimUser()
    config = TradovateConfig(
        username=user.username,
        password=user.password,
        app_id=user.app_id,
        sec=user.sec,
        device_id="test-device",
        api_url=f"http://127.0.0.1:{port}/v1",
    )
    with pytest.raises(TransportError, match="ConnectError"):
        async with TradovateSession(config):
            pass


@pytest.fixture(scope="module")
def tls_ca() -> trustme.CA:
    return trustme.CA()


async def test_tls_with_a_private_ca(tls_ca: trustme.CA, tmp_path: Path) -> None:
    cert = tls_ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    ca_file = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca_file))
    async with SimulatedTradovate(certfile=str(certfile), keyfile=str(keyfile)) as sim:
        assert sim.api_url.startswith("https://")
        config = sim.config()
        # Without the CA the certificate is refused: verification is on.
        with pytest.raises(TransportError):
            async with TradovateSession(config):
                pass
        async with TradovateSession(config, verify=str(ca_file)) as session:
            assert (await session.me()).user_id == sim.users[0].user_id
        context = ssl.create_default_context(cafile=str(ca_file))
        async with TradovateSession(config, verify=context) as session:
            assert session.token.user_id == sim.users[0].user_id


async def test_verification_cannot_be_turned_off(config: TradovateConfig) -> None:
    with pytest.raises(ValueError, match="never|cannot"):
        TradovateSession(config, verify=False)


async def test_no_secret_in_debug_logs_of_a_full_login(
    sim: SimulatedTradovate, debug_logs: RecordCollector
) -> None:
    user = dataclasses.replace(SimUser(), password="pw-Sup3rSecret!", sec="sec-Sup3rSecret!")
    async with SimulatedTradovate(users=[user]) as server:
        sim_config = server.config(user)
        server.inject(LOGIN, Fault.penalty(0.05))
        async with TradovateSession(sim_config) as session:
            await session.me()
            token = session.token.access_token.reveal()
            md = session.token.market_data_token.reveal()
        # a failed login too
        with pytest.raises(InvalidCredentialsError):
            async with TradovateSession(server.config(user, password="pw-Wr0ngSecret!")):
                pass
    assert len(debug_logs.texts) > 10, "the scan must see httpx/httpcore records"
    assert (
        debug_logs.find("pw-Sup3rSecret!", "sec-Sup3rSecret!", "pw-Wr0ngSecret!", token, md) == []
    )


async def test_secret_type_masks(config: TradovateConfig) -> None:
    assert isinstance(config.password, Secret)
    assert config.password.reveal() not in repr(config)
