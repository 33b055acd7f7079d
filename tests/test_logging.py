"""Redaction of tokens and secrets in log records."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode

from tradovate_async._logging import (
    DEFAULT_LOGGERS,
    RedactingFilter,
    RedactingLoggerAdapter,
    install_redaction,
    redact,
    redact_message,
)

TOKEN = "eyJhbGciOiJIUzI1NiJ9.abcdefghijklmnopqrstuvwxyz0123456789.SIGNATUREsignature_-xyz"
SECRET_TAIL = TOKEN[8:]


@pytest.mark.parametrize(
    "text",
    [
        f"authorize\n1\n\n{TOKEN}",
        repr(f"authorize\n12345\n\n{TOKEN}"),
        f'{{"request":"auth","accessToken":"{TOKEN}"}}',
        repr(f'{{"request":"auth","accessToken":"{TOKEN}"}}'),
        f"Authorization: Bearer {TOKEN}",
        f"(b'Authorization', b'Bearer {TOKEN}')",
        f"{{'accessToken': '{TOKEN}', 'mdAccessToken': '{TOKEN}'}}",
        f"GET /x?accessToken={TOKEN}&y=1",
        f"md_access_token={TOKEN}",
        f'\\"accessToken\\":\\"{TOKEN}\\"',
        f'{{"token":"{TOKEN}"}}',
    ],
)
def test_tokens_keep_at_most_an_eight_character_prefix(text: str) -> None:
    masked = redact(text)
    assert SECRET_TAIL[:6] not in masked
    assert TOKEN[-10:] not in masked
    assert "***" in masked


@pytest.mark.parametrize(
    "text",
    [
        '{"name":"bob","password":"hunter2","sec":"s3cr3t-api-key","cid":0}',
        "{'password': 'hunter2', 'sec': 's3cr3t-api-key'}",
        '{"password":"hun\\"ter2","client_secret":"s3cr3t-api-key"}',
        "password=hunter2&sec=s3cr3t-api-key",
        "Authorization: Basic aHVudGVyMjpzM2NyM3QtYXBpLWtleQ==",
        "(b'Authorization', b'Basic aHVudGVyMjpzM2NyM3QtYXBpLWtleQ==')",
    ],
)
def test_passwords_and_secrets_keep_nothing(text: str) -> None:
    masked = redact(text)
    for secret in ("hunter2", "ter2", "s3cr3t", "aHVudGVy"):
        assert secret not in masked, masked


def test_redaction_keeps_the_rest() -> None:
    text = '{"name":"bob","password":"x","cid":0}'
    assert redact(text) == '{"name":"bob","password":"***","cid":0}'
    assert redact("Authorization: Bearer abcdefghijklmnopqrstuvwxyz") == (
        "Authorization: Bearer abcdef***"
    )
    assert redact("authorize\n3\n\n" + TOKEN) == "authorize\n3\n\n" + TOKEN[:8] + "***"
    assert redact("nothing to see; account/list\n4\n\n") == "nothing to see; account/list\n4\n\n"


tokens = st.text(
    alphabet=st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."),
    min_size=24,
    max_size=300,
)


@settings(max_examples=1000, deadline=None)
@given(tokens, st.integers(min_value=0, max_value=10**9))
def test_no_token_tail_survives_in_any_frame_form(token: str, rid: int) -> None:
    forms = [
        f"authorize\n{rid}\n\n{token}",
        json.dumps({"request": "auth", "accessToken": token}),
        f"Authorization: Bearer {token}",
    ]
    for form in forms:
        for rendered in (form, repr(form), str(Frame(Opcode.TEXT, form.encode()))):
            masked = redact_message("> %s", (rendered,))
            assert token[8:] not in masked
            assert token[-12:] not in masked


def test_frame_arguments_are_redacted_from_the_whole_payload() -> None:
    frame = Frame(Opcode.TEXT, f"authorize\n7\n\n{TOKEN}".encode())
    # websockets elides the middle of long frames but shows the end: the token's tail.
    assert TOKEN[-20:] in str(frame)
    text = redact_message("> %s", (frame,))
    assert TOKEN[-20:] not in text and SECRET_TAIL not in text
    assert "redacted" in text
    harmless = Frame(Opcode.TEXT, b"account/list\n3\n\n")
    assert redact_message("> %s", (harmless,)) == f"> {harmless}"


def test_broken_log_calls_are_still_redacted() -> None:
    text = redact_message("%s %s", (f"password={TOKEN}",))
    assert SECRET_TAIL not in text


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("websockets.client", logging.DEBUG, __file__, 1, msg, args, None)


def test_filter_rewrites_only_records_with_secrets() -> None:
    flt = RedactingFilter()
    plain = _record("> %s", "account/list\n3\n\n")
    assert flt.filter(plain) is True
    assert plain.args == ("account/list\n3\n\n",)
    secret = _record("> %s: %s", "Authorization", f"Bearer {TOKEN}")
    assert flt.filter(secret) is True
    assert SECRET_TAIL not in secret.getMessage()
    assert secret.getMessage().startswith("> Authorization: Bearer ")
    mapping = _record("body %s", {"accessToken": TOKEN})  # a lone mapping becomes record.args
    flt.filter(mapping)
    assert SECRET_TAIL not in mapping.getMessage()


def test_filter_redacts_formatted_exception_text() -> None:
    record = _record("failed")
    record.exc_text = f"Traceback ...\nValueError: accessToken={TOKEN}"
    RedactingFilter().filter(record)
    assert SECRET_TAIL not in record.exc_text


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def collector() -> Iterator[tuple[logging.Logger, _Collect]]:
    log = logging.getLogger("tests.redaction.parent")
    handler = _Collect()
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        yield log, handler
    finally:
        log.removeHandler(handler)
        log.filters.clear()
        for name in ("tests.redaction.parent.child", "tests.redaction.parent.child.deep"):
            logging.getLogger(name).filters.clear()


def test_install_redaction_covers_existing_children(
    collector: tuple[logging.Logger, _Collect],
) -> None:
    parent, handler = collector
    child = logging.getLogger("tests.redaction.parent.child")
    deep = logging.getLogger("tests.redaction.parent.child.deep")
    first = install_redaction("tests.redaction.parent")
    second = install_redaction("tests.redaction.parent")
    assert first is second
    assert sum(isinstance(f, RedactingFilter) for f in parent.filters) == 1
    parent.debug("authorize\n1\n\n%s", TOKEN)
    child.debug("%s", {"accessToken": TOKEN})
    deep.info("Authorization: Bearer %s", TOKEN)
    assert len(handler.messages) == 3
    assert all(SECRET_TAIL not in m for m in handler.messages), handler.messages


def test_install_redaction_defaults_include_library_loggers() -> None:
    shared = install_redaction()
    try:
        for name in ("websockets.client", "httpx", "httpcore.http11", "tradovate_async"):
            assert shared in logging.getLogger(name).filters
    finally:
        for name in DEFAULT_LOGGERS:
            logging.getLogger(name).removeFilter(shared)


def test_adapter_redacts_before_the_record_exists(
    collector: tuple[logging.Logger, _Collect],
) -> None:
    parent, handler = collector
    adapter = RedactingLoggerAdapter(parent)
    outer = logging.LoggerAdapter(adapter, {"websocket": "conn"})  # what websockets does
    outer.debug("> %s", Frame(Opcode.TEXT, f"authorize\n1\n\n{TOKEN}".encode()))
    outer.debug("> %s: %s", "Authorization", f"Bearer {TOKEN}")
    parent.setLevel(logging.INFO)
    outer.debug("> %s", "not emitted")
    assert len(handler.messages) == 2
    assert all(SECRET_TAIL not in m and TOKEN[-20:] not in m for m in handler.messages)
