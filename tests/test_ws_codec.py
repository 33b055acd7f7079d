"""The sans-I/O WebSocket core: frames, requests, decisions. No sockets, no clocks."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradovate_async._errors import ProtocolError
from tradovate_async._ws_codec import (
    AuthOutcome,
    CloseFrame,
    Event,
    HeartbeatFrame,
    MessagesFrame,
    OpenFrame,
    Penalty,
    ReconnectBackoff,
    Request,
    Response,
    decode_frame,
    decode_plain_events,
    decode_request,
    encode_authorize,
    encode_frame,
    encode_json_auth,
    encode_request,
    error_text,
    interpret_auth_response,
    is_read_only,
    normalize_endpoint,
    penalty_of,
)

# 200 examples per property: the decoder's robustness is fuzzed at 1,000 cases per target in
# tests/reliability/test_fuzz.py (mutated real frames); these properties check the contracts.
MANY = settings(max_examples=200, deadline=None)

# -- decoding ------------------------------------------------------------------------------


def test_open_and_heartbeat_frames() -> None:
    assert decode_frame("o") == OpenFrame()
    assert decode_frame("h") == HeartbeatFrame()
    assert decode_frame(b"h") == HeartbeatFrame()


def test_messages_frame_mixes_responses_and_events_in_order() -> None:
    text = (
        'a[{"s":200,"i":3,"d":{"ok":true}},{"e":"md","d":{"quotes":[]}},'
        '{"s":404,"i":4,"d":"Not found"},{"e":"props","d":{"entityType":"order"}}]'
    )
    frame = decode_frame(text)
    assert isinstance(frame, MessagesFrame)
    assert frame.items == (
        Response(3, 200, {"ok": True}),
        Event("md", {"quotes": []}),
        Response(4, 404, "Not found"),
        Event("props", {"entityType": "order"}),
    )
    first, _, third, _ = frame.items
    assert isinstance(first, Response) and isinstance(third, Response)
    assert first.ok and not third.ok


def test_response_without_data_and_empty_array() -> None:
    assert decode_frame('a[{"s":200,"i":0}]') == MessagesFrame((Response(0, 200, None),))
    assert decode_frame("a[]") == MessagesFrame(())
    assert decode_frame("a[] \n") == MessagesFrame(())


def test_clock_event_data_is_parsed_again() -> None:
    frame = decode_frame('a[{"e":"clock","d":"{\\"t\\":\\"2024-01-02T00:00:00Z\\",\\"s\\":100}"}]')
    assert frame == MessagesFrame((Event("clock", {"t": "2024-01-02T00:00:00Z", "s": 100}),))


def test_close_frame() -> None:
    assert decode_frame('c[3000,"Go away!"]') == CloseFrame(3000, "Go away!")


def test_shutdown_event() -> None:
    frame = decode_frame('a[{"e":"shutdown","d":{"reasonCode":"ConnectionQuotaReached"}}]')
    assert frame == MessagesFrame((Event("shutdown", {"reasonCode": "ConnectionQuotaReached"}),))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "x",
        "oo",
        "hh",
        "o ",
        "a",
        "a[",
        "a{}",
        "a[1]",
        "a[null]",
        "a[{}]",
        'a[{"e":1}]',
        'a[{"i":"1","s":200}]',
        'a[{"i":true,"s":200}]',
        'a[{"i":1,"s":2.5}]',
        'a[{"i":1}]',
        "a[]x",
        "a[][]",
        'a[{"e":"clock","d":"{oops"}]',
        "c",
        "c[1]",
        'c["x","y"]',
        "c[1,2]",
        'c[1,"a",3]',
        "a" + "[" * 100_000,
        b"\xff\xfe",
        "A[]",
    ],
)
def test_malformed_frames_raise_protocol_error(text: str | bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_frame(text)


def test_non_text_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        decode_frame(42)  # type: ignore[arg-type]


@MANY
@given(st.text())
def test_any_text_decodes_or_raises_protocol_error(text: str) -> None:
    try:
        decode_frame(text)
    except ProtocolError:
        pass


@MANY
@given(st.binary())
def test_any_bytes_decode_or_raise_protocol_error(data: bytes) -> None:
    try:
        decode_frame(data)
    except ProtocolError:
        pass


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.floats(0, 1)


@MANY
@given(st.sampled_from("aocx"), json_values)
def test_frame_letter_plus_any_json_decodes_or_raises_protocol_error(
    letter: str, value: Any
) -> None:
    try:
        decode_frame(letter + json.dumps(value))
    except ProtocolError:
        pass


@MANY
@given(st.lists(st.dictionaries(st.sampled_from(["e", "d", "i", "s", "x"]), scalars), max_size=4))
def test_message_shaped_garbage_decodes_or_raises_protocol_error(items: list[Any]) -> None:
    try:
        decode_frame("a" + json.dumps(items))
    except ProtocolError:
        pass


messages = st.one_of(
    st.builds(
        Response,
        st.integers(min_value=0, max_value=2**53),
        st.integers(min_value=100, max_value=599),
        json_values.filter(lambda v: v is not None),
    ),
    st.builds(Response, st.integers(min_value=0), st.integers(100, 599), st.none()),
    st.builds(
        Event, st.sampled_from(["props", "md", "chart", "shutdown", "clock", "other"]), json_values
    ),
)
frames = st.one_of(
    st.just(OpenFrame()),
    st.just(HeartbeatFrame()),
    st.builds(CloseFrame, st.integers(min_value=0, max_value=4999), st.text()),
    st.builds(MessagesFrame, st.lists(messages, max_size=6).map(tuple)),
)


@MANY
@given(frames)
def test_encode_decode_round_trip(frame: Any) -> None:
    assert decode_frame(encode_frame(frame)) == frame


# -- requests ------------------------------------------------------------------------------


def test_encode_request_keeps_empty_fields() -> None:
    assert encode_request("executionReport/list", 4) == "executionReport/list\n4\n\n"
    assert encode_request("/v1/account/list", 5) == "account/list\n5\n\n"
    assert encode_request("/account/list", 6) == "account/list\n6\n\n"


def test_encode_request_query_and_compact_body() -> None:
    text = encode_request(
        "contract/rollcontract", 33, None, {"name": "YMZ6", "forward": True, "ifExpired": True}
    )
    assert text == 'contract/rollcontract\n33\n\n{"name":"YMZ6","forward":true,"ifExpired":true}'
    # The documentation writes list parameters comma-separated: ``masterids=814,799``.
    assert encode_request("tradingPermission/ldeps", 8, {"masterids": [1, 2]}) == (
        "tradingPermission/ldeps\n8\nmasterids=1,2\n"
    )
    assert encode_request("x/y", 1, {"flag": True, "t": "a b"}) == "x/y\n1\nflag=true&t=a+b\n"
    assert encode_request("x/y", 1, "?a=1&b=2") == "x/y\n1\na=1&b=2\n"
    assert encode_request("x/y", 1, None, '{"raw":1}') == 'x/y\n1\n\n{"raw":1}'


@pytest.mark.parametrize("endpoint", ["", "/", "a\nb", "a/b\r"])
def test_encode_request_rejects_bad_endpoints(endpoint: str) -> None:
    with pytest.raises(ValueError):
        encode_request(endpoint, 1)


def test_encode_request_rejects_newline_in_query() -> None:
    with pytest.raises(ValueError):
        encode_request("a/b", 1, "x=1\ny=2")


def test_authorize_frames() -> None:
    assert encode_authorize(0, "tok.en-123") == "authorize\n0\n\ntok.en-123"
    assert json.loads(encode_json_auth("tok")) == {"request": "auth", "accessToken": "tok"}
    assert " " not in encode_json_auth("tok")


def test_decode_request_tolerates_missing_trailing_fields() -> None:
    assert decode_request("tradingPermission/ldeps\n8\nmasterids=1") == Request(
        "tradingPermission/ldeps", 8, "masterids=1", ""
    )
    with pytest.raises(ProtocolError):
        decode_request("no-id")
    with pytest.raises(ProtocolError):
        decode_request("a/b\nx\n\n")


# "v1/" in any case is the API version prefix, which normalize_endpoint strips (see
# test_normalize_endpoint), not an entity: "V1/a" is sent as "a".
endpoints = st.from_regex(r"[a-zA-Z][a-zA-Z0-9]{0,12}/[a-zA-Z]{1,16}", fullmatch=True).filter(
    lambda endpoint: not endpoint.lower().startswith("v1/")
)


@MANY
@given(
    endpoints,
    st.integers(min_value=0, max_value=2**31),
    st.dictionaries(st.text(min_size=1), st.text(), max_size=3),
    json_values,
)
def test_request_round_trip(endpoint: str, rid: int, query: dict[str, str], body: Any) -> None:
    request = decode_request(encode_request(endpoint, rid, query, body))
    assert request.endpoint == endpoint
    assert request.id == rid
    if body is None:
        assert request.body == ""
    elif isinstance(body, str):
        assert request.body == body  # strings travel verbatim (pre-serialised JSON)
    else:
        assert json.loads(request.body) == body


def test_normalize_endpoint() -> None:
    assert normalize_endpoint("/v1/md/subscribeQuote") == "md/subscribeQuote"
    assert normalize_endpoint("V1/auth/me") == "auth/me"


# -- decisions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "rid", "expected_id", "outcome"),
    [
        (200, 1, 1, AuthOutcome.ACCEPTED),
        (200, 7, None, AuthOutcome.ACCEPTED),
        (200, 2, 1, None),
        (401, 1, 1, AuthOutcome.REJECTED),
        (403, 0, None, AuthOutcome.REJECTED),
        (429, 1, 1, AuthOutcome.RATE_LIMITED),
        (500, 1, 1, AuthOutcome.FAILED),
    ],
)
def test_interpret_auth_response(
    status: int, rid: int, expected_id: int | None, outcome: AuthOutcome | None
) -> None:
    assert interpret_auth_response(Response(rid, status, None), expected_id) is outcome


def test_error_text() -> None:
    assert error_text('"Not found: quote/subscribe"') == "Not found: quote/subscribe"
    assert error_text("Access is denied") == "Access is denied"
    assert error_text(None) is None
    assert error_text({"errorText": "nope"}) == "nope"
    assert error_text([1, 2]) == "[1,2]"
    assert error_text('"broken') == '"broken'


def test_penalty_of() -> None:
    assert penalty_of({"p-ticket": "T", "p-time": 3}) == Penalty("T", 3.0, False)
    assert penalty_of({"p-ticket": "T", "p-time": 3, "p-captcha": True}) == Penalty("T", 3.0, True)
    assert penalty_of({"p-captcha": "true"}) == Penalty("", 0.0, True)
    assert penalty_of({"p-ticket": "T"}) == Penalty("T", 0.0, False)
    assert penalty_of({"p-ticket": "T", "p-time": True}) == Penalty("T", 0.0, False)
    assert penalty_of({"ok": True}) is None
    assert penalty_of([{"p-ticket": "T"}]) is None
    assert penalty_of(None) is None


@pytest.mark.parametrize(
    ("endpoint", "read_only"),
    [
        ("account/list", True),
        ("/v1/contract/find", True),
        ("position/deps", True),
        ("order/ldeps", True),
        ("contract/suggest", True),
        ("auth/me", True),
        ("user/syncRequest", True),
        ("md/subscribeQuote", True),
        ("order/placeorder", False),
        ("order/cancelorder", False),
        ("orderStrategy/startorderstrategy", False),
        ("replay/initializeClock", False),
        ("account/list/extra/placeorder", False),
    ],
)
def test_is_read_only(endpoint: str, read_only: bool) -> None:
    assert is_read_only(endpoint) is read_only


# -- backoff -------------------------------------------------------------------------------


def test_backoff_first_attempt_is_nearly_immediate_then_exponential() -> None:
    backoff = ReconnectBackoff(initial=0.1, maximum=30.0, first_jitter=0.005, rng=random.Random(1))
    ceilings = [backoff.ceiling(n) for n in range(12)]
    assert ceilings[:5] == [0.005, 0.1, 0.2, 0.4, 0.8]
    assert ceilings[-1] == 30.0
    delays = [backoff.next_delay() for _ in range(12)]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert backoff.attempt == 12


def test_backoff_resets_only_after_a_stable_connection() -> None:
    backoff = ReconnectBackoff(stable_after=5.0, rng=random.Random(2))
    for _ in range(4):
        backoff.next_delay()
    backoff.connected(100.0)
    backoff.disconnected(101.0)  # up 1 s: not stable
    assert backoff.attempt == 4
    backoff.next_delay()
    backoff.connected(200.0)
    backoff.disconnected(205.0)  # up 5 s: stable
    assert backoff.attempt == 0
    assert backoff.next_delay() <= backoff.first_jitter


def test_backoff_waits_longer_after_a_quota_shutdown() -> None:
    backoff = ReconnectBackoff(quota_delay=60.0, rng=random.Random(3))
    backoff.connected(0.0)
    backoff.disconnected(100.0, quota=True)
    delay = backoff.next_delay()
    assert 60.0 <= delay <= 75.0
    assert backoff.next_delay() <= backoff.ceiling(1)  # back to the normal schedule


def test_backoff_is_deterministic_with_a_seed() -> None:
    def run(seed: int) -> list[float]:
        backoff = ReconnectBackoff(rng=random.Random(seed))
        return [backoff.next_delay() for _ in range(10)]

    assert run(7) == run(7)
    assert run(7) != run(8)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 0},
        {"initial": 2, "maximum": 1},
        {"factor": 0.5},
        {"first_jitter": -1},
        {"stable_after": -1},
        {"quota_delay": -1},
    ],
)
def test_backoff_validates(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ReconnectBackoff(**kwargs)


@MANY
@given(
    st.lists(
        st.tuples(st.sampled_from(["delay", "up", "down", "quota"]), st.floats(0, 100)),
        max_size=40,
    )
)
def test_backoff_delays_stay_within_bounds(script: list[tuple[str, float]]) -> None:
    backoff = ReconnectBackoff(initial=0.1, maximum=30.0, quota_delay=60.0, rng=random.Random(0))
    now = 0.0
    quota = False
    for action, step in script:
        now += step
        if action == "delay":
            delay = backoff.next_delay()
            upper = 75.0 if quota else 30.0
            assert 0.0 <= delay <= upper
            if quota:
                assert delay >= 60.0
            quota = False
        elif action == "up":
            backoff.connected(now)
        else:
            backoff.disconnected(now, quota=action == "quota")
            quota = quota or action == "quota"


def test_an_event_is_immutable_compares_and_matches_by_kind_and_data() -> None:
    [event] = decode_frame(b'a[{"e":"props","d":{"entityType":"order","entity":{"id":1}}}]').items
    assert type(event) is Event
    assert event == Event("props", {"entityType": "order", "entity": {"id": 1}})
    assert event != Event("md", {"entityType": "order", "entity": {"id": 1}})
    assert Event("disconnected") == Event("disconnected", None)
    assert repr(event) == "Event(kind='props', data={'entityType': 'order', 'entity': {'id': 1}})"
    with pytest.raises(AttributeError):
        event.kind = "md"  # type: ignore[misc]
    match event:
        case Event("props", {"entity": {"id": 1}}):
            pass
        case _:  # pragma: no cover
            pytest.fail("an event matches by position")


@pytest.mark.parametrize(
    "payload", [b'{"v":1e999}', b'{"v":"' + bytes([0xFF]) + b'"}'], ids=["huge-number", "not-utf8"]
)
def test_an_event_whose_data_is_not_json_is_left_out_and_the_rest_of_its_frame_kept(
    payload: bytes,
) -> None:
    message = b'a[{"e":"md","d":{"v":1}},{"e":"md","d":' + payload + b'},{"s":200,"i":4}]'
    assert decode_plain_events(message) is None
    frame = decode_frame(message)
    assert isinstance(frame, MessagesFrame)
    assert frame.items == (Event("md", {"v": 1}), Response(4, 200))
    [why] = frame.dropped
    assert why.startswith("md event: data is not valid JSON")


def test_plain_events_are_decoded_in_one_pass_and_anything_else_is_left_to_decode_frame() -> None:
    quotes = b'a[{"e":"md","d":{"quotes":[]}},{"e":"chart","d":{"charts":[]}},{"e":"props"}]'
    events = decode_plain_events(quotes)
    assert events == [
        Event("md", {"quotes": []}),
        Event("chart", {"charts": []}),
        Event("props", None),
    ]
    frame = decode_frame(quotes)
    assert isinstance(frame, MessagesFrame) and list(frame.items) == events
    for other in (
        b'a[{"e":"md","d":{}},{"s":200,"i":1}]',  # an answer
        b'a[{"e":"clock","d":"{\\"t\\":1}"}]',  # data inside a string
        b'a[{"e":"shutdown","d":{"reason":"x"}}]',  # the socket acts on it
        b"h",
        b"o",
        b"",
        'a[{"e":"md","d":{}}]',  # text, not the bytes the transport gives
        b'a[{"e":"md","d":{"v":1e999}}]',
        b'a[{"e":5}]',
        b'a[{"d":{"quotes":[]},"e":"md"}]',  # "e" not first: the item-by-item path
    ):
        assert decode_plain_events(other) is None, other
    assert decode_frame(b'a[{"d":{"quotes":[]},"e":"md"}]') == MessagesFrame(
        (Event("md", {"quotes": []}),)
    )
