"""How one REST call goes out: budget, penalties, retries, and what a lost answer means.

The session hands every ``request()`` to :class:`CallRunner`, which decides by the endpoint:

* a **read** takes its place in the user's budget (waiting if it must), is sent, waits out a
  ``p-ticket`` penalty and resends with the ticket, and is retried on transport errors, 408
  and 5xx as the :class:`~tradovate_async.RetryPolicy` says;
* a **command** is refused by the budget rather than delayed, waits out penalties (the server
  says a penalised request was not executed), and is otherwise sent once;
* an **order command** is first validated and labelled (``isAutomated``, ``clOrdId``), and a
  lost answer raises :class:`~tradovate_async.OrderOutcomeUnknownError` instead of a bare
  transport error, so the bot knows to reconcile instead of placing the order again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

from ._budget import RateBudget
from ._clock import Clock
from ._errors import (
    APIError,
    ConnectFailedError,
    InvalidResponseError,
    OrderOutcomeUnknownError,
    SessionClosedError,
    TradovateError,
    TransportError,
)
from ._http import Answer
from ._orders import OrderDefaults, is_order_command, normalize, prepare_order_command
from ._penalty import PenaltyPolicy
from ._responses import Penalty, encode_params, interpret_api_response, with_ticket
from ._retry import RETRYABLE_STATUSES, RetryPolicy, is_read, parse_retry_after

__all__ = ["CallRunner", "CallStats", "Guard", "unguarded"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


#: Sends one request (``method``, URL relative to the REST base with its query, JSON body) and
#: reads its whole answer within the session's bounds; raises the library's TransportError family.
Exchange = Callable[[str, str, Any], Awaitable[Answer]]


class CallStats(Protocol):
    read_retries: int
    outcome_unknown: int


class Guard(Protocol):
    """Awaits one wait of a call (the budget, a penalty, a retry's pause) so that whoever owns
    the call can end it: the session's ``aclose()`` does (see ``SessionHttp``)."""

    def __call__(self, wait: Awaitable[T], /) -> Awaitable[T]: ...


async def unguarded(wait: Awaitable[T]) -> T:
    """The :class:`Guard` of a call that is ended some other way (or not at all)."""
    return await wait


@dataclasses.dataclass(slots=True)
class _Call:
    method: str
    relative: str
    target: str
    endpoint: str
    json: Any
    raw_lists: bool = False
    guard: Guard = unguarded
    rounds: int = 0  # penalty rounds so far


class CallRunner:
    """Sends the REST calls of one session (see the module notes)."""

    def __init__(
        self,
        *,
        budget: RateBudget | None,
        retry: RetryPolicy,
        penalty_policy: PenaltyPolicy,
        order_defaults: OrderDefaults,
        stats: CallStats,
        clock: Clock,
        rng: random.Random,
        closed: Callable[[], bool],
    ) -> None:
        self.budget = budget
        self.retry = retry
        self.penalty_policy = penalty_policy
        self.order_defaults = order_defaults
        self.stats = stats
        self._clock = clock
        self._rng = rng
        self._closed = closed

    async def call(
        self,
        exchange: Exchange,
        scrub: Callable[[str], str],
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        json: Any,
        raw_lists: bool = False,
        guard: Guard = unguarded,
    ) -> Any:
        """The answer's JSON; with ``raw_lists`` a successful list answer comes back as its
        JSON text, for the typed API to decode straight from bytes. Every wait of the call
        other than ``exchange`` is awaited through ``guard``."""
        relative = path.lstrip("/")
        query = encode_params(params) if params else ""
        endpoint, read = _route(relative)
        call = _Call(
            method,
            relative,
            f"{relative}?{query}" if query else relative,
            endpoint,
            json,
            raw_lists,
            guard,
        )
        if read:
            return await self._read(exchange, scrub, call)
        return await self._command(exchange, scrub, call)

    async def _penalty(self, call: _Call, penalty: Penalty) -> None:
        """Wait out a ``p-ticket`` and put the ticket into the resent body."""
        wait = self.penalty_policy.wait_for(penalty, call.rounds)
        call.rounds += 1
        logger.warning(
            "%s /%s penalised (p-ticket): waiting %.1f s before resending (round %d of %d)",
            call.method,
            call.relative,
            wait,
            call.rounds,
            self.penalty_policy.max_rounds,
        )
        await call.guard(self._clock.sleep(wait))
        call.json = with_ticket(call.json, penalty.ticket)

    def _closed_error(self, call: _Call) -> SessionClosedError | None:
        if self._closed():
            return SessionClosedError(f"{call.method} /{call.relative}: the session closed")
        return None

    async def _read(self, exchange: Exchange, scrub: Callable[[str], str], call: _Call) -> Any:
        failures = 0
        while True:
            if self.budget is not None:
                await call.guard(self.budget.acquire(call.endpoint, command=False))
            retry_after: float | None = None
            try:
                response = await exchange(call.method, call.target, call.json)
            except TransportError as exc:
                closed = self._closed_error(call)
                if closed is not None:
                    raise closed from None
                if isinstance(exc, InvalidResponseError):
                    raise  # an oversized answer comes back oversized
                error: TradovateError = exc
            else:
                if response.status_code not in RETRYABLE_STATUSES:
                    if call.raw_lists and _raw_list(call, response):
                        return response.content
                    outcome = interpret_api_response(
                        call.method, call.relative, response.status_code, response.content, scrub
                    )
                    if not isinstance(outcome, Penalty):
                        return outcome
                    await self._penalty(call, outcome)
                    continue
                retry_after = parse_retry_after(
                    response.headers.get("retry-after"), self._clock.now()
                )
                error = _status_error(call, response, scrub)
            failures += 1
            pause = self.retry.delay(failures, retry_after, self._rng)
            if pause is None:
                raise error
            self.stats.read_retries += 1
            logger.debug(
                "%s /%s: %s; retry %d in %.2f s", call.method, call.relative, error, failures, pause
            )
            await call.guard(self._clock.sleep(pause))

    async def _command(self, exchange: Exchange, scrub: Callable[[str], str], call: _Call) -> Any:
        order = is_order_command(call.endpoint)
        cl_ord_id: str | None = None
        if order:
            call.json, cl_ord_id = prepare_order_command(
                call.endpoint, call.json, self.order_defaults
            )
        while True:
            if self.budget is not None:
                await call.guard(self.budget.acquire(call.endpoint, command=True))
            sent_at = self._clock.now()
            try:
                response = await exchange(call.method, call.target, call.json)
            except ConnectFailedError:
                raise  # no connection carried the request: not sent, the outcome is known
            except TransportError as exc:
                closed = self._closed_error(call)
                if closed is not None:
                    raise closed from None
                if order:
                    raise self._unknown(call, cl_ord_id, type(exc).__name__, sent_at) from exc
                raise
            status = response.status_code
            if order and (status >= 500 or status == 408):
                raise self._unknown(call, cl_ord_id, f"HTTP {status}", sent_at)
            if call.raw_lists and _raw_list(call, response):
                return response.content
            try:
                outcome = interpret_api_response(
                    call.method, call.relative, status, response.content, scrub
                )
            except InvalidResponseError as exc:
                if order and 200 <= status < 300:
                    raise self._unknown(call, cl_ord_id, "unreadable answer", sent_at) from exc
                raise
            if not isinstance(outcome, Penalty):
                return outcome
            await self._penalty(call, outcome)  # a penalised command was not executed

    def _unknown(
        self, call: _Call, cl_ord_id: str | None, reason: str, sent_at: dt.datetime
    ) -> OrderOutcomeUnknownError:
        self.stats.outcome_unknown += 1
        logger.warning(
            "%s: answer lost (%s); not resending. clOrdId=%s: call reconcile_order()",
            call.endpoint,
            reason,
            cl_ord_id,
        )
        return OrderOutcomeUnknownError(
            call.endpoint,
            cl_ord_id=cl_ord_id,
            reason=reason,
            body=call.json if isinstance(call.json, dict) else None,
            sent_at=sent_at,
        )


@functools.lru_cache(maxsize=1024)
def _route(relative: str) -> tuple[str, bool]:
    """The endpoint a path names and whether it is a read: pure, and a bot asks the same few
    paths over and over, so it is worked out once per path."""
    endpoint = normalize(relative)
    return endpoint, is_read(endpoint)


def _raw_list(call: _Call, response: Answer) -> bool:
    if not call.raw_lists or not 200 <= response.status_code < 300:
        return False
    first = response.content[:1]
    if first.isspace():  # rare: only then is the body copied to look past the blanks
        first = response.content.lstrip()[:1]
    return first == b"["


def _status_error(call: _Call, response: Answer, scrub: Callable[[str], str]) -> APIError:
    """The typed error of a retryable status (408, 5xx)."""
    try:
        interpret_api_response(
            call.method, call.relative, response.status_code, response.content, scrub
        )
    except APIError as exc:
        return exc
    return APIError(  # pragma: no cover - a retryable status always raises
        f"{call.method} /{call.relative} failed", status=response.status_code
    )
