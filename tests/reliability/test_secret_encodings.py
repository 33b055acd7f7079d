"""Secrets echoed back by a server, in every encoding: nothing survives anywhere we write.

The simulator's ``echo`` fault answers with what the client sent — the login body (password and
API secret), the bearer token, the token of an ``authorize`` frame — as received, JSON-escaped,
doubly JSON-escaped, ``\\u``-escaped, URL-encoded (``%XX`` and ``+``) and HTML-escaped, inside an
``errorText``, an HTML error page, a plain-text 500, or a socket answer. Hypothesis draws
passwords, API secrets and tokens with every character class (quotes, backslashes, ``%``,
``+``, ``&<>``, spaces, controls, Latin-1, BMP and astral characters). Then every error (its
``str``, ``repr`` and chained causes), every log record at DEBUG (ours, httpx, httpcore,
websockets) and the CLI's stderr with ``--verbose`` are searched for each secret's pieces in
each encoding. Passwords and secrets keep nothing (no 8-character piece); tokens keep at most
their 8-character prefix (no 9-character piece).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import traceback
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

import anyio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import RecordCollector
from tests.forked import run_module
from tests.test_ws import FAST
from tradovate_async import (
    AccessToken,
    MemoryTokenStore,
    Secret,
    TradovateError,
    TradovateSession,
)
from tradovate_async.sim import Fault, SimulatedTradovate, SimUser

LOGIN = "auth/accesstokenrequest"
SCANNED = ("tradovate_async", "httpx", "httpcore", "websockets")
# Characters no scrubber mask uses, so a mask can never look like a piece of a secret.
_NO_MASK = {"*", "…"}
NASTY = "\"\\/%+&<>' \t\n\x01é€😀"
ASCII_NASTY = "\"\\/%+&<>'"


def _secrets(min_size: int, *, printable_ascii: bool = False) -> st.SearchStrategy[str]:
    if printable_ascii:  # tokens travel in an HTTP header and a socket frame line
        alphabet = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
        must = ASCII_NASTY
    else:
        alphabet = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
        must = NASTY
    body = st.text(
        alphabet.filter(lambda c: c not in _NO_MASK), min_size=min_size, max_size=min_size + 16
    )
    return st.tuples(body, st.permutations(must)).map(
        lambda parts: (
            "".join(p for pair in zip(parts[0], parts[1], strict=False) for p in pair)
            + parts[0][len(parts[1]) :]
            + "".join(parts[1][len(parts[0]) :])
        )
    )


def encodings(text: str) -> list[str]:
    """``text`` in every encoding the echo uses, and a log's ``repr``."""
    return [
        text,
        json.dumps(text)[1:-1],
        json.dumps(text, ensure_ascii=False)[1:-1],
        json.dumps(json.dumps(text))[3:-3],
        "".join(json.dumps(c)[1:-1] if ord(c) > 0xFFFF else f"\\u{ord(c):04x}" for c in text),
        urllib.parse.quote(text, safe=""),
        urllib.parse.quote_plus(text),
        html.escape(text),
        repr(text)[1:-1],
    ]


class Scanner:
    """The pieces of secrets that must not appear, in every encoding.

    A piece is innocent when it also occurs in a value that may be shown (a username, a
    token's 8-character prefix) in any encoding, once or twice: the ``repr`` of a prefix that
    ends in ``\\`` reads exactly like the raw 9-character prefix of a token whose 9th
    character is ``\\``, and no reader of the text could tell them apart."""

    def __init__(self, innocent: Iterable[str]) -> None:
        self.forbidden: set[str] = set()
        self._innocent = [  # once or twice encoded: an error's repr holds reprs of excerpts
            twice for text in innocent for once in encodings(text) for twice in encodings(once)
        ]

    def add(self, secret: str, size: int) -> None:
        for start in range(len(secret) - size + 1):
            for piece in encodings(secret[start : start + size]):
                if not any(piece in text for text in self._innocent):
                    self.forbidden.add(piece)

    def leaks(self, texts: Iterable[str]) -> list[tuple[str, str]]:
        return [(piece, text) for text in texts for piece in self.forbidden if piece in text]


def error_texts(error: BaseException) -> list[str]:
    texts: list[str] = []
    seen: BaseException | None = error
    while seen is not None and len(texts) < 40:
        texts += [repr(seen), str(seen), *traceback.format_exception_only(seen)]
        for value in vars(seen).values() if hasattr(seen, "__dict__") else ():
            texts.append(repr(value))
        seen = seen.__cause__ or seen.__context__
    return texts


async def _start_error(session: TradovateSession) -> BaseException:
    try:
        async with session:
            pass
    except TradovateError as exc:
        return exc
    raise AssertionError("the session started")


async def _provoke(password: str, sec: str, token: str) -> tuple[list[BaseException], list[str]]:
    errors: list[BaseException] = []
    shown: list[str] = []
    user = SimUser(username="echo-user", password=password, sec=sec)
    async with SimulatedTradovate(users=[user]) as sim:
        config = sim.config(user)
        shown.append(repr(config))
        # 1. The login body echoed in an errorText, an HTML page, a plain-text 500.
        for style in ("error_text", "html", "plain"):
            sim.inject(LOGIN, Fault.echo(style))  # type: ignore[arg-type]
            errors.append(await _start_error(TradovateSession(config)))
        # 2. The bearer token echoed by a REST call and by a socket's authorize.
        now = dt.datetime.now(dt.UTC)
        planted = AccessToken(
            access_token=Secret(token),
            md_access_token=Secret(token[::-1]),
            expiration_time=now + dt.timedelta(minutes=90),
            user_id=user.user_id,
            name=user.username,
            issued_at=now,
        )
        store = MemoryTokenStore()
        await store.save(config.token_key, planted)
        async with TradovateSession(config, store=store, use_api_hosts=False) as session:
            for style in ("error_text", "html", "plain"):
                # Often enough to outlast the read retries (5xx answers are retried).
                sim.inject("account/list", Fault.echo(style), times=10)  # type: ignore[arg-type]
                try:
                    await session.get("account/list")
                except TradovateError as exc:
                    errors.append(exc)
            sim.inject("authorize", Fault.echo("plain"), times=50)
            try:
                async with session.websocket("trading", **FAST):
                    pass
            except TradovateError as exc:
                errors.append(exc)
            shown += [repr(session), repr(store), repr(session.token)]
    return errors, shown


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(password=_secrets(8), sec=_secrets(12), token=_secrets(24, printable_ascii=True))
# Found by Hypothesis: the prefix's repr ends in a backslash pair, as the raw 9-character
# prefix does; the test read that as a leak.
@example(password="pw" * 6, sec="sec" * 5, token="0\"0>0+0\\\\%0<0/0'0&" + "0" * 21)
def test_echoed_secrets_never_survive(
    debug_logs: RecordCollector, password: str, sec: str, token: str
) -> None:
    debug_logs.records.clear()
    debug_logs.texts.clear()
    password = password[:60]
    errors, shown = anyio.run(_provoke, password, sec, token)
    assert len(errors) == 7
    # The tokens' 8-character prefixes may be shown: a password piece equal to one is no leak.
    innocent = ["echo-user", "tradovate-async-sim", "sim-device-0001", "you sent"]
    scanner = Scanner([*innocent, token[:8], token[::-1][:8]])
    scanner.add(password, 8)
    scanner.add(sec, 8)
    scanner.add(token, 9)
    scanner.add(token[::-1], 9)
    texts = [t for e in errors for t in error_texts(e)] + shown
    texts += [
        text
        for record, text in zip(debug_logs.records, debug_logs.texts, strict=True)
        if record.name.split(".")[0] in SCANNED
        and not record.name.startswith("tradovate_async.sim")
    ]
    assert scanner.leaks(texts) == []


def test_echoed_secrets_never_reach_cli_output(tmp_path: Path) -> None:
    """``tradovate-async token --verbose`` against a simulator that echoes the login body."""
    password, sec = 'pw"\\ é%+&<x' + "\U0001f600" + "q", 'sec"\\/<>%2B+ tail'
    user = SimUser(username="echo-user", password=password, sec=sec)

    async def run() -> list[str]:
        outputs = []
        async with SimulatedTradovate(users=[user]) as sim:
            env = {
                **os.environ,
                "TRADOVATE_USERNAME": user.username,
                "TRADOVATE_PASSWORD": password,
                "TRADOVATE_APP_ID": user.app_id,
                "TRADOVATE_SEC": sec,
                "TRADOVATE_DEVICE_ID": "dev-1",
                "TRADOVATE_API_URL": sim.api_url,
            }
            for style in ("error_text", "html", "plain"):
                sim.inject(LOGIN, Fault.echo(style))  # type: ignore[arg-type]
                result = await anyio.to_thread.run_sync(  # forked: see tests/forked.py
                    lambda: run_module(
                        "tradovate_async",
                        ["token", "--no-store", "--verbose"],
                        env=env,
                        cwd=tmp_path,
                        text=False,
                    )
                )
                assert result.returncode != 0
                outputs.append(result.stdout.decode() + result.stderr.decode())
        return outputs

    outputs = anyio.run(run)
    assert any("you sent" in out for out in outputs)  # the echo did reach the client
    scanner = Scanner(["echo-user", "tradovate-async-sim", "you sent"])
    scanner.add(password, 8)
    scanner.add(sec, 8)
    assert scanner.leaks(outputs) == []
