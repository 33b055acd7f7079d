"""Golden tests: every sample of the wire corpus through the codec and the interpreters.

Each sample is an answer or a frame the real server sends (recorded) or the documentation shows
(documented); ``expect`` says what the library must make of it. The error classes are compared
exactly: a socket answer must raise what the same answer raises over REST.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

import tradovate_async
from tradovate_async._auth_core import interpret_token_response
from tradovate_async._models import AccessToken, UserInfo
from tradovate_async._responses import Penalty, interpret_api_response, judge_answer, penalty_in
from tradovate_async._ws_codec import (
    CloseFrame,
    Event,
    HeartbeatFrame,
    MessagesFrame,
    OpenFrame,
    Response,
    decode_frame,
    encode_frame,
    error_text,
    interpret_auth_response,
)

from .corpus import (
    KINDS,
    PROVENANCES,
    SAMPLES,
    SAMPLES_DIR,
    Sample,
    json_shape,
    missing_fields,
    of_kind,
    shape_drift,
)

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def error_class(name: str) -> type[BaseException]:
    cls = getattr(tradovate_async, name)
    assert isinstance(cls, type) and issubclass(cls, BaseException)
    return cls


def check_outcome(outcome: Any, expect: dict[str, Any], body: Any) -> None:
    result = expect["result"]
    if result == "penalty":
        assert isinstance(outcome, Penalty)
        assert outcome.wait_seconds == expect["wait_seconds"]
        assert not outcome.captcha
    elif result == "data":
        assert not isinstance(outcome, Penalty)
        assert outcome == expect.get("data", body)
    else:  # pragma: no cover - a corpus error, caught by test_every_sample_is_well_formed
        raise AssertionError(f"unknown result {result!r}")


def check_error(error: BaseException, expect: dict[str, Any]) -> None:
    assert type(error) is error_class(expect["error"]), repr(error)
    for attr, value in expect.get("attrs", {}).items():
        assert getattr(error, attr) == value, attr


# -- the corpus itself ------------------------------------------------------------------------


def test_corpus_size_and_provenance() -> None:
    recorded = [s for s in SAMPLES if s.provenance == "recorded"]
    assert len(SAMPLES) >= 40
    assert len(recorded) >= 10
    assert {s.kind for s in SAMPLES} == KINDS


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.id)
def test_every_sample_is_well_formed(sample: Sample) -> None:
    assert (SAMPLES_DIR / f"{sample.id}.json").is_file()
    assert sample.kind in KINDS
    assert sample.provenance in PROVENANCES
    assert sample.source and any(k in sample.source for k in ("url", "repository"))
    assert sample.source.get("note") or sample.source.get("path")
    if sample.provenance == "recorded":
        assert "recorded" in sample.raw, "a recorded sample says when it was recorded"
    if sample.kind == "frame":
        assert isinstance(sample.raw["frame"], str)
    else:
        assert isinstance(sample.raw["status"], int)
        assert ("body" in sample.raw) != ("text" in sample.raw)
    assert sample.expect.get("result") in ("token", "penalty", "data", "error", None)


# -- token answers ----------------------------------------------------------------------------


def token_fields(token: AccessToken) -> dict[str, Any]:
    return {
        "user_id": token.user_id,
        "name": token.name,
        "user_status": token.user_status,
        "has_live": token.has_live,
        "has_market_data": token.has_market_data,
        "outdated_tac": token.outdated_tac,
        "hibp_hint": token.hibp_hint,
        "expiration_time": token.expiration_time.isoformat(),
        "password_expiration_time": (
            token.password_expiration_time.isoformat() if token.password_expiration_time else None
        ),
        "md_access_token": token.md_access_token is not None,
        "api_hosts": dict(token.api_hosts),
    }


@pytest.mark.parametrize("sample", of_kind("token"), ids=lambda s: s.id)
def test_token_answer(sample: Sample) -> None:
    expect = sample.expect
    call = sample.raw["call"]

    def run() -> AccessToken | Penalty:
        return interpret_token_response(
            call, sample.status, sample.body_bytes, issued_at=NOW, scrub=str
        )

    if expect["result"] == "error":
        with pytest.raises(tradovate_async.TradovateError) as info:
            run()
        check_error(info.value, expect)
        return
    outcome = run()
    if expect["result"] == "token":
        assert isinstance(outcome, AccessToken)
        fields = token_fields(outcome)
        for name, value in expect["fields"].items():
            assert fields[name] == value, name
        # What the token record keeps survives a round trip through a store.
        assert AccessToken.from_record(outcome.to_record()) == outcome
    else:
        check_outcome(outcome, expect, None)


# -- REST answers -----------------------------------------------------------------------------


@pytest.mark.parametrize("sample", of_kind("rest"), ids=lambda s: s.id)
def test_rest_answer(sample: Sample) -> None:
    expect = sample.expect
    method, endpoint = sample.raw["method"], sample.raw["endpoint"]

    def run() -> Any:
        return interpret_api_response(method, endpoint, sample.status, sample.body_bytes, str)

    if expect["result"] == "error":
        with pytest.raises(tradovate_async.TradovateError) as info:
            run()
        check_error(info.value, expect)
        return
    outcome = run()
    check_outcome(outcome, expect, sample.raw.get("body"))
    if "me" in expect:
        me = UserInfo.from_response(outcome)
        for name, value in expect["me"].items():
            assert getattr(me, name) == value, name


# -- socket frames ----------------------------------------------------------------------------


def check_response(item: Response, expect: dict[str, Any]) -> None:
    assert (item.id, item.status) == (expect["response"]["id"], expect["response"]["status"])
    if "auth" in expect:
        outcome = interpret_auth_response(item, item.id)
        assert outcome is not None and outcome.value == expect["auth"]
    if not item.ok:
        assert expect["result"] == "error"
        if "error_text" in expect:
            assert error_text(item.data) == expect["error_text"]
        return
    # A 2xx answer: its d is judged by the same function REST uses.
    where = f"WebSocket request #{item.id}"
    if expect["result"] == "error":
        with pytest.raises(tradovate_async.TradovateError) as info:
            if penalty_in(item.data) is None:
                judge_answer(where, item.status, item.data, str)
        check_error(info.value, expect)
        return
    penalty = penalty_in(item.data)
    outcome = penalty if penalty is not None else judge_answer(where, item.status, item.data, str)
    check_outcome(outcome, expect, item.data)


@pytest.mark.parametrize("sample", of_kind("frame"), ids=lambda s: s.id)
def test_frame(sample: Sample) -> None:
    text = sample.raw["frame"]
    frame = decode_frame(text)
    expect = sample.expect
    kinds = {
        "open": OpenFrame,
        "heartbeat": HeartbeatFrame,
        "close": CloseFrame,
        "messages": MessagesFrame,
    }
    assert type(frame) is kinds[expect["frame"]]
    # Bytes (binary frames) decode the same, and encoding gives back an equal frame.
    assert decode_frame(text.encode()) == frame
    assert decode_frame(encode_frame(frame)) == frame
    if isinstance(frame, CloseFrame):
        assert (frame.code, frame.reason) == (expect["code"], expect["reason"])
    if not isinstance(frame, MessagesFrame):
        return
    assert len(frame.items) == len(expect["items"])
    for item, item_expect in zip(frame.items, expect["items"], strict=True):
        if "event" in item_expect:
            assert isinstance(item, Event)
            assert item.kind == item_expect["event"]
            assert isinstance(item.data, dict)
            assert sorted(item.data) == item_expect["keys"]
        else:
            assert isinstance(item, Response)
            check_response(item, item_expect)


def test_clock_event_is_parsed_from_its_json_string() -> None:
    sample = next(s for s in SAMPLES if s.id == "frame-clock")
    frame = decode_frame(sample.raw["frame"])
    assert isinstance(frame, MessagesFrame)
    event = frame.items[0]
    assert isinstance(event, Event)
    assert event.data == {"t": "2019-08-26T16:43:08.599Z", "s": 20}


def test_socket_and_rest_raise_the_same_for_the_same_body() -> None:
    """The recorded order rejection (issue 45) raises the same error over both transports."""
    rest = next(s for s in SAMPLES if s.id == "rest-place-order-rejected-iss45")
    socket = next(s for s in SAMPLES if s.id == "frame-order-rejected-over-socket")
    with pytest.raises(tradovate_async.OrderRejectedError) as over_rest:
        interpret_api_response("POST", "order/placeorder", 200, rest.body_bytes, str)
    frame = decode_frame(socket.raw["frame"])
    assert isinstance(frame, MessagesFrame) and isinstance(frame.items[0], Response)
    with pytest.raises(tradovate_async.OrderRejectedError) as over_socket:
        judge_answer("order/placeorder", 200, frame.items[0].data, str)
    assert json.loads(rest.body_bytes) == frame.items[0].data
    assert (over_rest.value.failure_reason, over_rest.value.failure_text) == (
        over_socket.value.failure_reason,
        over_socket.value.failure_text,
    )


def test_shape_comparison_reports_invented_fields_wrong_types_and_gaps() -> None:
    allowed = json_shape({"orderId": 1, "failureReason": "x", "items": {"-1": 2.0, "3": 1}})
    assert shape_drift(json_shape({"orderId": 5}), allowed) == []
    assert shape_drift(json_shape({"orderId": "5"}), allowed) == [
        "$.orderId: string where the corpus has number"
    ]
    assert shape_drift(json_shape({"orderId": 5, "archived": False}), allowed) == [
        "$.archived: field the real server is not known to send"
    ]
    assert shape_drift(json_shape({"items": {"7": 1.5}}), allowed) == []
    assert missing_fields({"a": 1}, [{"a": 1, "b": 2}, {"a": 3, "b": 4}]) == [
        "$.b: missing (every sample has it)"
    ]


def test_readme_states_the_corpus_size() -> None:
    # The corpus section's detail lives in the wire-corpus guide (the README links to it).
    guide = SAMPLES_DIR.parents[2] / "docs" / "guides" / "wire-corpus.md"
    readme = guide.read_text(encoding="utf-8")
    recorded = sum(s.provenance == "recorded" for s in SAMPLES)
    documented = len(SAMPLES) - recorded
    flat = " ".join(readme.split())
    assert f"{len(SAMPLES)} samples, {recorded} recorded from the real server" in flat
    assert f"{documented} written from the documentation" in flat
