"""The socket's sans-I/O core, driven by hand: exact times, no sockets, no sleeping.

Each test plays the I/O layer: it answers the core's actions (a token, an open transport),
feeds server frames with the time they arrive, and calls ``tick(now)`` at the deadlines the
core names. Assertions are on the frames the core sends and when.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from tradovate_async._errors import (
    CaptchaRequiredError,
    ConnectFailedError,
    ConnectionLostError,
    PenaltyLimitError,
    RateLimitedError,
    RequestFailedError,
    RequestTimeoutError,
    SessionClosedError,
    TokenRejectedError,
)
from tradovate_async._event_buffer import EVENT_OVERFLOW, EVENT_RESYNCED
from tradovate_async._options import Backoff
from tradovate_async._penalty import PenaltyPolicy
from tradovate_async._ws_calls import Call
from tradovate_async._ws_core import (
    CloseTransport,
    FetchToken,
    OpenTransport,
    Phase,
    SocketConnection,
    SocketSettings,
)
from tradovate_async._ws_types import EVENT_DISCONNECTED, EVENT_RECONNECTED, Subscription

SEED = 11


class Driver:
    """The I/O layer's part, done by hand."""

    def __init__(self, **settings: Any) -> None:
        self.core = SocketConnection(SocketSettings(**settings), rng=random.Random(SEED))
        self.sent: list[tuple[float, str]] = []
        self.tokens = 0

    def take_actions(self) -> list[object]:
        actions, self.core.actions = self.core.actions, []
        return actions

    def take_sent(self, now: float) -> list[str]:
        frames, self.core.outgoing = self.core.outgoing, []
        for frame in frames:
            self.sent.append((now, frame))
            self.core.frame_sent(now)
        return frames

    def connect(self, now: float, *, accept: bool = True) -> None:
        """Answer FetchToken and OpenTransport, receive ``o``, answer the authorize."""
        actions = self.take_actions()
        assert any(isinstance(a, FetchToken) for a in actions), actions
        self.tokens += 1
        self.core.token_received(f"token{self.tokens}", f"RAW{self.tokens}", now)
        assert self.take_actions() == [OpenTransport()]
        self.core.transport_opened(now)
        self.core.receive("o", now)
        frames = self.take_sent(now)
        assert frames == [f"authorize\n{self.auth_id}\n\nRAW{self.tokens}"]
        if accept:
            self.answer(self.auth_id, 200, None, now)

    @property
    def auth_id(self) -> int:
        auth_id = self.core._handshake.auth_id
        assert auth_id is not None
        return auth_id

    def answer(self, request_id: int, status: int, data: Any, now: float) -> None:
        message: dict[str, Any] = {"i": request_id, "s": status}
        if data is not None:
            message["d"] = data
        self.core.receive("a" + json.dumps([message]), now)

    def run_until(self, end: float) -> float:
        """Tick at every deadline up to ``end`` (frames sent are recorded); returns the time."""
        now = 0.0
        while True:
            deadline = self.core.next_deadline()
            if deadline is None or deadline > end:
                return end
            now = deadline
            self.core.tick(now)
            self.take_sent(now)

    def request_frame(self, frame: str) -> tuple[str, int, str, str]:
        endpoint, request_id, query, body = frame.split("\n", 3)
        return endpoint, int(request_id), query, body


def submit(
    core: SocketConnection, endpoint: str, params: Any, body: Any, now: float, **options: Any
) -> Call:
    """A user request, as ``TradovateWebSocket.request`` hands it to the core."""
    return core.submit(Call(endpoint, params, body, **options), now)


def started(**settings: Any) -> Driver:
    driver = Driver(**settings)
    driver.core.start(0.0)
    driver.connect(0.0)
    assert driver.core.ready and driver.core.generation == 1
    return driver


def test_connect_authorizes_with_the_raw_token_and_becomes_ready() -> None:
    driver = Driver()
    core = driver.core
    core.start(0.0)
    assert core.phase is Phase.CONNECTING
    driver.connect(0.0, accept=False)
    assert core.phase is Phase.AUTHORIZING and not core.ready
    driver.answer(driver.auth_id, 200, None, 0.1)
    assert core.phase is Phase.OPEN and core.ready and core.stats.connects == 1


def test_json_auth_frame_accepts_the_first_answer() -> None:
    driver = Driver(auth_frame="json")
    driver.core.start(0.0)
    driver.take_actions()
    driver.core.token_received("t", "RAW", 0.0)
    driver.take_actions()
    driver.core.receive("o", 0.0)
    assert driver.take_sent(0.0) == ['{"request":"auth","accessToken":"RAW"}']
    driver.answer(99, 200, None, 0.0)
    assert driver.core.ready


def test_heartbeats_every_2_5_s_on_a_fixed_schedule() -> None:
    driver = started()
    core = driver.core
    assert core.next_deadline() == 2.5
    for t in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0):  # server heartbeats keep it alive
        driver.run_until(t)
        core.receive("h", t)
    driver.run_until(7.6)
    beats = [t for t, frame in driver.sent if frame == "[]"]
    assert beats == [2.5, 5.0, 7.5]
    assert core.stats.heartbeats_sent == 3


def test_a_blocked_loop_does_not_send_a_burst_of_heartbeats() -> None:
    driver = started(silence_timeout=100.0)
    driver.core.tick(9.0)  # woke late: three beats were due
    assert driver.take_sent(9.0) == ["[]"]
    assert driver.core.next_deadline() == 11.5


def test_silence_counts_as_a_dead_connection_exactly_at_the_timeout() -> None:
    driver = started(heartbeat_interval=100.0)
    core = driver.core
    core.receive("h", 3.0)
    core.tick(12.9)
    assert core.ready
    assert core.next_deadline() == 13.0
    core.tick(13.0)
    assert not core.ready and core.phase is Phase.RECONNECTING
    assert CloseTransport(graceful=False) in driver.take_actions()
    event = core.events.get()
    assert event.kind == EVENT_DISCONNECTED and event.data.reason == "server silent for 10.0 s"
    assert core.stats.last_disconnect_reason == "server silent for 10.0 s"


def test_reconnect_backoff_sequence_is_exponential_with_full_jitter() -> None:
    driver = started(reconnect_backoff=Backoff(0.1, 0.8))
    core = driver.core
    core.transport_closed("reset", 1.0)
    rng = random.Random(SEED)
    expected = [rng.uniform(0, 0.005)] + [rng.uniform(0, c) for c in (0.1, 0.2, 0.4, 0.8, 0.8)]
    now = 1.0
    delays = []
    for _ in expected:
        deadline = core.next_deadline()
        assert deadline is not None and core.phase is Phase.RECONNECTING
        delays.append(deadline - now)
        now = deadline
        core.tick(now)  # the attempt starts: ask for a token...
        assert driver.take_actions() == [FetchToken()]
        core.connect_failed(ConnectFailedError("refused"), now)  # ...and fail to connect
    assert delays == pytest.approx(expected)
    assert core.stats.connect_failures == len(expected)


def test_backoff_resets_only_after_a_stable_connection() -> None:
    driver = started(reconnect_backoff=Backoff(1.0, 8.0), stable_after=5.0)
    core = driver.core
    core.transport_closed("reset", 10.0)  # up 10 s: stable, the first retry is at once
    assert core.next_deadline() == pytest.approx(10.0, abs=0.005)
    core.tick(10.01)
    driver.connect(10.01)
    core.transport_closed("reset", 11.0)  # up 1 s: not stable, backoff continues
    deadline = core.next_deadline()
    assert deadline is not None and 11.0 <= deadline <= 12.0  # ceiling of attempt 1 is 1 s


def test_quota_shutdown_waits_quota_wait_before_reconnecting() -> None:
    driver = started(quota_wait=60.0)
    core = driver.core
    core.receive('a[{"e":"shutdown","d":{"reasonCode":"ConnectionQuotaReached"}}]', 2.0)
    assert CloseTransport(graceful=True) in driver.take_actions()
    events = list(core.events)
    assert [e.kind for e in events] == ["shutdown", EVENT_DISCONNECTED]
    assert events[1].data.quota
    deadline = core.next_deadline()
    assert deadline is not None and 62.0 <= deadline <= 2.0 + 60.0 * 1.25


def test_requests_get_ids_and_answers_are_matched_by_id() -> None:
    driver = started()
    core = driver.core
    first = submit(core, "account/list", None, None, 1.0)
    second = submit(core, "contract/item", {"id": 5}, None, 1.0)
    frames = driver.take_sent(1.0)
    (_, id1, _, _), (_, id2, query, _) = map(driver.request_frame, frames)
    assert id1 != id2 and query == "id=5"
    driver.answer(id2, 200, {"id": 5}, 1.5)
    driver.answer(id1, 200, [1], 1.6)
    assert core.completed == [second, first]
    assert first.data == [1] and second.data == {"id": 5}


def test_a_request_times_out_at_its_deadline() -> None:
    driver = started(request_timeout=10.0, silence_timeout=100.0)
    core = driver.core
    call = submit(core, "account/list", None, None, 1.0)
    driver.take_sent(1.0)
    driver.run_until(10.99)
    assert not call.done
    driver.run_until(11.0)
    assert isinstance(call.error, RequestTimeoutError)
    assert str(call.error) == "account/list: no answer within 10 s"


def test_a_request_waits_for_the_reconnect_within_its_timeout() -> None:
    driver = started(request_timeout=5.0, reconnect_backoff=Backoff(30.0, 30.0))
    core = driver.core
    core.transport_closed("reset", 1.0)
    core.tick(core.next_deadline() or 0.0)  # first attempt, fails: next in up to 30 s
    driver.take_actions()
    core.connect_failed(ConnectFailedError("refused"), 1.01)
    call = submit(core, "account/list", None, None, 2.0, timeout=5.0)
    driver.run_until(7.0)
    assert isinstance(call.error, RequestTimeoutError)
    assert "socket not connected within 5 s" in str(call.error)


def test_penalty_is_waited_out_then_resent_with_the_ticket() -> None:
    driver = started(silence_timeout=100.0, heartbeat_interval=100.0)
    core = driver.core
    call = submit(core, "order/placeorder", None, {"qty": 1}, 1.0)
    (_, rid, _, _) = driver.request_frame(driver.take_sent(1.0)[0])
    driver.answer(rid, 200, {"p-ticket": "T1", "p-time": 3, "p-captcha": False}, 1.5)
    assert not call.done and core.stats.penalties == 1
    assert core.next_deadline() == 4.5
    core.tick(4.5)
    (_, rid2, _, body) = driver.request_frame(driver.take_sent(4.5)[0])
    assert rid2 != rid and json.loads(body) == {"qty": 1, "p-ticket": "T1"}
    driver.answer(rid2, 200, {"orderId": 9}, 5.0)
    assert call.data == {"orderId": 9}


@pytest.mark.parametrize(
    ("penalty", "error"),
    [
        ({"p-ticket": "T", "p-time": 500}, PenaltyLimitError),
        ({"p-captcha": True}, CaptchaRequiredError),
    ],
)
def test_penalties_beyond_the_policy_fail(penalty: dict[str, Any], error: type) -> None:
    driver = started(penalties=PenaltyPolicy(max_rounds=3, max_wait=120.0))
    call = submit(driver.core, "fill/list", None, None, 1.0)
    (_, rid, _, _) = driver.request_frame(driver.take_sent(1.0)[0])
    driver.answer(rid, 200, penalty, 1.1)
    assert isinstance(call.error, error)


def test_failed_answers_raise_typed_errors() -> None:
    driver = started()
    core = driver.core
    a = submit(core, "nope/list", None, None, 1.0)
    b = submit(core, "account/list", None, None, 1.0)
    (_, ra, _, _), (_, rb, _, _) = map(driver.request_frame, driver.take_sent(1.0))
    driver.answer(ra, 404, '"Not found: nope/list"', 1.1)
    driver.answer(rb, 429, None, 1.1)
    assert isinstance(a.error, RequestFailedError) and a.error.error_text == "Not found: nope/list"
    assert isinstance(b.error, RateLimitedError)


def test_a_drop_resends_read_only_requests_and_fails_the_others() -> None:
    driver = started(reconnect_backoff=Backoff(0.1, 0.1))
    core = driver.core
    read = submit(core, "account/list", None, None, 1.0, retry=True)
    order = submit(core, "order/placeorder", None, {"q": 1}, 1.0, retry=False)
    driver.take_sent(1.0)
    core.transport_closed("reset", 1.5)
    assert isinstance(order.error, ConnectionLostError) and not read.done
    core.tick(core.next_deadline() or 0.0)
    driver.connect(1.6)
    frames = driver.take_sent(1.6)
    assert [driver.request_frame(f)[0] for f in frames] == ["account/list"]


def test_subscriptions_are_replayed_before_queued_requests_after_a_reconnect() -> None:
    driver = started(reconnect_backoff=Backoff(0.1, 0.1))
    core = driver.core
    sub = Subscription("md/subscribeQuote", '{"symbol":"ESZ5"}', "md/unsubscribeQuote")
    call = submit(core, "md/subscribeQuote", None, {"symbol": "ESZ5"}, 1.0, subscription=sub)
    (_, rid, _, _) = driver.request_frame(driver.take_sent(1.0)[0])
    driver.answer(rid, 200, {"ok": 1}, 1.1)
    assert call.data == {"ok": 1} and core.subscriptions == {sub: {"ok": 1}}

    core.transport_closed("reset", 2.0)
    waiting = submit(core, "account/list", None, None, 2.0, retry=True)
    core.tick(core.next_deadline() or 0.0)
    driver.connect(2.1)
    replay = driver.take_sent(2.1)
    assert [driver.request_frame(f)[0] for f in replay] == ["md/subscribeQuote"]
    assert not core.ready and not waiting.done  # ready only once the replay is answered
    driver.answer(driver.request_frame(replay[0])[1], 200, {"ok": 2}, 2.3)
    assert core.ready and core.generation == 2
    assert [driver.request_frame(f)[0] for f in driver.take_sent(2.3)] == ["account/list"]
    events = list(core.events)
    assert [e.kind for e in events] == [EVENT_DISCONNECTED, EVENT_RECONNECTED]
    info = events[1].data
    assert info.replayed[0].data == {"ok": 2} and info.recovery_seconds == pytest.approx(0.3)
    assert core.subscriptions[sub] == {"ok": 2}


def test_refused_token_asks_the_source_again_and_the_third_refusal_is_final() -> None:
    driver = Driver()
    core = driver.core
    core.start(0.0)
    driver.connect(0.0, accept=False)
    driver.answer(driver.auth_id, 401, "expired", 0.1)
    actions = driver.take_actions()
    assert actions == [CloseTransport(graceful=True), FetchToken(refused="token1")]
    core.actions = [FetchToken()]  # the driver answers any FetchToken the same way
    driver.connect(0.2, accept=False)
    driver.answer(driver.auth_id, 401, None, 0.3)
    core.actions = [FetchToken()]
    driver.connect(0.4, accept=False)
    driver.answer(driver.auth_id, 403, None, 0.5)
    assert isinstance(core.failure, TokenRejectedError) and core.phase is Phase.CLOSED


@pytest.mark.parametrize(("status", "error"), [(429, RateLimitedError), (500, ConnectFailedError)])
def test_first_connect_failures_are_fatal(status: int, error: type) -> None:
    driver = Driver()
    driver.core.start(0.0)
    driver.connect(0.0, accept=False)
    driver.answer(driver.auth_id, status, None, 0.1)
    assert isinstance(driver.core.failure, error)


def test_connect_deadline_covers_open_and_authorize() -> None:
    driver = Driver(connect_timeout=5.0)
    core = driver.core
    core.start(0.0)
    driver.take_actions()
    core.token_received("t", "RAW", 1.0)
    assert core.next_deadline() == 6.0
    core.tick(6.0)
    assert isinstance(core.failure, ConnectFailedError)
    assert "no open/authorize within 5 s" in str(core.failure)


def test_close_fails_pending_requests_with_session_closed() -> None:
    driver = started()
    core = driver.core
    call = submit(core, "account/list", None, None, 1.0)
    core.close(1.5)
    assert isinstance(call.error, SessionClosedError)
    assert CloseTransport(graceful=True) in driver.take_actions()
    late = submit(core, "account/list", None, None, 2.0)
    assert isinstance(late.error, SessionClosedError)


def test_events_keep_their_order_and_quotes_are_superseded_per_contract() -> None:
    driver = started(event_buffer=4)
    core = driver.core

    def quote(contract: int, n: int) -> dict[str, Any]:
        return {"e": "md", "d": {"quotes": [{"contractId": contract, "n": n}]}}

    items = [quote(1, 1), {"e": "props", "d": 2}, quote(1, 3), quote(2, 4), quote(1, 5)]
    core.receive("a" + json.dumps(items), 1)
    # full at 4 when the last quote comes: the oldest quote of contract 1 is superseded (a
    # newer one is buffered); the props event stays; the order is kept
    events = list(core.events)
    assert [e.kind for e in events] == ["props", "md", "md", "md"]
    assert [e.data["quotes"][0]["n"] for e in events[1:]] == [3, 4, 5]
    assert core.stats.dropped_events == 1


def test_a_props_backlog_is_dropped_marked_and_resynchronised() -> None:
    """A consumer that stopped reading: memory stays bounded, the gap is marked by an
    ``overflow`` event, a fresh ``user/syncrequest`` goes out and its answer is delivered."""
    driver = started(event_buffer=8)
    core = driver.core
    sub = Subscription("user/syncrequest", '{"users":[1]}')
    submit(core, "user/syncrequest", None, {"users": [1]}, 1.0, subscription=sub)
    (_, rid, _, _) = driver.request_frame(driver.take_sent(1.0)[0])
    driver.answer(rid, 200, {"snapshot": 1}, 1.1)
    for n in range(20):
        core.receive("a" + json.dumps([{"e": "props", "d": {"n": n}}]), 2.0)
        assert len(core.events) <= 8 + 1
    sent = driver.take_sent(2.0)
    assert [driver.request_frame(f)[0] for f in sent] == ["user/syncrequest"]  # once
    driver.answer(driver.request_frame(sent[0])[1], 200, {"snapshot": 2}, 2.1)
    events = list(core.events)
    kinds = [e.kind for e in events]
    assert kinds.count(EVENT_OVERFLOW) >= 1 and kinds[-1] == EVENT_RESYNCED
    kept = [e.data["n"] for e in events if e.kind == "props"]
    reported = sum(e.data.dropped["props"] for e in events if e.kind == EVENT_OVERFLOW)
    assert kept == sorted(kept) and kept[-1] == 19
    assert core.stats.dropped_events >= reported > 0
    assert events[-1].data[0].data == {"snapshot": 2}
    assert core.subscriptions[sub] == {"snapshot": 2}


def test_a_resync_answer_is_delivered_where_it_stands_in_its_frame() -> None:
    """A frame may carry the fresh snapshot's answer and newer events after it: ``resynced``
    goes between them, so that a consumer rebuilding from it applies those events on top of
    the snapshot instead of before it (where the rebuild would wipe them)."""
    driver = started(event_buffer=4)
    core = driver.core
    sub = Subscription("user/syncrequest", '{"users":[1]}')
    submit(core, "user/syncrequest", None, {"users": [1]}, 1.0, subscription=sub)
    (_, rid, _, _) = driver.request_frame(driver.take_sent(1.0)[0])
    driver.answer(rid, 200, {"snapshot": 1}, 1.1)
    for n in range(6):  # nobody reads: the backlog is dropped, a resync goes out
        core.receive("a" + json.dumps([{"e": "props", "d": {"n": n}}]), 2.0)
    (resync,) = driver.take_sent(2.0)
    list(core.events)  # the consumer catches up
    items = [
        {"e": "props", "d": {"n": 6}},
        {"i": driver.request_frame(resync)[1], "s": 200, "d": {"snapshot": 2}},
        {"e": "props", "d": {"n": 7}},
    ]
    core.receive("a" + json.dumps(items), 3.0)
    events = list(core.events)
    assert [e.kind for e in events] == ["props", EVENT_RESYNCED, "props"]
    assert [events[0].data["n"], events[2].data["n"]] == [6, 7]


def test_malformed_frames_are_counted_and_ignored() -> None:
    driver = started()
    driver.core.receive("a[not json", 1.0)
    assert driver.core.stats.malformed_frames == 1 and driver.core.ready


def test_a_cancelled_call_is_never_sent_later() -> None:
    driver = started()
    core = driver.core
    core.transport_closed("reset", 1.0)
    call: Call = submit(core, "order/placeorder", None, {"q": 1}, 1.0)
    core.calls.abandon(call)
    core.tick(core.next_deadline() or 0.0)
    driver.connect(1.1)
    assert driver.take_sent(1.1) == []


# -- layering: the core is pure ------------------------------------------------------------

CORE_MODULES = ["_ws_core", "_ws_calls", "_ws_codec", "_auth_core", "_penalty", "_responses"]
IO_LIBRARIES = ("anyio", "httpx", "websockets.asyncio", "asyncio", "socket")


def _imports(module: str) -> tuple[set[str], set[str]]:
    """(package modules, other modules) imported at run time by ``tradovate_async.<module>``."""
    import ast
    from pathlib import Path

    source = Path(__file__).resolve().parents[1] / "tradovate_async" / f"{module}.py"
    ours, others = set(), set()
    for node in ast.parse(source.read_text()).body:  # top level only: TYPE_CHECKING excluded
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                ours.add(node.module or "")
            elif node.module:
                others.add(node.module)
        elif isinstance(node, ast.Import):
            others.update(alias.name for alias in node.names)
    return ours, others


@pytest.mark.parametrize("module", CORE_MODULES)
def test_the_sans_io_core_imports_no_settings_and_no_io(module: str) -> None:
    seen: set[str] = set()
    todo = [module]
    libraries: set[str] = set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        ours, others = _imports(current)
        todo.extend(ours)
        libraries |= others
    assert "_config" not in seen
    assert not [lib for lib in libraries if lib.startswith(IO_LIBRARIES)]
