"""Socket requests without I/O: ids, deadlines, penalties and what a lost connection means.

A :class:`Call` is one user (or replay) request through its whole life: queued until a
connection is ready, sent with a fresh id, waiting out a penalty, done with ``data`` or an
``error``. :class:`CallTable` holds every call of one socket object and takes "now" as an
argument; it never reads a clock, never awaits. :func:`interpret_answer` is the single place
where an answer ``{"i","s","d"}`` is read.
"""

from __future__ import annotations

import enum
import heapq
import logging
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

from ._errors import (
    CaptchaRequiredError,
    ConnectionLostError,
    RateLimitedError,
    RequestFailedError,
    RequestTimeoutError,
    TradovateError,
)
from ._logging import redact
from ._penalty import Penalty, PenaltyPolicy
from ._responses import judge_answer
from ._ws_codec import Response, encode_request, error_text, penalty_of
from ._ws_types import ReplayResult, Subscription, WebSocketStats, with_ticket

__all__ = [
    "Call",
    "CallState",
    "CallTable",
    "Query",
    "interpret_answer",
    "replay_calls",
    "replay_results",
]

logger = logging.getLogger(__name__)

Query: TypeAlias = Mapping[str, Any] | str | None


def interpret_answer(endpoint: str, response: Response) -> Any:
    """What one socket answer means: its ``d``, a :class:`Penalty` to serve, or a raised error.

    The one place a received answer is read. A 2xx ``d`` is judged like a REST body
    (``errorText``, ``failureReason``, ``violations``: ``_responses.judge_answer``).
    """
    if not response.ok:
        text = error_text(response.data)
        if response.status == 429:
            raise RateLimitedError(
                f"WebSocket request {endpoint} rate limited", status=429, body_excerpt=text
            )
        raise RequestFailedError(
            f"WebSocket request {endpoint} failed", status=response.status, error_text=text
        )
    penalty = penalty_of(response.data)
    if penalty is not None:
        return penalty
    return judge_answer(endpoint, response.status, response.data, redact)


class CallState(enum.Enum):
    QUEUED = "queued"  # waiting for a ready connection
    SENT = "sent"  # on the wire, waiting for its answer
    PENALIZED = "penalized"  # waiting out a p-ticket before it is resent
    DONE = "done"


class Call:
    """One request. ``replay`` calls belong to the connection being set up and are sent on it
    at once; user calls wait for a ready connection."""

    __slots__ = (
        "body",
        "data",
        "deadline",
        "endpoint",
        "error",
        "id",
        "params",
        "replay",
        "resend_at",
        "retry",
        "rounds",
        "state",
        "subscription",
        "timeout",
    )

    def __init__(
        self,
        endpoint: str,
        params: Query,
        body: Any,
        *,
        timeout: float | None = None,
        retry: bool = False,
        subscription: Subscription | None = None,
        replay: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.params = params
        self.body = body
        self.timeout = 0.0 if timeout is None else timeout  # 0: the table's default
        self.retry = retry
        self.subscription = subscription
        self.replay = replay
        self.state = CallState.QUEUED
        self.id = 0
        self.rounds = 0
        self.deadline = 0.0
        self.resend_at = 0.0
        self.data: Any = None
        self.error: TradovateError | None = None

    def __repr__(self) -> str:
        return f"Call({self.endpoint!r}, id={self.id}, state={self.state.value})"

    @property
    def done(self) -> bool:
        return self.state is CallState.DONE


class CallTable:
    """Every call of one socket object; answers matched by id, deadlines on a heap.

    Ids come from one counter per socket object, so a late answer from an old connection can
    never match a request on the new one.
    """

    def __init__(
        self, penalties: PenaltyPolicy, stats: WebSocketStats, default_timeout: float
    ) -> None:
        self._penalties = penalties
        self._default_timeout = default_timeout
        self._stats = stats
        self._next_id = 1
        self._sent: dict[int, Call] = {}
        self._queued: deque[Call] = deque()
        self._timers: list[tuple[float, int, Call]] = []
        self._seq = 0
        #: Calls finished since the I/O layer last looked (it wakes their waiters).
        self.completed: list[Call] = []
        #: A timer was added (it may be earlier than the one the I/O layer sleeps towards).
        self.timers_changed = False

    def __len__(self) -> int:
        """Calls sent and not yet answered."""
        return len(self._sent)

    def allocate_id(self) -> int:
        request_id = self._next_id
        self._next_id = request_id + 1
        return request_id

    def _arm(self, when: float, call: Call) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (when, self._seq, call))
        self.timers_changed = True

    def add(self, call: Call, now: float) -> None:
        """Start the call's deadline; it waits in the queue until :meth:`send`."""
        if not call.timeout > 0:
            call.timeout = self._default_timeout
        call.deadline = now + call.timeout
        self._arm(call.deadline, call)
        if not call.replay:
            self._queued.append(call)

    def take_queued(self) -> list[Call]:
        """The user calls waiting for a connection, oldest first (they are sent now)."""
        calls = [c for c in self._queued if c.state is CallState.QUEUED]
        self._queued.clear()
        return calls

    def send(self, call: Call) -> str:
        """The frame for ``call`` under a fresh id; the call now waits for its answer."""
        request_id = self.allocate_id()
        text = encode_request(call.endpoint, request_id, call.params, call.body)
        call.id = request_id
        call.state = CallState.SENT
        self._sent[request_id] = call
        self._stats.requests_sent += 1
        return text

    def finish(self, call: Call, data: Any = None, error: TradovateError | None = None) -> None:
        if call.state is CallState.DONE:
            return
        if call.state is CallState.SENT:
            self._sent.pop(call.id, None)
        call.state = CallState.DONE
        call.data = data
        call.error = error
        self.completed.append(call)

    def answer(self, response: Response, now: float) -> Call | None:
        """Resolve the call ``response`` answers; ``None`` for an unknown or late id."""
        call = self._sent.pop(response.id, None)
        if call is None:
            logger.debug("answer to unknown request %d", response.id)
            return None
        call.state = CallState.QUEUED  # not done yet: a penalty may send it again
        try:
            result = interpret_answer(call.endpoint, response)
            if isinstance(result, Penalty):
                self._penalize(call, result, now)
                return call
        except TradovateError as exc:
            self.finish(call, error=exc)
            return call
        self.finish(call, data=result)
        return call

    def _penalize(self, call: Call, penalty: Penalty, now: float) -> None:
        """Wait ``p-time`` within the policy, then resend with the ticket (raises otherwise)."""
        if penalty.captcha:
            raise CaptchaRequiredError(
                f"{call.endpoint}: the server asks for a CAPTCHA (p-captcha); a program cannot "
                "solve it. Wait about an hour."
            )
        self._stats.penalties += 1
        wait = self._penalties.wait_for(penalty, call.rounds)
        call.rounds += 1
        call.body = with_ticket(call.body, penalty.ticket)
        logger.warning(
            "%s: penalty ticket, waiting %.1f s before resending (round %d of %d)",
            call.endpoint,
            wait,
            call.rounds,
            self._penalties.max_rounds,
        )
        call.state = CallState.PENALIZED
        call.resend_at = now + wait
        self._arm(call.resend_at, call)

    def lose_connection(self, reason: str, *, closing: bool) -> None:
        """The connection is gone: read-only user calls go back to the queue (resent on the
        next connection within their deadline), every other sent call fails."""
        calls = list(self._sent.values())
        self._sent.clear()
        for call in calls:
            call.state = CallState.QUEUED
            if call.retry and not call.replay and not closing:
                logger.info("%s: connection lost; resending after the reconnect", call.endpoint)
                self._queued.append(call)
            else:
                self.finish(call, error=ConnectionLostError(f"connection lost ({reason})"))
        for _, _, call in self._timers:  # replay calls waiting out a penalty die with it
            if call.replay and call.state is CallState.PENALIZED:
                self.finish(call, error=ConnectionLostError(f"connection lost ({reason})"))

    def fail_all(self, make_error: type[TradovateError], message: str) -> None:
        """Finish every call that is not done (the socket closed or failed for good)."""
        calls = list(self._sent.values()) + list(self._queued) + [c for _, _, c in self._timers]
        for call in calls:
            self.finish(call, error=make_error(message))
        self._queued.clear()
        self._timers.clear()

    def fail_with(self, error: TradovateError) -> None:
        """Finish every call with ``error`` itself (a fatal error of the socket)."""
        calls = list(self._sent.values()) + list(self._queued) + [c for _, _, c in self._timers]
        for call in calls:
            self.finish(call, error=error)
        self._queued.clear()
        self._timers.clear()

    def next_deadline(self) -> float | None:
        timers = self._timers
        while timers:
            when, _, call = timers[0]
            if self._armed(call, when):
                return when
            heapq.heappop(timers)
        return None

    @staticmethod
    def _armed(call: Call, when: float) -> bool:
        if call.state is CallState.PENALIZED:
            return when == call.resend_at
        return call.state is not CallState.DONE and when == call.deadline

    def expire(self, now: float) -> list[Call]:
        """Fail calls past their deadline; return penalized calls due to be resent now (their
        deadline starts again: penalty waits do not count against it)."""
        resend: list[Call] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            when, _, call = heapq.heappop(timers)
            if not self._armed(call, when):
                continue
            if call.state is CallState.PENALIZED:
                call.state = CallState.QUEUED
                call.deadline = now + call.timeout
                self._arm(call.deadline, call)
                resend.append(call)
                continue
            what = "no answer" if call.state is CallState.SENT else "socket not connected"
            self.finish(
                call,
                error=RequestTimeoutError(f"{call.endpoint}: {what} within {call.timeout:g} s"),
            )
        return resend

    def abandon(self, call: Call) -> None:
        """The caller stopped waiting (cancelled): a call not yet sent is never sent, a sent one
        is forgotten (its answer will be ignored)."""
        if call.state is CallState.SENT:
            self._sent.pop(call.id, None)
        call.state = CallState.DONE

    def requeue(self, call: Call) -> None:
        """Put a call back in the queue (a resend while no connection is ready)."""
        self._queued.append(call)


def replay_calls(subscriptions: Iterable[Subscription]) -> list[Call]:
    """The calls that resubscribe on a new connection (sent on it at once, never resent)."""
    return [
        Call(
            sub.endpoint,
            None,
            sub.body_json or None,
            retry=False,
            subscription=sub,
            replay=True,
        )
        for sub in subscriptions
    ]


def replay_results(calls: Iterable[Call]) -> tuple[ReplayResult, ...]:
    """What the replay gave, for the ``reconnected`` event (failures are logged)."""
    results = []
    for call in calls:
        assert call.subscription is not None
        if call.error is not None:
            logger.warning("resubscribing %s failed: %s", call.endpoint, call.error)
        results.append(ReplayResult(call.subscription, call.data, call.error))
    return tuple(results)
