"""The HTTP side of a session: its clients, and the one path every REST call takes.

:class:`SessionHttp` owns what :class:`~tradovate_async.TradovateSession` sends requests with:
the bearer-signed ``httpx.AsyncClient`` (token exchanges, clock probes, ``session.http``), the
aiohttp exchanger that carries API calls by default, the :class:`CallRunner` (budget, retries,
penalties) and the requests in flight that ``aclose()`` cancels. The token comes from the
session's :class:`~tradovate_async._token_keeper.TokenKeeper`. Split out of the session class
(issue 8), which keeps the public methods.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio
import httpx

from ._aiohttp_exchange import AiohttpExchanger
from ._calls import CallRunner, Guard, unguarded
from ._errors import (
    OrderOutcomeUnknownError,
    SessionClosedError,
    TokenRejectedError,
    TransportError,
)
from ._http import Answer, ExchangeBounds, bounded_exchange
from ._models import AccessToken
from ._options import Timeouts, TimeoutsLike, Verify, ssl_context
from ._orders import find_order
from ._server_time import SessionTime
from ._token_keeper import TokenKeeper

if TYPE_CHECKING:
    from .api import ApiCall
    from .api._models import Order

__all__ = ["HttpSettings", "SessionHttp"]

logger = logging.getLogger(__name__)

_SENT_AT = "tradovate_async.sent_at"  # request extension: elapsed time the request was sent

T = TypeVar("T")


class _Closed(Exception):
    """aclose() ended a call's wait or exchange; :meth:`SessionHttp.call` words it."""


@dataclasses.dataclass(frozen=True, slots=True)
class HttpSettings:
    """How a session's HTTP clients are built: checked once, when the session is created."""

    timeouts: Timeouts
    verify: Verify
    ssl_context: ssl.SSLContext | None
    limits: httpx.Limits
    backend: Literal["aiohttp", "httpx"]
    request_bounds: ExchangeBounds

    @classmethod
    def of(
        cls,
        timeout: TimeoutsLike,
        verify: Verify,
        limits: httpx.Limits | None,
        backend: Literal["aiohttp", "httpx"],
        request_bounds: ExchangeBounds,
    ) -> HttpSettings:
        """The settings from the session's arguments (``ValueError`` on a bad one)."""
        timeouts = Timeouts.of(timeout)
        context = ssl_context(verify)
        if backend not in ("aiohttp", "httpx"):
            raise ValueError("http_backend must be 'aiohttp' or 'httpx'")
        return cls(
            timeouts,
            verify,
            context,
            limits or httpx.Limits(max_connections=100, max_keepalive_connections=20),
            backend,
            request_bounds,
        )


@functools.cache
def default_trust() -> ssl.SSLContext:
    """httpx's default trust (certifi, verification on), built once per process: loading the
    CA bundle costs about 20 ms, which every session paid twice (httpx and aiohttp). Nothing
    changes a context after it is built, so the sessions can share it."""
    return httpx.create_ssl_context()


class SessionHttp:
    """The clients and the call path of one session (see the module notes).

    Args:
        settings: how to build the clients.
        time: the session's clock; every answer's ``Date`` feeds it.
        keeper: the session's token.
        calls: the REST call runner.
        check_open: raises :class:`SessionClosedError` unless the session is open.
        closed: whether the session was closed (a transport error then means just that).
    """

    def __init__(
        self,
        settings: HttpSettings,
        time: SessionTime,
        keeper: TokenKeeper,
        calls: CallRunner,
        *,
        check_open: Callable[[], None],
        closed: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.calls = calls
        self.client: httpx.AsyncClient | None = None
        # The calls in flight: over aiohttp, each task with a call and the scope of the wait it
        # is in (None outside one); over httpx, each call's scope (key and value).
        self.in_flight: dict[object, anyio.CancelScope | None] = {}
        # Tasks whose aiohttp exchange aclose() may cancel, and those it did cancel.
        self._exchanging: set[asyncio.Task[Any]] = set()
        self._interrupted: set[asyncio.Task[Any]] = set()
        # The event loop's own cancel-scope class, found when the session opens: building
        # scopes through anyio.CancelScope looks the backend up on every call.
        self._scope_type: type[anyio.CancelScope] = anyio.CancelScope
        self._exchanger: AiohttpExchanger | None = None
        # The event loop of the aiohttp exchanger: asyncio.current_task(loop) finds a task
        # without asking for the running loop, which on Python 3.11 makes a getpid() system
        # call (three per request were about 2 % of a plain aiohttp call).
        self._loop: asyncio.AbstractEventLoop | None = None
        # Per-call strings made once: the REST base (apiHosts may move it) and the bearer
        # header of the current token.
        self._base: tuple[httpx.URL, str] | None = None
        self._bearer: tuple[AccessToken, dict[str, str]] | None = None
        self._time = time
        self._keeper = keeper
        self._check_open = check_open
        self._closed = closed

    async def open(self, base_url: str, auth: httpx.Auth) -> None:
        """Build the clients: ``auth`` signs the httpx client's requests."""
        net = self.settings
        timeouts = net.timeouts
        context = net.ssl_context if net.ssl_context is not None else default_trust()
        self.client = httpx.AsyncClient(
            base_url=base_url,
            auth=auth,
            headers={"Accept": "application/json"},
            timeout=httpx.Timeout(
                timeouts.request, connect=timeouts.connect_seconds, pool=timeouts.request
            ),
            verify=context,
            limits=net.limits,
            event_hooks={"request": [self._on_request], "response": [self._on_response]},
        )
        self._keeper.attach(self.client)
        self._scope_type = type(anyio.CancelScope())
        if net.backend == "aiohttp":
            self._loop = asyncio.get_running_loop()
            self._exchanger = AiohttpExchanger(
                ssl_context=context, limits=net.limits, timeouts=timeouts
            )
            await self._exchanger.open()

    def cancel_in_flight(self) -> None:
        """Cancel every request in flight (they raise :class:`SessionClosedError`): the scope
        of the wait each is in, or the aiohttp exchange it is waiting for (see :meth:`call`)."""
        for scope in list(self.in_flight.values()):
            if scope is not None:
                scope.cancel()
        for task in list(self._exchanging):
            self._interrupted.add(task)
            task.cancel()

    async def aclose(self) -> None:
        """Close the clients (idempotent)."""
        client, self.client = self.client, None
        self._keeper.detach()
        if client is not None:
            await client.aclose()
        exchanger, self._exchanger = self._exchanger, None
        if exchanger is not None:
            await exchanger.aclose()

    def open_client(self) -> httpx.AsyncClient:
        """The httpx client of the open session (else :class:`SessionClosedError`)."""
        self._check_open()
        assert self.client is not None
        return self.client

    async def call(
        self,
        method: str,
        relative: str,
        params: Mapping[str, Any] | None,
        json: Any,
        *,
        raw_lists: bool,
    ) -> Any:
        """One request, ended by ``aclose()``. With ``raw_lists`` a successful list answer
        comes back as its JSON text, for the typed API to decode straight from bytes.

        Over aiohttp (asyncio only) a call has no cancel scope of its own, which cost as much
        as the rest of the session's work per call: each wait that can last (the budget, a
        token refresh, a penalty or retry pause) gets one from :meth:`_guard`, and the
        exchange, where nothing is shielded, is cancelled by aclose() with ``Task.cancel()``
        and told apart from any other cancellation (:meth:`_was_interrupted`).
        """
        if self._exchanger is None:
            return await self._scoped_call(method, relative, params, json, raw_lists)
        self._check_open()
        task = asyncio.current_task(self._loop)
        in_flight = self.in_flight
        in_flight[task] = None
        try:
            return await self.calls.call(
                self._exchange, self._scrub, method, relative, params, json, raw_lists, self._guard
            )
        except _Closed:
            raise SessionClosedError(f"{method} /{relative}: the session closed") from None
        finally:
            del in_flight[task]

    async def _scoped_call(
        self, method: str, relative: str, params: Mapping[str, Any] | None, json: Any, raw: bool
    ) -> Any:
        """:meth:`call` over httpx: the whole call in one cancel scope (any anyio backend)."""
        outcome: Any = None
        with self._scope_type() as scope:
            self.in_flight[scope] = scope
            try:
                self._check_open()
                outcome = await self.calls.call(
                    self._exchange, self._scrub, method, relative, params, json, raw
                )
            finally:
                del self.in_flight[scope]
        if scope.cancelled_caught:  # aclose() (from this or another task) cancelled it
            raise SessionClosedError(f"{method} /{relative}: the session closed")
        return outcome

    async def _guard(self, wait: Awaitable[T]) -> T:
        """Await one wait of a call over aiohttp in a cancel scope that aclose() cancels."""
        task = asyncio.current_task(self._loop)
        with self._scope_type() as scope:
            self.in_flight[task] = scope
            try:
                result = await wait
            finally:
                self.in_flight[task] = None
        if scope.cancelled_caught:
            raise _Closed
        return result

    def _was_interrupted(self, task: asyncio.Task[Any]) -> bool:
        """Whether aclose() cancelled ``task``'s exchange and nobody else cancelled the task
        meanwhile (that cancellation then goes on as a cancellation)."""
        if task not in self._interrupted:
            return False
        self._interrupted.discard(task)
        return task.uncancel() == 0

    async def _exchange(self, method: str, target: str, json: Any) -> Answer:
        """The one place every API request goes through: one bounded exchange, signed with a
        usable token (waited for outside the deadline: a renewal in progress has its own
        bounds, and the deadline is for the server's answer)."""
        keeper = self._keeper
        exchanger = self._exchanger
        guard: Guard = unguarded if exchanger is None else self._guard
        token = keeper.held_token()
        if token is None:
            token = await guard(keeper.current_token())
        try:
            if exchanger is None:
                auth = keeper.auth
                assert auth is not None
                return await bounded_exchange(
                    self.open_client(),
                    method,
                    target,
                    bounds=self.settings.request_bounds,
                    scrub=auth.scrub,
                    json=json,
                )
            answer = await self._signed_exchange(exchanger, method, target, json, token)
            if not keeper.refuses(answer.status_code, token):
                return answer
            try:
                fresh = await guard(keeper.token_rejected(token))
            except TokenRejectedError:
                return answer  # the caller sees the refusal as TokenRejectedError
            return await self._signed_exchange(exchanger, method, target, json, fresh)
        except TransportError:
            if self._closed():
                raise SessionClosedError(f"{method} /{target}: the session closed") from None
            raise

    async def _signed_exchange(
        self, exchanger: AiohttpExchanger, method: str, target: str, json: Any, token: AccessToken
    ) -> Answer:
        """One exchange over aiohttp, bearer-signed; its ``Date`` feeds the server clock."""
        time = self._time
        url = self._base_url() + target
        bearer = self._bearer
        if bearer is None or bearer[0] is not token:
            bearer = self._bearer = (
                token,
                {"Authorization": f"Bearer {token.access_token.reveal()}"},
            )
        task = asyncio.current_task(self._loop)
        assert task is not None
        sent = time.elapsed()
        self._exchanging.add(task)
        try:
            answer = await exchanger.exchange(
                method, url, bounds=self.settings.request_bounds, json=json, headers=bearer[1]
            )
        except asyncio.CancelledError:
            if self._was_interrupted(task):
                raise _Closed from None
            raise
        finally:
            self._exchanging.discard(task)
        if task in self._interrupted and self._was_interrupted(task):
            raise _Closed  # the exchange swallowed the cancellation
        time.observe(answer.headers.get("date"), sent=sent, received=time.elapsed())
        return answer

    def _base_url(self) -> str:
        """The REST base as text, from the httpx client's ``base_url``: the one source of it
        (apiHosts move it), turned into text again only when it was replaced."""
        client = self.client  # None once closed: open_client() then says so
        base = (client if client is not None else self.open_client()).base_url
        known = self._base
        if known is None or known[0] is not base:
            known = self._base = (base, str(base))
        return known[1]

    def _scrub(self, text: str) -> str:
        auth = self._keeper.auth
        assert auth is not None
        return auth.scrub(text)

    async def api_send(self, call: ApiCall) -> Any:
        """Send one typed-API call (see :meth:`call`)."""
        return await self.call(call.method, call.endpoint, call.query, call.body, raw_lists=True)

    async def reconcile_order(self, lost: OrderOutcomeUnknownError | str) -> Order | None:
        """See :meth:`TradovateSession.reconcile_order`: two reads through :meth:`call`."""
        cl_ord_id = lost.cl_ord_id if isinstance(lost, OrderOutcomeUnknownError) else lost
        if not cl_ord_id:
            raise ValueError(
                "this command carries no client order id (liquidateposition, order "
                "strategies): look at positions and orders instead"
            )

        async def get(endpoint: str, params: Any) -> Any:
            query = dict(params) if params else None
            return await self.call("GET", endpoint.lstrip("/"), query, None, raw_lists=False)

        found = await find_order(get, cl_ord_id)
        if found is None:
            return None
        from .api._base import decode_answer
        from .api._models import Order

        order: Order = decode_answer("order/item", found, Order)
        return order

    # -- server time (issue 9): every answer's ``Date`` is a sample of the server's clock ----

    async def _on_request(self, request: httpx.Request) -> None:
        request.extensions[_SENT_AT] = self._time.elapsed()

    async def _on_response(self, response: httpx.Response) -> None:
        sent = response.request.extensions.get(_SENT_AT)
        if isinstance(sent, float):
            received = self._time.elapsed()
            self._time.observe(response.headers.get("date"), sent=sent, received=received)
