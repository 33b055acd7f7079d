"""Fault-table rows for hostile input: bad settings, planted files, hostile servers, echoed secrets.

Same conventions as ``fault_table.py`` (whose :data:`~tests.reliability.fault_table.CASES` these
rows extend in the README and in ``test_faults.py``): ``setup`` provokes the fault against real
things, ``check`` asserts the outcome.
"""

from __future__ import annotations

import os
import stat
import threading
import tracemalloc
from typing import Any

import anyio
import anyio.to_thread
import httpx

from tests.hostile_http import HostileServer, announced, endless_chunked, trickle
from tests.reliability.fault_table import FaultCase, Lab, error_of, prefix_of, token_file
from tests.reliability.test_secret_encodings import Scanner
from tests.test_session import wait_until
from tests.test_store_hostile import _FifoWatchdog, _hammer, inside
from tradovate_async import (
    APIError,
    ConfigError,
    ConnectFailedError,
    ExchangeBounds,
    ExchangeDeadlineError,
    FileTokenStore,
    InvalidCredentialsError,
    MemoryTokenStore,
    RedisTokenStore,
    ResponseTooLargeError,
    TokenStore,
    TokenStoreError,
    TradovateConfig,
    TradovateSession,
    TransportError,
)
from tradovate_async.sim import Fault, SimUser

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
    session = TradovateSession(config, clock=lab.clock)
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
        session = TradovateSession(sim.config(user), store=store, clock=lab.clock)
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


# ------------------------------------------------------------------ token files


async def fifo_setup(lab: Lab) -> None:
    path = token_file(lab)
    path.parent.mkdir()
    os.mkfifo(path, 0o600)
    sim = await lab.start_sim()
    store = FileTokenStore(path)
    watchdog = _FifoWatchdog(path)
    try:
        with anyio.move_on_after(5) as scope:  # what a session start does first
            await store.load(sim.config().token_key)
        await lab.open_session(store=store)
    finally:
        watchdog.stop()
    lab.facts["hung"] = watchdog.fired or scope.cancelled_caught


async def fifo_check(lab: Lab) -> None:
    assert not lab.facts["hung"] and lab.sim.logins == 1
    path = token_file(lab)
    assert stat.S_ISREG(path.stat().st_mode)  # replaced by the first save
    assert any("not a regular file" in m for m in lab.warnings)


async def huge_file_setup(lab: Lab) -> None:
    path = token_file(lab)
    path.parent.mkdir()
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.truncate(fd, 1 << 30)  # 1 GiB, sparse: takes no disk space
    os.close(fd)
    await lab.start_sim()
    tracemalloc.start()
    try:
        await lab.open_session(store=FileTokenStore(path))
        lab.facts["peak"] = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def huge_file_check(lab: Lab) -> None:
    assert lab.facts["peak"] < 8 << 20 and lab.sim.logins == 1
    assert token_file(lab).stat().st_size < 4096  # replaced by a valid file
    assert any("larger than 1048576 bytes" in m for m in lab.warnings)


async def planted_link_setup(lab: Lab) -> None:
    path = token_file(lab)
    path.parent.mkdir()
    victim = lab.tmp_path / "victim.txt"
    victim.write_text("not yours to overwrite")
    path.symlink_to(victim)
    await lab.start_sim()
    await lab.open_session(store=FileTokenStore(path))


async def planted_link_check(lab: Lab) -> None:
    path = token_file(lab)
    assert not path.is_symlink() and stat.S_ISREG(path.stat().st_mode)
    assert (lab.tmp_path / "victim.txt").read_text() == "not yours to overwrite"
    assert any("symbolic link, which is never followed" in m for m in lab.warnings)
    assert lab.sim.logins == 1


async def loose_mode_setup(lab: Lab) -> None:
    path = token_file(lab)
    await lab.start_sim()
    first = await lab.open_session(store=FileTokenStore(path))
    lab.facts["first"] = prefix_of(first)
    path.chmod(0o644)
    await lab.open_session(store=FileTokenStore(path))  # a second process, later


async def loose_mode_check(lab: Lab) -> None:
    path = token_file(lab)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert any("had mode 0644 (readable by others); set it to 0600" in m for m in lab.warnings)
    assert lab.sim.logins == 1  # the second session adopted the stored token


async def foreign_owner_setup(lab: Lab) -> None:
    path = token_file(lab)
    path.parent.mkdir()
    path.write_text("{}")
    path.chmod(0o600)
    os.chown(path, 4321, 4321)  # tests run as root: give the file to another user
    await lab.start_sim()
    await lab.open_session(store=FileTokenStore(path))


async def foreign_owner_check(lab: Lab) -> None:
    assert token_file(lab).stat().st_uid == 4321 and token_file(lab).read_text() == "{}"
    assert lab.session.stats.store_errors == 2 and lab.sim.logins == 1
    assert any("owned by another user (uid 4321" in m for m in lab.warnings)
    await lab.session.get("account/list")


async def planted_lock_setup(lab: Lab) -> None:
    path = token_file(lab)
    path.parent.mkdir()
    victim = lab.tmp_path / "victim.txt"
    victim.write_text("not yours to truncate")
    path.with_name(path.name + ".lock").symlink_to(victim)
    store = FileTokenStore(path, lock_wait=2)

    async def lock() -> None:
        async with store.lock("k"):
            pass

    lab.facts["error"] = await error_of(lock())
    await lab.start_sim()
    await lab.open_session(store=store)


async def planted_lock_check(lab: Lab) -> None:
    error = lab.facts["error"]
    assert isinstance(error, TokenStoreError) and "is a symbolic link" in str(error)
    assert (lab.tmp_path / "victim.txt").read_text() == "not yours to truncate"
    assert any("another user may have planted it" in m for m in lab.warnings)
    assert lab.session.stats.store_errors >= 2


def threads_setup(kind: str) -> Any:
    async def setup(lab: Lab) -> None:
        store: TokenStore = (
            MemoryTokenStore() if kind == "memory" else FileTokenStore(token_file(lab))
        )
        inside.clear()
        errors: list[BaseException] = []
        start = threading.Barrier(2)
        threads = [
            threading.Thread(target=_hammer, args=(store, 50, start, errors), daemon=True)
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            await anyio.to_thread.run_sync(thread.join, 40.0)
        lab.facts["alive"] = [t.is_alive() for t in threads]
        lab.facts["errors"] = errors
        lab.facts["stored"] = await store.load("demo|bot-user|app")

    return setup


async def threads_check(lab: Lab) -> None:
    assert lab.facts["alive"] == [False, False] and lab.facts["errors"] == []
    assert lab.facts["stored"] is not None


# ------------------------------------------------------------------ hostile HTTP servers


async def trickle_setup(lab: Lab) -> None:
    server = await lab.stack.enter_async_context(
        HostileServer({"auth/accesstokenrequest": trickle(0.5)})
    )
    session = TradovateSession(
        server.config(), timeout=10.0, token_bounds=ExchangeBounds(2.0, 64 * 1024)
    )

    async def start() -> None:
        async with session:
            pass

    lab.facts["error"] = await error_of(start())
    lab.facts["stats"] = server.stats


async def trickle_check(lab: Lab) -> None:
    error = lab.facts["error"]
    assert isinstance(error, ExchangeDeadlineError) and isinstance(error, TransportError)
    assert "within 2 s (deadline)" in str(error)
    assert lab.facts["stats"].requests == ["auth/accesstokenrequest"]  # not retried at start


async def huge_body_setup(lab: Lab) -> None:
    server = await lab.stack.enter_async_context(
        HostileServer({"account/list": endless_chunked(), "fill/list": announced(1_500_000_000)})
    )
    session = TradovateSession(server.config())
    await lab.stack.enter_async_context(session)
    tracemalloc.start()
    try:
        lab.facts["chunked"] = await error_of(session.get("account/list"))
        lab.facts["announced"] = await error_of(session.get("fill/list"))
        lab.facts["peak"] = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    lab.facts["after"] = await session.get("position/list")
    lab.facts["sent"] = server.stats.body_bytes_sent


async def huge_body_check(lab: Lab) -> None:
    assert isinstance(lab.facts["chunked"], ResponseTooLargeError)
    assert isinstance(lab.facts["announced"], ResponseTooLargeError)
    assert "announces 1500000000 bytes" in str(lab.facts["announced"])
    assert lab.facts["peak"] < 192 << 20  # the 64 MiB cap (and its join), not 1.5 GB
    assert lab.facts["sent"] < 256 << 20  # the client hung up
    assert lab.facts["after"] == []


# ------------------------------------------------------------------ echoed secrets

ECHO_PASSWORD = 'pw"\\ <x>&%2B+é' + "\U0001f600"
ECHO_SECRET = 'sec"\\/ tail&lt;%'


def _echo_user() -> SimUser:
    return SimUser(username="echo-user", password=ECHO_PASSWORD, sec=ECHO_SECRET)


async def echo_login_setup(lab: Lab) -> None:
    sim = await lab.start_sim(users=(_echo_user(),))
    errors = []
    for style in ("error_text", "html", "plain"):
        sim.inject("auth/accesstokenrequest", Fault.echo(style))  # type: ignore[arg-type]
        session = TradovateSession(sim.config(), clock=lab.clock)

        async def start(session: TradovateSession = session) -> None:
            async with session:
                pass

        errors.append(await error_of(start()))
    lab.facts["errors"] = errors


async def echo_login_check(lab: Lab) -> None:
    errors = lab.facts["errors"]
    assert isinstance(errors[0], InvalidCredentialsError)
    assert all(isinstance(e, APIError) for e in errors[1:])
    texts = [t for e in errors for t in (str(e), repr(e))] + lab.warnings
    assert any("you sent" in t and "********" in t for t in texts)
    scanner = Scanner(["echo-user", "tradovate-async-sim", "sim-device-0001", "you sent"])
    scanner.add(ECHO_PASSWORD, 8)
    scanner.add(ECHO_SECRET, 8)
    assert scanner.leaks(texts) == []


async def echo_authorize_setup(lab: Lab) -> None:
    sim = await lab.start_sim()
    session = await lab.open_session()
    lab.facts["token"] = session.token.access_token.reveal()
    sim.inject("authorize", Fault.echo("plain"), times=50)
    lab.facts["error"] = await error_of(lab.open_socket())


async def echo_authorize_check(lab: Lab) -> None:
    token, error = lab.facts["token"], lab.facts["error"]
    assert isinstance(error, ConnectFailedError) and "you sent" in str(error)
    texts = [str(error), repr(error), *lab.warnings]
    assert token[:8] + "…" in str(error)
    assert not any(token[:9] in t or token[-12:] in t for t in texts)


async def transport_cause_setup(lab: Lab) -> None:
    sim = await lab.start_sim()
    config = sim.config(api_url="http://127.0.0.1:9/v1")  # nothing listens there
    session = TradovateSession(config, clock=lab.clock)

    async def start() -> None:
        async with session:
            pass

    lab.facts["error"] = await error_of(start())
    lab.facts["password"] = config.password.reveal()


async def transport_cause_check(lab: Lab) -> None:
    error = lab.facts["error"]
    assert isinstance(error, TransportError)
    cause = error.__cause__
    assert isinstance(cause, httpx.TransportError) and error.__context__ is None
    try:
        cause.request  # noqa: B018 - raises when no request is attached
    except RuntimeError:
        pass
    else:
        raise AssertionError("the httpx error still carries the login request")


# ------------------------------------------------------------------ unconsumed events


async def props_flood_setup(lab: Lab) -> None:
    sim = await lab.start_sim()
    session = await lab.open_session()
    ws = await lab.open_socket(event_buffer=50)
    user = sim.users[0]
    await ws.request("user/syncrequest", json={"users": [user.user_id]}, replay=True)
    largest = 0
    for _ in range(20):  # 5,000 props events that nobody reads
        await sim.push_props(
            user.username, [("userProperty", "Updated", {"id": 1, "n": 1})] * 250, per_frame=25
        )
        largest = max(largest, len(ws._core.events))
    await wait_until(lambda: sim.count("user/syncrequest") >= 2)
    kinds: list[str] = []
    with anyio.move_on_after(1):
        async for event in ws.events():
            kinds.append(event.kind)
    lab.facts.update(largest=largest, kinds=kinds, dropped=ws.stats.dropped_events)
    assert session.stats.logins == 1


async def props_flood_check(lab: Lab) -> None:
    assert lab.facts["largest"] <= 80 and lab.facts["dropped"] > 0
    assert "overflow" in lab.facts["kinds"] and "resynced" in lab.facts["kinds"]
    assert any("the consumer fell behind" in m for m in lab.warnings)


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
    FaultCase(
        "token-file-fifo",
        fault="A FIFO at the token file's path, with no writer",
        setup=fifo_setup,
        expected_outcome=(
            "Opened without blocking (O_NONBLOCK), seen not to be a regular file: WARNING, one "
            "login, and the first save replaces it; the store's read returns well inside the "
            "caller's `move_on_after(5)`."
        ),
        check=fifo_check,
    ),
    FaultCase(
        "token-file-huge",
        fault="A 1 GiB file at the token file's path",
        setup=huge_file_setup,
        expected_outcome=(
            "Not read (the cap is 1 MiB, `max_file_size`): WARNING, one login, the file is "
            "replaced; the store allocates less than 8 MiB."
        ),
        check=huge_file_check,
    ),
    FaultCase(
        "token-file-planted-link",
        fault="A symbolic link planted at the token file's path",
        setup=planted_link_setup,
        expected_outcome=(
            "Never followed (O_NOFOLLOW): WARNING, one login; the save replaces the link itself, "
            "the file it pointed to is untouched."
        ),
        check=planted_link_check,
    ),
    FaultCase(
        "token-file-mode-0644",
        fault="Our token file has mode 0644 (readable by other users)",
        setup=loose_mode_setup,
        expected_outcome="Mode set back to 0600 with a WARNING; the token is still used.",
        check=loose_mode_check,
    ),
    FaultCase(
        "token-file-foreign-owner",
        fault="The token file belongs to another user",
        setup=foreign_owner_setup,
        expected_outcome=(
            "Refused, neither trusted nor replaced: TokenStoreError naming the owner's uid, "
            "logged at WARNING for the load and the save; the session logs in and keeps its "
            "token in memory."
        ),
        check=foreign_owner_check,
    ),
    FaultCase(
        "lock-file-planted-link",
        fault="The lock file `<path>.lock` is a symbolic link planted by another user",
        setup=planted_lock_setup,
        expected_outcome=(
            "TokenStoreError saying the lock file is a link another user may have planted (not "
            "followed, its target untouched); the session logs it at WARNING and goes on without "
            "the store."
        ),
        check=planted_lock_check,
    ),
    FaultCase(
        "memory-store-two-loops",
        fault="One MemoryTokenStore shared by two threads, each with its own event loop",
        setup=threads_setup("memory"),
        expected_outcome=(
            "Works: the lock excludes across loops (a per-loop queue in front of a thread "
            "lock); 2 × 50 lock/save rounds, never two holders, no hang."
        ),
        check=threads_check,
    ),
    FaultCase(
        "file-store-two-loops",
        fault="One FileTokenStore shared by two threads, each with its own event loop",
        setup=threads_setup("file"),
        expected_outcome="Works, as for the memory store; the file holds the last token.",
        check=threads_check,
    ),
    FaultCase(
        "http-trickle",
        fault="Token endpoint trickles its answer, one byte every 0.5 s (per-read timeout 10 s)",
        setup=trickle_setup,
        expected_outcome=(
            "ExchangeDeadlineError (a TransportError) when the exchange's total deadline passes "
            "(here 2 s; default 30 s for token exchanges, 60 s for REST calls)."
        ),
        check=trickle_check,
    ),
    FaultCase(
        "http-huge-body",
        fault="REST answers with an endless chunked body, or announces 1.5 GB",
        setup=huge_body_setup,
        expected_outcome=(
            "ResponseTooLargeError once 64 MiB (REST default; 64 KiB for token answers) are "
            "read, or at once for the announced length; memory stays within the cap; the "
            "session goes on."
        ),
        check=huge_body_check,
    ),
    FaultCase(
        "echo-login-body",
        fault=(
            "Token endpoint echoes the login body (password, API secret with quotes, "
            "backslashes, `%`, `+`, `&<>`, non-ASCII) in an errorText, an HTML page and a "
            "plain 500, raw, JSON-escaped, doubly escaped, `\\u`-escaped, URL- and HTML-encoded"
        ),
        setup=echo_login_setup,
        expected_outcome=(
            "Typed errors whose texts, and the WARNING logs, show `********` for every form of "
            "the password and secret (the text is decoded layer by layer and each layer "
            "searched)."
        ),
        check=echo_login_check,
    ),
    FaultCase(
        "echo-token-authorize",
        fault="Socket authorize answered `s=500` with `d` echoing the token in every encoding",
        setup=echo_authorize_setup,
        expected_outcome=(
            "ConnectFailedError showing at most the token's 8-character prefix; the same "
            "scrubber covers every server text on the socket and the library's log redaction."
        ),
        check=echo_authorize_check,
    ),
    FaultCase(
        "transport-error-request",
        fault="Login fails in transit (connection refused); a caller inspects the exception",
        setup=transport_cause_setup,
        expected_outcome=(
            "TransportError whose `__cause__` is a copy of the httpx error without its request "
            "(whose body holds the password and secret) and no `__context__`."
        ),
        check=transport_cause_check,
    ),
    FaultCase(
        "ws-props-flood-unconsumed",
        fault="5,000 `props` events on a trading socket whose events nobody reads (buffer 50)",
        setup=props_flood_setup,
        expected_outcome=(
            "The buffer stays within its bound: the props backlog is dropped, an `overflow` "
            "event marks the gap, a fresh `user/syncrequest` goes out (WARNING) and its answer "
            "arrives as a `resynced` event; quotes and DOM would instead be superseded per "
            "contract."
        ),
        check=props_flood_check,
    ),
]
