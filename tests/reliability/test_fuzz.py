"""Whatever a server (or a damaged token store) sends, the library answers with a typed error.

Hypothesis generates bodies, records and frames for every parser that sees bytes from outside:
the token endpoint (``interpret_token_response``), every REST answer (``interpret_api_response``),
token records as the stores read them (``AccessToken.from_record``/``from_response``, the file
store's and the Redis store's record parsers, ``FileTokenStore.load`` on real files), and the
WebSocket codec (``decode_frame`` on byte-level mutations of valid frames, plus the decisions
taken on what it decodes). "Typed" means a :class:`~tradovate_async.TradovateError`, or for the
model parsers the documented ``ValueError``/``TypeError``/``KeyError``; anything else fails.

Bugs this fuzzing found are pinned at the end: fixed ones as regression tests, open ones as
``test_bug_*`` (``xfail(strict=True)``). The random strategies stay clear of open bugs' triggers
(here: integers beyond float's range, see ``numbers``) so that each bug is reported once and the
random tests keep guarding everything else. When a bug is fixed its ``test_bug_*`` turns red:
remove the xfail and widen the strategy.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradovate_async import AccessToken, InvalidResponseError, PenaltyLimitError, TradovateError
from tradovate_async._auth_core import Scrubber, interpret_token_response
from tradovate_async._file_store import FileTokenStore
from tradovate_async._file_store import _parse as parse_file_record
from tradovate_async._penalty import Penalty, PenaltyPolicy
from tradovate_async._redis_store import _parse as parse_redis_record
from tradovate_async._responses import interpret_api_response
from tradovate_async._ws_codec import (
    AuthOutcome,
    CloseFrame,
    Event,
    HeartbeatFrame,
    MessagesFrame,
    OpenFrame,
    ProtocolError,
    Response,
    decode_frame,
    encode_frame,
    error_text,
    interpret_auth_response,
    penalty_of,
)

MANY = settings(max_examples=1000, deadline=None)
NOW = dt.datetime(2025, 6, 15, 12, 0, tzinfo=dt.UTC)
PASSWORD = "pw-Fuzz-Secret-0123456789"
SEC = "sec-Fuzz-Secret-abcdefghij"
SCRUB = Scrubber([PASSWORD, SEC])

# -- strategies ----------------------------------------------------------------------------
#
# Random bytes rarely get past the first check of a parser, so most examples start from a
# valid answer, record or frame and break one to three of its fields, or mutate its bytes.

LIMIT = 2**63
# Integers stay within float's range: beyond it p-time hits test_bug_huge_integer_p_time.
special_floats = st.sampled_from(
    [math.nan, math.inf, -math.inf, -0.0, 0.0, 1e308, -1e308, 5e-324, 2.0**53 + 1]
)
numbers = st.integers(-LIMIT, LIMIT) | st.floats() | special_floats
scalars = st.none() | st.booleans() | numbers | st.text(max_size=30)


def json_trees(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
        ),
        max_leaves=10,
    )


json_values = json_trees(scalars)
finite_json_values = json_trees(  # what encode_frame (allow_nan=False) can write
    st.none()
    | st.booleans()
    | st.integers(-LIMIT, LIMIT)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)

offsets = (
    st.none()
    | st.just(dt.UTC)
    | st.builds(
        dt.timezone, st.timedeltas(-dt.timedelta(hours=23, minutes=59), dt.timedelta(hours=23))
    )
)
moments = st.one_of(
    st.datetimes(timezones=offsets),  # the whole range of datetime, years 1 to 9999
    # the first and last day of that range, where an offset leaves it once converted to UTC
    st.builds(
        lambda edge, minutes: edge.replace(tzinfo=dt.timezone(dt.timedelta(minutes=minutes))),
        st.sampled_from([dt.datetime.min, dt.datetime.max]),
        st.integers(-23 * 60, 23 * 60),
    ),
)


@st.composite
def timestamps(draw: st.DrawFn) -> Any:
    """ISO-8601 times as the server writes them, and ways they go wrong."""
    text = draw(moments).isoformat()
    forms = [text, text.replace("+00:00", "Z"), text + "Z", text.replace("T", " ")]
    return draw(
        st.sampled_from(forms)
        | st.sampled_from(forms)
        | st.integers(0, len(text)).map(lambda n: text[:n])  # truncated
        | scalars
    )


valid_token_answers = st.fixed_dictionaries(
    {
        "accessToken": st.text(min_size=1, max_size=60),
        "mdAccessToken": st.text(min_size=1, max_size=60),
        "expirationTime": st.datetimes(
            min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1)
        ).map(lambda d: d.isoformat() + "Z"),
        "userId": st.integers(0, 2**31),
        "name": st.text(max_size=20),
        "userStatus": st.just("Active"),
        "hasLive": st.booleans(),
    }
)
token_faults = {  # the fields a parser decides on come first (sampled_from favours them)
    "expirationTime": timestamps(),
    "accessToken": st.text(max_size=60) | scalars,
    "mdAccessToken": st.text(max_size=60) | scalars,
    "userId": st.integers() | scalars,  # any size: a userId is not converted to float
    "name": scalars,
    "userStatus": scalars,
    "hasLive": scalars,
    "issuedAt": timestamps(),
    "errorText": st.sampled_from(["", "Incorrect username or password.", PASSWORD]) | scalars,
}
valid_penalties = st.fixed_dictionaries(
    {"p-ticket": st.text(min_size=1, max_size=40), "p-time": st.floats(0, 120)}
)
penalty_faults = {
    "p-ticket": st.text(max_size=40) | scalars,
    "p-time": special_floats | numbers | scalars,
    "p-captcha": st.sampled_from([True, False, "true", "True", 1, 0, None]) | scalars,
}


ONE_IN_FIVE = st.integers(0, 4)


def broken(
    valid: st.SearchStrategy[dict[str, Any]], faults: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[dict[str, Any]]:
    """A valid dict with one to three fields replaced by a hostile value, or removed."""

    keys = st.lists(st.sampled_from(list(faults)), max_size=3)

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        result = dict(draw(valid))
        for key in draw(keys):
            if draw(ONE_IN_FIVE) == 0:
                result.pop(key, None)
            else:
                result[key] = draw(faults[key])
        return result

    return build()


token_answers = broken(valid_token_answers, token_faults)
penalty_answers = broken(valid_penalties, penalty_faults)
api_answers = st.fixed_dictionaries(
    {},
    optional={
        "errorText": st.sampled_from(["", "Access is denied", PASSWORD]) | scalars,
        "failureReason": st.sampled_from(["Success", "UnknownReason", ""]) | scalars,
        "failureText": st.sampled_from(["", "too late", PASSWORD]) | scalars,
        "violations": st.lists(json_values, max_size=3) | scalars,
        "orderId": scalars,
        "id": scalars,
    },
)


def encoded(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return values.map(lambda v: json.dumps(v).encode())


# The strategies a mutation draws from, built once rather than at every draw.
MUTATION_COUNT = st.integers(1, 4)
MUTATIONS = st.sampled_from(["flip", "delete", "insert", "duplicate", "truncate", "swap"])
BIT = st.integers(0, 7)
DELETED = st.integers(1, 8)
DUPLICATED = st.integers(1, 16)
INSERTED = st.lists(
    st.sampled_from(list(b'[]{}",:0123456789eE.-+ \\\nacho')), min_size=1, max_size=6
) | st.binary(min_size=1, max_size=6).map(list)


def mutate(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` with 1 to 4 byte-level mutations: flip, delete, insert, duplicate, truncate,
    swap. Insertions favour bytes that mean something to JSON and to the framing."""
    data = bytearray(original)
    for _ in range(draw(MUTATION_COUNT)):
        op = draw(MUTATIONS)
        size = len(data)
        at = draw(st.integers(0, size))
        if op == "flip" and size:
            data[min(at, size - 1)] ^= 1 << draw(BIT)
        elif op == "delete":
            del data[at : at + draw(DELETED)]
        elif op == "insert":
            data[at:at] = bytes(draw(INSERTED))
        elif op == "duplicate":
            data[at:at] = data[at : at + draw(DUPLICATED)]
        elif op == "truncate":
            del data[at:]
        elif op == "swap" and size > 1:
            other = draw(st.integers(0, size - 1))
            at = min(at, size - 1)
            data[at], data[other] = data[other], data[at]
    return bytes(data)


@st.composite
def mutated(draw: st.DrawFn, originals: st.SearchStrategy[bytes]) -> bytes:
    """A valid byte string (drawn from ``originals``) with :func:`mutate`'s mutations."""
    return mutate(draw, draw(originals))


@st.composite
def original_and_mutated(
    draw: st.DrawFn, originals: st.SearchStrategy[bytes]
) -> tuple[bytes, bytes]:
    """A byte string from ``originals`` and a :func:`mutate`d copy of it."""
    original = draw(originals)
    return original, mutate(draw, original)


nested = st.tuples(st.integers(1, 3000), st.booleans()).map(
    lambda t: b"[" * t[0] + (b"]" * t[0] if t[1] else b"")
)


def bodies(*shapes: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Mostly the given JSON shapes (valid or broken) and byte mutations of them; also raw
    bytes, HTML, arbitrary or deeply nested JSON, and secrets echoed inside long text."""
    shaped = st.one_of(*(encoded(s) for s in shapes))
    return st.one_of(
        shaped,
        shaped,
        mutated(shaped),
        st.binary(max_size=300),
        nested,
        st.just(b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
        encoded(json_values),
        st.tuples(st.text(max_size=150), st.sampled_from([PASSWORD, SEC]), st.text()).map(
            lambda t: "".join(t).encode()
        ),
    )


statuses = st.sampled_from([200] * 8 + [201, 204, 400, 401, 403, 404, 408, 423, 429, 500, 502])
statuses |= st.integers(100, 599)


def assert_scrubbed(error: BaseException) -> None:
    for text in (str(error), repr(error), repr(getattr(error, "body_excerpt", None))):
        assert PASSWORD not in text and SEC not in text


# -- the token endpoint --------------------------------------------------------------------


token_endpoint_answers = st.one_of(
    st.tuples(statuses, bodies(token_answers, penalty_answers)),
    st.tuples(st.just(200), encoded(token_answers)),  # straight to the token parser
    st.tuples(st.just(200), encoded(penalty_answers)),  # straight to the penalty checks
)


@MANY
@given(st.sampled_from(["login", "renew"]), token_endpoint_answers)
def test_token_endpoint_answers_are_typed(call: Any, answer: tuple[int, bytes]) -> None:
    status, body = answer
    try:
        outcome = interpret_token_response(call, status, body, issued_at=NOW, scrub=SCRUB)
    except TradovateError as exc:
        assert_scrubbed(exc)
        return
    assert status == 200
    if isinstance(outcome, Penalty):
        assert outcome.ticket and outcome.wait_seconds >= 0  # NaN would fail this too
    else:
        assert isinstance(outcome, AccessToken) and outcome.access_token
        assert outcome.expiration_time.tzinfo is not None and outcome.issued_at == NOW


# -- every REST answer ---------------------------------------------------------------------


@MANY
@given(
    st.sampled_from(["GET", "POST"]),
    st.sampled_from(["account/list", "order/placeorder", "auth/me"]),
    statuses,
    bodies(api_answers),
)
def test_api_answers_are_typed(method: str, path: str, status: int, body: bytes) -> None:
    try:
        data = interpret_api_response(method, path, status, body, SCRUB)
    except TradovateError as exc:
        assert_scrubbed(exc)
        return
    assert 200 <= status < 300
    if body.strip():
        assert json.dumps(data) == json.dumps(json.loads(body))  # NaN != NaN


# -- token records, as the stores read them -------------------------------------------------


@MANY
@given(token_answers.map(lambda a: {**a, "issuedAt": a.get("issuedAt", NOW.isoformat())}))
def test_token_records_parse_or_raise_the_documented_errors(record: dict[str, Any]) -> None:
    for parse in (
        AccessToken.from_record,
        lambda r: AccessToken.from_response(r, issued_at=NOW),
    ):
        try:
            token = parse(record)
        except (ValueError, TypeError, KeyError):
            continue
        assert isinstance(token, AccessToken) and token.access_token
        assert token.to_record()["accessToken"] == record["accessToken"]
    # What the stores do with them: a token or None, never an exception.
    file_token = parse_file_record(record)
    redis_token = parse_redis_record(_redis_document(record))
    assert file_token == redis_token
    assert file_token is None or isinstance(file_token, AccessToken)


def _envelope(record: Any) -> bytes:
    return json.dumps(
        {"format": "tradovate-async/tokens", "version": 1, "tokens": {"key": record}}, indent=1
    ).encode()


def _valid_record(answer: dict[str, Any]) -> dict[str, Any]:
    return AccessToken.from_response(answer, issued_at=NOW).to_record()


valid_files = valid_token_answers.map(_valid_record).map(_envelope)
file_contents = st.one_of(
    st.binary(max_size=300),
    nested,
    valid_files,
    mutated(valid_files),
    token_answers.map(_envelope),
    encoded(json_values),
    encoded(
        st.fixed_dictionaries(
            {"format": st.just("tradovate-async/tokens") | scalars},
            optional={
                "version": st.just(1) | scalars,
                "encryption": st.just("fernet") | scalars,
                "tokens": json_values,
            },
        )
    ),
)


@pytest.fixture(scope="module")
def token_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="tradovate-fuzz-") as name:
        yield Path(name)


@pytest.fixture(scope="module")
def event_loop_runner() -> Iterator[asyncio.Runner]:
    """One event loop for every example: a loop (and its worker thread) per example cost
    more than the load itself."""
    with asyncio.Runner() as runner:
        yield runner


@settings(MANY, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(file_contents)
def test_any_token_file_loads_as_a_token_or_none(
    token_dir: Path, event_loop_runner: asyncio.Runner, content: bytes
) -> None:
    path = token_dir / "tokens.json"
    path.write_bytes(content)
    token = event_loop_runner.run(FileTokenStore(path).load("key"))
    assert token is None or isinstance(token, AccessToken)


def _redis_document(record: Any) -> bytes:
    return json.dumps({"format": "tradovate-async/token", "version": 1, "token": record}).encode()


valid_redis_records = valid_token_answers.map(_valid_record).map(_redis_document)
redis_records = st.one_of(
    st.binary(max_size=300),
    nested,
    valid_redis_records,
    mutated(valid_redis_records),
    token_answers.map(_redis_document),
    encoded(json_values),
)


@MANY
@given(redis_records)
def test_any_redis_record_parses_as_a_token_or_none(raw: bytes) -> None:
    token = parse_redis_record(raw)
    assert token is None or isinstance(token, AccessToken)


# -- WebSocket frames: byte-level mutations of valid frames ---------------------------------

REAL_FRAMES = [
    "o",
    "h",
    'c[1000,"Normal closure"]',
    'c[1001,"Maintenance"]',
    'a[{"s":200,"i":1}]',
    'a[{"s":200,"i":2,"d":[{"id":70001,"name":"DEMO70001","accountType":"Customer",'
    '"active":true}]}]',
    'a[{"e":"md","d":{"quotes":[{"timestamp":"2025-06-15T12:00:00.000Z","contractId":1,'
    '"entries":{"Bid":{"price":6001.25,"size":12},"Offer":{"price":6001.5,"size":9}}}]}}]',
    'a[{"e":"props","d":{"entityType":"order","eventType":"Created","entity":{"id":1,'
    '"accountId":70001,"ordStatus":"Working"}}},{"s":200,"i":5,"d":{"orderId":1}}]',
    'a[{"e":"shutdown","d":{"reasonCode":"Maintenance","reason":"back soon"}}]',
    'a[{"e":"clock","d":"{\\"t\\":\\"2025-06-15T12:00:00.000Z\\",\\"s\\":1}"}]',
    'a[{"s":200,"i":7,"d":{"p-ticket":"abc","p-time":2,"p-captcha":false}}]',
    'a[{"s":404,"i":9,"d":"\\"Not found: quote/subscribe\\""}]',
    'a[{"s":401,"i":1,"d":"Access is denied"}]',
    'a[{"s":429,"i":3}]',
]
generated_frames = st.one_of(
    st.builds(CloseFrame, st.integers(0, 4999), st.text(max_size=20)),
    st.builds(
        MessagesFrame,
        st.lists(
            st.builds(Response, st.integers(0, LIMIT), st.integers(100, 599), finite_json_values)
            | st.builds(
                Event, st.sampled_from(["props", "md", "chart", "shutdown"]), finite_json_values
            ),
            max_size=4,
        ).map(tuple),
    ),
).map(encode_frame)
valid_frames = st.sampled_from(REAL_FRAMES) | generated_frames


@MANY
@given(original_and_mutated(valid_frames.map(str.encode)))
def test_mutated_frames_decode_or_raise_protocol_error(pair: tuple[bytes, bytes]) -> None:
    original, data = pair
    for wire in (data, data.decode("latin-1")):
        try:
            frame = decode_frame(wire)
        except ProtocolError:
            continue
        assert isinstance(frame, OpenFrame | HeartbeatFrame | MessagesFrame | CloseFrame)
        if data == original:
            assert frame == decode_frame(original if isinstance(wire, bytes) else wire)
        if isinstance(frame, MessagesFrame):
            for item in frame.items:  # what the socket decides on each decoded message
                assert isinstance(item, Response | Event)
                if isinstance(item, Response):
                    assert isinstance(interpret_auth_response(item, item.id), AuthOutcome)
                    penalty = penalty_of(item.data)
                    assert penalty is None or penalty.wait_seconds >= 0
                    text = error_text(item.data)
                    assert text is None or isinstance(text, str)


# -- regressions (bugs found by this fuzzing, fixed in e8627dc) and known bugs ------------------

DEEP = b"[" * 100_000
HUGE = "1" + "0" * 400  # an integer JSON number beyond float's range
BAD_EXPIRY = "0001-01-01T00:00:00+01:00"  # valid ISO-8601; in UTC it would be year 0


def _typed(call: Callable[[], object]) -> None:
    """``call`` returns, or raises a TradovateError: anything else fails the test."""
    try:
        call()
    except TradovateError:
        pass


def _load_file(content: bytes) -> AccessToken | None:
    with tempfile.TemporaryDirectory() as name:
        path = Path(name) / "tokens.json"
        path.write_bytes(content)
        return anyio.run(FileTokenStore(path).load, "key")


def _token_answer(**fields: Any) -> bytes:
    base = {"accessToken": "a" * 40, "expirationTime": "2025-06-15T13:30:00Z", "userId": 1}
    return json.dumps({**base, **fields}).encode()


@pytest.mark.parametrize(
    "site", ["token-endpoint", "from_record", "file-store-parse", "redis-store-parse"]
)
def test_out_of_range_timestamps_are_refused(site: str) -> None:
    record = _valid_record(json.loads(_token_answer()))
    record["expirationTime"] = BAD_EXPIRY
    if site == "token-endpoint":
        with pytest.raises(InvalidResponseError):
            interpret_token_response(
                "renew", 200, _token_answer(expirationTime=BAD_EXPIRY), issued_at=NOW, scrub=SCRUB
            )
    elif site == "from_record":
        with pytest.raises(ValueError):
            AccessToken.from_record(record)
    elif site == "file-store-parse":
        assert parse_file_record(record) is None
    else:
        assert parse_redis_record(_redis_document(record)) is None


@pytest.mark.parametrize("site", ["token-endpoint", "api-answer", "token-file", "redis-record"])
def test_deeply_nested_json_is_refused(site: str) -> None:
    if site == "token-endpoint":
        with pytest.raises(InvalidResponseError):
            interpret_token_response("login", 200, DEEP, issued_at=NOW, scrub=SCRUB)
    elif site == "api-answer":
        with pytest.raises(InvalidResponseError):
            interpret_api_response("GET", "account/list", 200, DEEP, SCRUB)
    elif site == "token-file":
        assert _load_file(DEEP) is None
    else:
        assert parse_redis_record(DEEP) is None


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "-1"])
def test_unusable_p_time_is_refused(value: str) -> None:
    body = ('{"p-ticket": "ticket-123", "p-time": ' + value + "}").encode()
    with pytest.raises(InvalidResponseError, match="p-time"):
        interpret_token_response("login", 200, body, issued_at=NOW, scrub=SCRUB)


@pytest.mark.parametrize("site", ["token-endpoint", "ws-penalty_of"])
def test_huge_integer_p_time_is_longer_than_any_allowed_wait(site: str) -> None:
    # Regression: float() of a 400-digit integer raised OverflowError.
    if site == "token-endpoint":
        body = ('{"p-ticket": "ticket-123", "p-time": ' + HUGE + "}").encode()
        penalty = interpret_token_response("login", 200, body, issued_at=NOW, scrub=SCRUB)
        assert isinstance(penalty, Penalty) and penalty.wait_seconds == math.inf
        with pytest.raises(PenaltyLimitError):
            PenaltyPolicy().wait_for(penalty, 0)
    else:
        frame = decode_frame('a[{"s":200,"i":1,"d":{"p-ticket":"t","p-time":' + HUGE + "}}]")
        assert isinstance(frame, MessagesFrame) and isinstance(frame.items[0], Response)
        ws_penalty = penalty_of(frame.items[0].data)
        assert ws_penalty is not None and ws_penalty.wait_seconds == math.inf


def test_secret_cut_by_the_excerpt_is_still_scrubbed() -> None:
    # Regression: excerpts were cut before secrets were scrubbed.
    body = ("x" * 185 + PASSWORD).encode()
    with pytest.raises(TradovateError) as info:
        interpret_token_response("login", 500, body, issued_at=NOW, scrub=SCRUB)
    assert PASSWORD[:4] not in str(info.value)
