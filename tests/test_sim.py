"""The simulator itself, driven by plain httpx and websockets clients (not the library).

These pin down the wire behaviour every other test relies on: token responses, business and
HTTP errors, penalty tickets, limits, sessions, each fault kind, and the WebSocket protocol.
Waiting is done on the simulator's clock (``advance_clock``) or with sub-second timeouts.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trustme
import websockets
from websockets.asyncio.client import ClientConnection

from tradovate_async._config import TradovateConfig
from tradovate_async._models import parse_timestamp
from tradovate_async.sim import Fault, SimAccount, SimulatedTradovate, SimUser

LOGIN = "auth/accesstokenrequest"
RENEW = "auth/renewaccesstoken"
USER = SimUser()
GOOD = {
    "name": USER.username,
    "password": USER.password,
    "appId": USER.app_id,
    "appVersion": USER.app_version,
    "cid": USER.cid,
    "sec": USER.sec,
    "deviceId": "test-device",
}
INCORRECT = (
    "Incorrect username or password. Please try again, noting that passwords are case-sensitive."
)


@pytest.fixture
async def server() -> AsyncIterator[SimulatedTradovate]:
    """A simulator with short socket timeouts, so WebSocket tests never wait long."""
    async with SimulatedTradovate(
        auth_timeout=2.0, heartbeat_timeout=5.0, quote_interval=0.02
    ) as sim:
        yield sim


@pytest.fixture
async def http(server: SimulatedTradovate) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.api_url, timeout=5.0) as client:
        yield client


async def login(http: httpx.AsyncClient, **changes: Any) -> httpx.Response:
    return await http.post(f"/{LOGIN}", json={**GOOD, **changes})


async def token_of(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await login(http)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    assert "accessToken" in body
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def recv(ws: ClientConnection, *, skip_h: bool = True, limit: float = 3.0) -> str:
    """The next frame (``h`` heartbeats skipped unless asked for)."""
    while True:
        frame = await asyncio.wait_for(ws.recv(), limit)
        assert isinstance(frame, str)
        if not (skip_h and frame == "h"):
            return frame


async def recv_messages(ws: ClientConnection, **kwargs: Any) -> list[dict[str, Any]]:
    frame = await recv(ws, **kwargs)
    assert frame.startswith("a["), frame
    messages: list[dict[str, Any]] = json.loads(frame[1:])
    return messages


async def props_until(ws: ClientConnection, entity_type: str) -> list[dict[str, Any]]:
    """Events up to and including the first ``props`` event about ``entity_type``."""
    events: list[dict[str, Any]] = []
    while True:
        for message in await recv_messages(ws):
            events.append(message)
            if message.get("e") == "props" and message["d"]["entityType"] == entity_type:
                return events


async def open_socket(url: str, token: str | None = None) -> ClientConnection:
    ws = await websockets.connect(url, open_timeout=3)
    assert await recv(ws) == "o"
    if token is not None:
        await ws.send(f"authorize\n1\n\n{token}")
        assert await recv_messages(ws) == [{"s": 200, "i": 1}]
    return ws


async def wait_closed(ws: ClientConnection, limit: float = 3.0) -> list[str]:
    """Frames received until the socket closes."""
    frames: list[str] = []
    with pytest.raises(websockets.ConnectionClosed):
        async with asyncio.timeout(limit):
            while True:
                frame = await ws.recv()
                assert isinstance(frame, str)
                frames.append(frame)
    return frames


# ------------------------------------------------------------------------- lifecycle


async def test_urls_config_and_clean_stop() -> None:
    sim = SimulatedTradovate()
    with pytest.raises(RuntimeError):
        _ = sim.api_url
    async with sim:
        assert sim.api_url == f"http://127.0.0.1:{sim.port}/v1"
        assert sim.ws_url == f"ws://127.0.0.1:{sim.port}/v1/websocket"
        assert sim.md_url == f"ws://127.0.0.1:{sim.port}/md/v1/websocket"
        config = sim.config()
        assert isinstance(config, TradovateConfig)
        assert (config.username, config.password.reveal(), config.sec.reveal()) == (
            USER.username,
            USER.password,
            USER.sec,
        )
        assert (config.api_url, config.ws_url, config.md_url) == (
            sim.api_url,
            sim.ws_url,
            sim.md_url,
        )
        assert sim.config(device_id="other").device_id == "other"
        assert "sim-password" not in repr(USER)
    assert not [t for t in threading.enumerate() if t.name.startswith("tradovate-sim")]
    sim.stop()  # idempotent
    with pytest.raises(RuntimeError):
        sim.start()


def test_sync_start_stop_and_port_in_use() -> None:
    with SimulatedTradovate() as sim:
        response = httpx.post(f"{sim.api_url}/{LOGIN}", json=GOOD)
        assert response.status_code == 200
        taken = SimulatedTradovate(port=sim.port)
        with pytest.raises(OSError):
            taken.start()


async def test_tls(tmp_path: Any) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(certfile)
    cert.private_key_pem.write_to_path(keyfile)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with SimulatedTradovate(certfile=str(certfile), keyfile=str(keyfile)) as sim:
        assert sim.api_url.startswith("https://") and sim.ws_url.startswith("wss://")
        async with httpx.AsyncClient(verify=context) as client:
            response = await client.post(f"{sim.api_url}/{LOGIN}", json=GOOD)
        token = response.json()["accessToken"]
        ws = await websockets.connect(sim.ws_url, ssl=context)
        assert await recv(ws) == "o"
        await ws.send(f"authorize\n7\n\n{token}")
        assert await recv_messages(ws) == [{"s": 200, "i": 7}]
        assert sim.drop_sockets() == 1
        await wait_closed(ws)


# ------------------------------------------------------------------------------ login


async def test_login_success(server: SimulatedTradovate, http: httpx.AsyncClient) -> None:
    before = server.now()
    response = await http.post("/auth/accessTokenRequest", json=GOOD)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert len(body["accessToken"]) >= 64 and len(body["mdAccessToken"]) >= 64
    assert body["accessToken"] != body["mdAccessToken"]
    assert body["userId"] == USER.user_id and body["name"] == USER.username
    assert body["userStatus"] == "Active" and body["hasLive"] is False
    assert body["expirationTime"].endswith("Z") and len(body["expirationTime"]) == 24
    expires = parse_timestamp(body["expirationTime"]).timestamp()
    assert before + 5400 - 1 < expires < server.now() + 5400 + 1
    assert server.logins == 1 and server.token_requests == 1
    assert server.count(LOGIN, status=200) == 1 and server.count("/v1/Auth/AccessTokenRequest") == 1
    assert server.user_sessions(USER.username) == 1
    record = server.request_log[-1]
    assert (record.method, record.path, record.device_id) == ("POST", LOGIN, "test-device")


async def test_md_access_token_can_be_turned_off() -> None:
    async with SimulatedTradovate(md_access_token=False) as sim:
        async with httpx.AsyncClient(base_url=sim.api_url) as client:
            body = await token_of(client)
        assert "mdAccessToken" not in body
        ws = await open_socket(sim.md_url, body["accessToken"])
        await ws.close()


@pytest.mark.parametrize(
    "change",
    [
        {"password": "SIM-PASSWORD"},
        {"sec": "wrong"},
        {"appId": "other-app"},
        {"cid": 7},
        {"name": "nobody"},
    ],
)
async def test_bad_credentials_give_error_text(
    server: SimulatedTradovate, http: httpx.AsyncClient, change: dict[str, Any]
) -> None:
    response = await login(http, **change)
    assert response.status_code == 200
    assert response.json() == {"errorText": INCORRECT}
    assert server.logins == 0 and server.user_sessions(USER.username) == 0


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        json.dumps({k: v for k, v in GOOD.items() if k != "password"}).encode(),
        json.dumps({**GOOD, "cid": "0"}).encode(),
        json.dumps({**GOOD, "name": "x" * 65}).encode(),
        b"",
    ],
)
async def test_malformed_login_is_400(http: httpx.AsyncClient, body: bytes) -> None:
    response = await http.post(f"/{LOGIN}", content=body)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/plain")


async def test_failed_logins_lock_out_for_an_hour(
    server: SimulatedTradovate, http: httpx.AsyncClient
) -> None:
    for _ in range(5):
        assert (await login(http, password="wrong")).json() == {"errorText": INCORRECT}
    locked = await login(http)
    assert locked.status_code == 429
    assert locked.content == b"" and locked.headers["content-length"] == "0"
    server.advance_clock(1800)
    assert (await login(http)).status_code == 429  # repeated requests extend the lockout
    server.advance_clock(3601)
    assert "accessToken" in (await login(http)).json()


async def test_penalty_round_trip(server: SimulatedTradovate, http: httpx.AsyncClient) -> None:
    server.inject(LOGIN, Fault.penalty(30))
    first = (await login(http)).json()
    assert set(first) == {"p-ticket", "p-time"} and first["p-time"] == 30
    assert server.logins == 0
    # too early: penalised again with a new ticket
    early = (await login(http, **{"p-ticket": first["p-ticket"]})).json()
    assert "p-ticket" in early and early["p-ticket"] != first["p-ticket"]
    # without the ticket (strict): penalised again
    server.advance_clock(30)
    ignored = (await login(http)).json()
    assert "p-ticket" in ignored
    # an unknown ticket is no good either
    assert "p-ticket" in (await login(http, **{"p-ticket": "forged"})).json()
    server.advance_clock(30)
    done = await login(http, **{"p-ticket": ignored["p-ticket"]})
    assert "accessToken" in done.json()
    assert server.logins == 1
    assert [r.has_p_ticket for r in server.request_log] == [False, True, False, True, True]
    # the ticket is spent
    assert "accessToken" in (await login(http)).json()


async def test_lenient_penalties_let_ticketless_retries_through() -> None:
    async with SimulatedTradovate(strict_penalties=False) as sim:
        sim.inject(LOGIN, Fault.penalty(5))
        async with httpx.AsyncClient(base_url=sim.api_url) as client:
            assert "p-ticket" in (await login(client)).json()
            assert "accessToken" in (await login(client)).json()


async def test_captcha_penalty_is_never_lifted(
    server: SimulatedTradovate, http: httpx.AsyncClient
) -> None:
    server.inject(LOGIN, Fault.penalty(10, captcha=True))
    first = (await login(http)).json()
    assert first["p-captcha"] is True and first["p-time"] == 10
    server.advance_clock(60)
    again = (await login(http, **{"p-ticket": first["p-ticket"]})).json()
    assert again["p-captcha"] is True
    server.reset_limits()
    assert "accessToken" in (await login(http)).json()


# ----------------------------------------------------------------- renewal and sessions


async def test_renewal(server: SimulatedTradovate, http: httpx.AsyncClient) -> None:
    first = await token_of(http)
    server.advance_clock(85 * 60)
    response = await http.get(f"/{RENEW}", headers=bearer(first["accessToken"]))
    assert response.status_code == 200
    renewed = response.json()
    assert renewed["accessToken"] != first["accessToken"]
    assert renewed["mdAccessToken"] != first["mdAccessToken"]
    old_expiry = parse_timestamp(first["expirationTime"])
    new_expiry = parse_timestamp(renewed["expirationTime"])
    assert (new_expiry - old_expiry).total_seconds() == pytest.approx(85 * 60, abs=2)
    assert server.renewals == 1 and server.logins == 1
    assert server.user_sessions(USER.username) == 1
    assert (await http.get("/auth/me", headers=bearer(first["accessToken"]))).status_code == 401
    me = await http.get("/auth/me", headers=bearer(renewed["accessToken"]))
    assert me.json()["userId"] == USER.user_id
    assert server.request_log[-2].reason == "superseded"
    assert server.expired_token_rejections == 0


async def test_renewal_can_keep_the_old_token() -> None:
    async with SimulatedTradovate(renew_invalidates_old=False) as sim:
        async with httpx.AsyncClient(base_url=sim.api_url) as client:
            first = await token_of(client)
            renewed = await client.get(f"/{RENEW}", headers=bearer(first["accessToken"]))
            assert renewed.status_code == 200
            old = await client.get("/account/list", headers=bearer(first["accessToken"]))
            assert old.status_code == 200


async def test_expired_token_is_401_and_counted(
    server: SimulatedTradovate, http: httpx.AsyncClient
) -> None:
    token = (await token_of(http))["accessToken"]
    server.advance_clock(5400)
    for path in ("/auth/me", "/account/list", f"/{RENEW}"):
        response = await http.get(path, headers=bearer(token))
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("text/plain")
    assert server.expired_token_rejections == 3
    assert server.user_sessions(USER.username) == 0
    assert (await http.get("/auth/me")).status_code == 401  # no bearer: not "expired"
    assert (await http.get("/auth/me", headers=bearer("nonsense"))).status_code == 401
    assert server.expired_token_rejections == 3 and server.invalid_token_rejections == 2
    server.reset_counters()
    assert server.expired_token_rejections == 0 and server.request_log == []


async def test_renewal_limit() -> None:
    async with SimulatedTradovate(max_renewals_per_hour=2) as sim:
        async with httpx.AsyncClient(base_url=sim.api_url) as client:
            token = (await token_of(client))["accessToken"]
            for _ in range(2):
                response = await client.get(f"/{RENEW}", headers=bearer(token))
                token = response.json()["accessToken"]
            limited = await client.get(f"/{RENEW}", headers=bearer(token))
            assert limited.status_code == 429 and limited.content == b""
            sim.advance_clock(3601)  # the rolling hour has passed; the token is still valid
            assert (await client.get(f"/{RENEW}", headers=bearer(token))).status_code == 200


async def test_third_login_evicts_the_oldest_session(
    server: SimulatedTradovate, http: httpx.AsyncClient
) -> None:
    first = (await token_of(http))["accessToken"]
    ws = await open_socket(server.ws_url, first)
    second = (await token_of(http))["accessToken"]
    assert server.user_sessions(USER.username) == 2
    third = (await token_of(http))["accessToken"]
    assert server.user_sessions(USER.username) == 2
    frames = await wait_closed(ws)
    assert frames[-1] == 'c[1008,"Access token revoked"]'
    assert (await http.get("/auth/me", headers=bearer(first))).status_code == 401
    for token in (second, third):
        assert (await http.get("/auth/me", headers=bearer(token))).status_code == 200


async def test_revoke_tokens_closes_sockets(
    server: SimulatedTradovate, http: httpx.AsyncClient
) -> None:
    body = await token_of(http)
    ws = await open_socket(server.ws_url, body["accessToken"])
    md = await open_socket(server.md_url, body["mdAccessToken"])
    server.revoke_tokens(USER.username)
    assert server.ws_connections() == []
    await wait_closed(ws)
    await wait_closed(md)
    assert (await http.get("/auth/me", headers=bearer(body["accessToken"]))).status_code == 401
    assert server.user_sessions(USER.username) == 0


async def test_several_users() -> None:
    other = SimUser(
        username="second",
        password="pw2",
        user_id=99,
        accounts=(SimAccount(id=80001, name="DEMO80001"),),
    )
    async with SimulatedTradovate(users=(USER, other)) as sim:
        assert sim.config(other).username == "second"
        async with httpx.AsyncClient(base_url=sim.api_url) as client:
            response = await login(client, name="second", password="pw2")
            token = response.json()["accessToken"]
            accounts = (await client.get("/account/list", headers=bearer(token))).json()
        assert [(a["id"], a["name"], a["userId"]) for a in accounts] == [(80001, "DEMO80001", 99)]


# ------------------------------------------------------------------------ REST endpoints


async def test_entity_endpoints(http: httpx.AsyncClient) -> None:
    headers = bearer((await token_of(http))["accessToken"])
    me = (await http.get("/auth/me", headers=headers)).json()
    assert me == {
        "userId": USER.user_id,
        "name": USER.username,
        "fullName": USER.full_name,
        "email": USER.email,
        "emailVerified": True,
        "isTrial": False,
    }
    accounts = (await http.get("/account/list", headers=headers)).json()
    assert accounts[0]["id"] == 70001 and accounts[0]["name"] == "DEMO70001"
    assert accounts[0]["userId"] == USER.user_id and accounts[0]["active"] is True
    contract = (await http.get("/contract/find", params={"name": "ESZ5"}, headers=headers)).json()
    assert contract["name"] == "ESZ5" and isinstance(contract["id"], int)
    assert (await http.get("/nothing/here", headers=headers)).status_code == 404
    assert (await http.get("/nothing/here")).status_code == 404


async def test_place_order_rest(server: SimulatedTradovate, http: httpx.AsyncClient) -> None:
    headers = bearer((await token_of(http))["accessToken"])
    order = {
        "accountId": 70001,
        "accountSpec": "DEMO70001",
        "action": "Buy",
        "symbol": "ESZ5",
        "orderQty": 1,
        "orderType": "Limit",
        "price": 5000.25,
        "isAutomated": True,
    }
    placed = (await http.post("/order/placeorder", json=order, headers=headers)).json()
    assert isinstance(placed["orderId"], int)
    assert server.orders()[0]["id"] == placed["orderId"]
    bad = (
        await http.post("/order/placeorder", json={**order, "orderQty": 0}, headers=headers)
    ).json()
    assert bad["failureReason"] == "UnknownReason" and bad["failureText"]
    no_price = {**order, "price": None}
    assert (await http.post("/order/placeorder", json=no_price, headers=headers)).json()[
        "failureReason"
    ] == "InvalidPrice"
    no_account = {k: v for k, v in order.items() if k not in ("accountId", "accountSpec")}
    response = await http.post("/order/placeorder", json=no_account, headers=headers)
    assert "violations" in response.json()
    garbage = await http.post("/order/placeorder", content=b"{", headers=headers)
    assert garbage.status_code == 400


# -------------------------------------------------------------------------------- faults


async def test_status_faults(server: SimulatedTradovate, http: httpx.AsyncClient) -> None:
    server.inject(LOGIN, Fault.status(423))
    server.inject(LOGIN, Fault.status(429))
    server.inject(LOGIN, Fault.status(500))
    for code in (423, 429):
        response = await login(http)
        assert response.status_code == code
        assert response.content == b"" and response.headers["content-length"] == "0"
    error = await login(http)
    assert error.status_code == 500
    assert error.text.startswith("Internal Server Error, error id: ")
    assert server.logins == 0
    assert "accessToken" in (await login(http)).json()


async def test_body_faults(server: SimulatedTradovate, http: httpx.AsyncClient) -> None:
    server.inject(LOGIN, Fault.html())
    server.inject(LOGIN, Fault.malformed_json())
    server.inject(LOGIN, Fault.truncated_json())
    server.inject(LOGIN, Fault.error_text("Something else"))
    server.inject(LOGIN, Fault.status(503, "busy", "text/plain"))
    html = await login(http)
    assert html.status_code == 502 and html.headers["content-type"].startswith("text/html")
    assert "<html>" in html.text
    malformed = await login(http)
    assert malformed.status_code == 200
    assert malformed.headers["content-type"] == "application/json"
    with pytest.raises(ValueError):
        malformed.json()
    truncated = await login(http)
    with pytest.raises(ValueError):
        truncated.json()
    assert truncated.text.startswith('{"accessToken":')
    assert server.logins == 1  # the server did the work; only the answer was spoiled
    assert (await login(http)).json() == {"errorText": "Something else"}
    busy = await login(http)
    assert (busy.status_code, busy.text) == (503, "busy")
    assert [r.fault for r in server.request_log] == [
        "html",
        "malformed_json",
        "truncated_json",
        "error_text",
        "status",
    ]


async def test_delay_and_drop_faults(server: SimulatedTradovate, http: httpx.AsyncClient) -> None:
    server.inject(LOGIN, Fault.delay(1.5))
    with pytest.raises(httpx.ReadTimeout):
        await http.post(f"/{LOGIN}", json=GOOD, timeout=0.1)
    server.inject(LOGIN, Fault.delay(0.05))
    started = time.monotonic()
    assert "accessToken" in (await login(http)).json()
    assert time.monotonic() - started >= 0.05
    server.inject(LOGIN, Fault.drop())
    with pytest.raises(httpx.TransportError):
        await login(http)
    assert "accessToken" in (await login(http)).json()


async def test_fault_targeting(server: SimulatedTradovate, http: httpx.AsyncClient) -> None:
    headers = bearer((await token_of(http))["accessToken"])
    server.inject("*", Fault.status(500), times=2)
    server.inject("account/list", Fault.status(502))
    server.inject("auth/me", Fault.status(503), transport="ws")
    # exact path first, then "*"
    assert (await http.get("/account/list", headers=headers)).status_code == 502
    assert (await http.get("/account/list", headers=headers)).status_code == 500
    assert (await http.get("/auth/me", headers=headers)).status_code == 500
    assert (await http.get("/auth/me", headers=headers)).status_code == 200  # ws-only fault
    server.clear_faults()
    assert server.count("*", status=500) == 2


async def test_renew_penalty_with_query_ticket(
    server: SimulatedTradovate, http: httpx.AsyncClient
) -> None:
    headers = bearer((await token_of(http))["accessToken"])
    server.inject(RENEW, Fault.penalty(1))
    ticket = (await http.get(f"/{RENEW}", headers=headers)).json()["p-ticket"]
    server.advance_clock(1)
    response = await http.get(f"/{RENEW}", params={"p-ticket": ticket}, headers=headers)
    assert "accessToken" in response.json()


# ---------------------------------------------------------------------------- WebSockets


async def test_ws_authorize_styles(server: SimulatedTradovate, http: httpx.AsyncClient) -> None:
    body = await token_of(http)
    ws = await websockets.connect(server.ws_url)
    assert await recv(ws) == "o"
    await ws.send("account/list\n1\n\n")
    assert (await recv_messages(ws))[0]["s"] == 401
    await ws.send(f"authorize\n2\n\n{body['mdAccessToken']}")  # md token: not on trading
    assert await recv_messages(ws) == [{"s": 401, "i": 2, "d": "Invalid access token"}]
    await ws.send(f"authorize\n3\n\n{json.dumps(body['accessToken'])}")  # quoted: refused
    assert (await recv_messages(ws))[0]["s"] == 401
    await ws.send(f"authorize\n4\n\n{body['accessToken']}")
    assert await recv_messages(ws) == [{"s": 200, "i": 4}]
    await ws.send("account/list\n5\n\n")
    [answer] = await recv_messages(ws)
    assert answer["s"] == 200 and answer["i"] == 5 and answer["d"][0]["id"] == 70001
    await ws.send("auth/me\n6\n\n")
    assert (await recv_messages(ws))[0]["d"]["userId"] == USER.user_id
    await ws.send("no/such\n7\n\n")
    # JSON-quoted inside the string, as recorded (tests/wire/samples/frame-404-double-quoted-*)
    assert await recv_messages(ws) == [{"s": 404, "i": 7, "d": '"Not found: no/such"'}]
    await ws.close()

    for token in (body["mdAccessToken"], body["accessToken"]):
        md = await websockets.connect(server.md_url)
        assert await recv(md) == "o"
        await md.send(json.dumps({"request": "auth", "accessToken": token}))
        assert await recv_messages(md) == [{"s": 200, "i": 0}]
        await md.close()
    assert server.ws_authorizations == 3 and server.ws_total_connections == 3


async def test_ws_expired_token_counts(server: SimulatedTradovate, http: httpx.AsyncClient) -> None:
    token = (await token_of(http))["accessToken"]
    server.advance_clock(6000)
    ws = await websockets.connect(server.ws_url)
    assert await recv(ws) == "o"
    await ws.send(f"authorize\n1\n\n{token}")
    assert (await recv_messages(ws))[0]["s"] == 401
    assert server.expired_token_rejections == 1
    await ws.close()


async def test_ws_timeouts() -> None:
    async with SimulatedTradovate(
        auth_timeout=0.3, heartbeat_timeout=0.4, server_heartbeat=0.1
    ) as sim:
        async with httpx.AsyncClient(base_url=sim.api_url) as client:
            token = (await token_of(client))["accessToken"]
        silent = await websockets.connect(sim.ws_url)
        assert await recv(silent) == "o"
        frames = await wait_closed(silent)
        assert frames[-1] == 'c[1008,"Authorization timeout"]'
        assert silent.close_code == 1008

        ws = await open_socket(sim.ws_url, token)
        assert await recv(ws, skip_h=False) == "h"  # idle server heartbeat
        for _ in range(4):
            await ws.send("[]")
            await asyncio.sleep(0.15)
        [info] = sim.ws_connections("trading")
        assert info.heartbeat_count == 4 and len(info.heartbeats) == 4
        assert info.authorized and info.user == USER.username
        assert info.token_prefix == token[:8]
        frames = await wait_closed(ws)
        assert frames[-1] == 'c[1008,"Heartbeat timeout"]'


async def test_ws_close_on_expiry() -> None:
    async with SimulatedTradovate(close_sockets_on_expiry=True) as sim:
        async with httpx.AsyncClient(base_url=sim.api_url) as client:
            token = (await token_of(client))["accessToken"]
        ws = await open_socket(sim.ws_url, token)
        sim.advance_clock(5400)
        frames = await wait_closed(ws)
        assert frames[-1] == 'c[1008,"Access token expired"]'


async def test_ws_quotes_stream(server: SimulatedTradovate, http: httpx.AsyncClient) -> None:
    md = await open_socket(server.md_url, (await token_of(http))["mdAccessToken"])
    await md.send('md/subscribeQuote\n2\n\n{"symbol":"ESZ5"}')
    assert await recv_messages(md) == [{"s": 200, "i": 2}]
    ids = set()
    for _ in range(3):
        [event] = await recv_messages(md)
        assert event["e"] == "md"
        [quote] = event["d"]["quotes"]
        assert set(quote["entries"]) >= {"Bid", "Offer", "Trade", "TotalTradeVolume"}
        assert quote["entries"]["Bid"]["price"] < quote["entries"]["Offer"]["price"]
        ids.add(quote["contractId"])
    assert len(ids) == 1
    [info] = server.ws_connections("md")
    assert info.subscriptions == {("md/subscribeQuote", "ESZ5")}
    await md.send('md/subscribeDOM\n3\n\n{"symbol":"NQZ5"}')
    seen_dom = False
    for _ in range(10):
        for message in await recv_messages(md):
            seen_dom |= "doms" in message.get("d", {})
        if seen_dom:
            break
    assert seen_dom
    await md.send('md/unsubscribeQuote\n4\n\n{"symbol":"ESZ5"}')
    await md.send('md/unsubscribeDOM\n5\n\n{"symbol":"NQZ5"}')
    await md.send("md/subscribeQuote\n6\n\n{}")
    answers: dict[int, int] = {}
    while len(answers) < 3:
        answers.update({m["i"]: m["s"] for m in await recv_messages(md) if "i" in m})
    assert answers == {4: 200, 5: 200, 6: 400}
    assert server.ws_connections("md")[0].subscriptions == frozenset()
    await md.close()


async def test_ws_sync_and_props(server: SimulatedTradovate, http: httpx.AsyncClient) -> None:
    token = (await token_of(http))["accessToken"]
    watcher = await open_socket(server.ws_url, token)
    trader = await open_socket(server.ws_url, token)
    await watcher.send(f'user/syncrequest\n2\n\n{{"users":[{USER.user_id}]}}')
    [sync] = await recv_messages(watcher)
    assert sync["s"] == 200
    snapshot = sync["d"]
    assert snapshot["users"][0]["id"] == USER.user_id
    assert snapshot["accounts"][0]["id"] == 70001
    assert snapshot["cashBalances"][0]["amount"] == 50_000.0
    assert snapshot["orders"] == [] and snapshot["positions"] == []
    order = {
        "accountSpec": USER.username,
        "action": "Sell",
        "symbol": "ESZ5",
        "orderQty": 2,
        "orderType": "Market",
        "isAutomated": True,
    }
    await trader.send(f"order/placeorder\n9\n\n{json.dumps(order)}")
    [placed] = await recv_messages(trader)
    order_id = placed["d"]["orderId"]
    events = await props_until(watcher, "position")
    assert all(e["e"] == "props" for e in events)
    event = events[0]
    assert event["d"]["entityType"] == "order" and event["d"]["eventType"] == "Created"
    assert event["d"]["entity"]["id"] == order_id
    assert event["d"]["entity"]["accountId"] == 70001
    kinds = [(e["d"]["entityType"], e["d"]["eventType"]) for e in events]
    assert ("fill", "Created") in kinds and ("order", "Updated") in kinds  # a market order fills
    # REST orders reach the synced socket too; the unsynced one gets no props
    await http.post("/order/placeorder", json={**order, "accountId": 70001}, headers=bearer(token))
    events = await props_until(watcher, "position")
    assert events[0]["d"]["eventType"] == "Created"
    await watcher.send('user/syncrequest\n3\n\n{"accounts":[70001],"entityTypes":["order"]}')
    [sync] = await recv_messages(watcher)
    assert set(sync["d"]) == {"orders"} and len(sync["d"]["orders"]) == 2
    with pytest.raises(TimeoutError):
        await recv(trader, limit=0.1)
    await watcher.close()
    await trader.close()


async def test_ws_drop_shutdown_and_raw(
    server: SimulatedTradovate, http: httpx.AsyncClient
) -> None:
    body = await token_of(http)
    trading = await open_socket(server.ws_url, body["accessToken"])
    md = await open_socket(server.md_url, body["mdAccessToken"])
    assert server.send_raw("garbage{", kind="md") == 1
    assert await recv(md) == "garbage{"
    assert server.drop_sockets("md") == 1
    await wait_closed(md)
    assert md.close_code == 1006  # no close frame: the TCP connection was cut
    assert [c.kind for c in server.ws_connections()] == ["trading"]
    assert server.send_shutdown("ConnectionQuotaReached", "too many") == 1
    frames = await wait_closed(trading)
    assert json.loads(frames[0][1:]) == [
        {"e": "shutdown", "d": {"reasonCode": "ConnectionQuotaReached", "reason": "too many"}}
    ]
    assert frames[-1] == 'c[1001,"ConnectionQuotaReached"]'
    assert server.ws_connections() == []
    assert server.drop_sockets() == 0


async def test_ws_faults(server: SimulatedTradovate, http: httpx.AsyncClient) -> None:
    md = await open_socket(server.md_url, (await token_of(http))["mdAccessToken"])
    server.inject("md/subscribeQuote", Fault.penalty(20))
    server.inject("md/subscribeQuote", Fault.status(429), transport="ws")
    server.inject("md/subscribeQuote", Fault.status(500))
    await md.send('md/subscribeQuote\n1\n\n{"symbol":"ESZ5"}')
    [penalty] = await recv_messages(md)
    assert penalty["s"] == 200 and penalty["d"]["p-time"] == 20
    ticket = penalty["d"]["p-ticket"]
    await md.send(f'md/subscribeQuote\n2\n\n{{"symbol":"ESZ5","p-ticket":"{ticket}"}}')
    [early] = await recv_messages(md)
    assert early["i"] == 2 and "p-ticket" in early["d"]
    server.advance_clock(20)
    await md.send(
        f'md/subscribeQuote\n3\n\n{{"symbol":"ESZ5","p-ticket":"{early["d"]["p-ticket"]}"}}'
    )
    assert await recv_messages(md) == [{"s": 429, "i": 3}]
    await md.send('md/subscribeQuote\n4\n\n{"symbol":"ESZ5"}')
    [error] = await recv_messages(md)
    assert error["s"] == 500 and error["d"].startswith("Internal Server Error")
    server.inject("md/subscribeQuote", Fault.malformed_json())
    await md.send('md/subscribeQuote\n5\n\n{"symbol":"ESZ5"}')
    with pytest.raises(ValueError):
        json.loads((await recv(md))[1:])
    server.inject("md/subscribeQuote", Fault.drop())
    await md.send('md/subscribeQuote\n6\n\n{"symbol":"ESZ5"}')
    await wait_closed(md)
    assert [r.status for r in server.request_log if r.transport == "ws"][-6:] == [
        200,
        200,
        429,
        500,
        200,
        200,
    ]


async def test_ws_authorize_delay_and_bad_frames(
    server: SimulatedTradovate, http: httpx.AsyncClient
) -> None:
    token = (await token_of(http))["accessToken"]
    server.authorize_delay = 0.2
    assert server.authorize_delay == 0.2
    ws = await websockets.connect(server.ws_url)
    assert await recv(ws) == "o"
    await ws.send("garbage without newline")
    await ws.send("x\nnot-a-number\n\n")
    await ws.send('{"json": "but not auth"}')
    started = time.monotonic()
    await ws.send(f"authorize\n1\n\n{token}")
    assert await recv_messages(ws) == [{"s": 200, "i": 1}]
    assert time.monotonic() - started >= 0.2
    await ws.send("account/list\n2\n\nnot json")
    assert (await recv_messages(ws))[0]["s"] == 400
    await ws.close()


async def test_md_burst() -> None:
    async with SimulatedTradovate(quote_interval=None) as quiet:
        async with httpx.AsyncClient(base_url=quiet.api_url) as client:
            token = (await token_of(client))["mdAccessToken"]
        md = await open_socket(quiet.md_url, token)
        burst = asyncio.ensure_future(quiet.md_burst(200, batch=3))
        for _ in range(200):
            [event] = await recv_messages(md)
            assert len(event["d"]["quotes"]) == 3
        assert await burst == 200
        await md.close()


# ----------------------------------------------------------------------- construction


def test_constructor_checks() -> None:
    with pytest.raises(ValueError):
        SimulatedTradovate(users=())
    with pytest.raises(ValueError):
        SimulatedTradovate(users=(USER, SimUser(username="twin", user_id=1)))  # same account id
    with pytest.raises(ValueError):
        SimulatedTradovate(users=(USER, USER))
    with pytest.raises(ValueError):
        SimulatedTradovate(certfile="cert.pem")
    with pytest.raises(ValueError):
        Fault.penalty(-1)


def test_concurrent_logins_from_threads() -> None:
    with SimulatedTradovate(max_failed_logins=None) as sim:

        def worker() -> None:
            with httpx.Client(base_url=sim.api_url) as client:
                for _ in range(15):
                    assert "accessToken" in client.post(f"/{LOGIN}", json=GOOD).json()
                    sim.inject("account/list", Fault.status(500))
                    sim.user_sessions(USER.username)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sim.logins == 60 and sim.token_requests == 60
        assert sim.user_sessions(USER.username) == 2


def test_serve_forever_returns_when_stopped() -> None:
    sim = SimulatedTradovate()
    sim.start()
    stopper = threading.Timer(0.1, sim.stop)
    stopper.start()
    sim.serve_forever()
    stopper.join()
    assert not [t for t in threading.enumerate() if t.name.startswith("tradovate-sim")]
    with pytest.raises(RuntimeError):
        sim.drop_sockets()
