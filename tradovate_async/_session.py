"""The session: one token, kept fresh in the background, signing every request.

:class:`TradovateSession` owns an ``httpx.AsyncClient`` and an anyio task group holding the
renewer task. All authentication goes through one single-flight path (:meth:`_refresh`): one
call at a time per session, and — through the token store's lock — one at a time per user
across every process sharing the store. Inside the lock the session looks again at its own
token and at the store before it talks to the token endpoint, so a thousand waiters, eight
processes or a fleet of machines make one token request between them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import inspect
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, Unpack

import anyio
import anyio.abc
import httpx

from ._aiohttp_exchange import AiohttpExchanger
from ._api_hosts import ResolvedEndpoints, resolve_endpoints
from ._auth import Authenticator
from ._budget import BudgetStats, MemoryBudget, RateBudget, RateLimits, budget_backend
from ._calls import CallRunner
from ._clock import SYSTEM_CLOCK, Clock
from ._config import TradovateConfig
from ._errors import (
    InvalidResponseError,
    LoginPacedError,
    OrderOutcomeUnknownError,
    SessionClosedError,
    TokenRejectedError,
    TokenStoreError,
    TradovateError,
    TransportError,
)
from ._http import REQUEST_BOUNDS, TOKEN_BOUNDS, Answer, ExchangeBounds, bounded_exchange
from ._models import AccessToken, UserInfo
from ._options import (
    DEFAULT_PENALTIES,
    DEFAULT_RENEWAL_BACKOFF,
    DEFAULT_TIMEOUTS,
    Backoff,
    Timeouts,
    TimeoutsLike,
    Verify,
    check_seconds,
    ssl_context,
)
from ._orders import OrderDefaults, find_order, normalize
from ._penalty import PenaltyPolicy
from ._retry import RetryPolicy
from ._schedule import Blocked, Login, LoginPacing, Renew, RenewalSchedule, Wait, is_permanent
from ._server_time import SessionTime
from ._store import MemoryTokenStore, TokenStore
from ._tasks import TaskHost
from .api import Api, ApiCall
from .api._base import BoundTransport, decode_answer
from .api._models import Order

if TYPE_CHECKING:
    from ._account_state import AccountState
    from ._market_data import MarketData
    from ._replay import ReplaySession
    from ._ws import SocketKind, TradovateWebSocket, WebSocketOptions

__all__ = ["BearerAuth", "SessionStats", "TradovateSession"]

logger = logging.getLogger(__name__)

Reason = Literal["start", "renew", "expired", "rejected"]
_SENT_AT = "tradovate_async.sent_at"  # request extension: elapsed time the request was sent
_PROBE_INTERVAL = 10.0  # seconds between two reads of the server's clock on purpose
TokenListener = Callable[[AccessToken], object]


def _is_async_callable(obj: object) -> bool:
    call = getattr(obj, "__call__", None)  # noqa: B004 - an async __call__ counts too
    return inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(call)


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


@dataclasses.dataclass(slots=True)
class SessionStats:
    """Counters of what the session did with the token endpoint."""

    logins: int = 0
    renewals: int = 0
    adopted_from_store: int = 0
    transient_failures: int = 0
    permanent_failures: int = 0
    store_errors: int = 0
    rejected_tokens: int = 0
    paced_logins: int = 0
    read_retries: int = 0
    outcome_unknown: int = 0
    budget: BudgetStats = dataclasses.field(default_factory=BudgetStats)


class BearerAuth(httpx.Auth):
    """Signs each request with the session's current token.

    It does I/O (it may wait for a renewal), so it implements ``async_auth_flow`` only. On a
    401 from a request signed with the token that is still current it asks the session for a
    renewal (single-flight) and resends once; if the token had already been replaced it simply
    resends with the new one. Transport errors are never retried here.
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(self, session: TradovateSession) -> None:
        self._session = session

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        raise RuntimeError("BearerAuth works only with httpx.AsyncClient")
        yield request  # pragma: no cover

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self._session.current_token()
        request.headers["Authorization"] = f"Bearer {token.access_token.reveal()}"
        response = yield request
        if not self._session.refuses(response.status_code, token):
            return
        try:
            fresh = await self._session.token_rejected(token)
        except TokenRejectedError:
            return  # the caller sees the 401 as TokenRejectedError
        request.headers["Authorization"] = f"Bearer {fresh.access_token.reveal()}"
        yield request


class TradovateSession:
    """An authenticated connection to one Tradovate environment.

    ``async with TradovateSession(config) as session:`` returns once a usable token is held:
    from the store when one is still fresh, else by renewing the stored one, else by a login.
    A background task renews it at ``expiration − renew_before`` (with a little jitter), falls
    back to a login only when renewal is refused or the token has expired, backs off on
    transient failures while the old token keeps serving, and stops on permanent failures
    (bad credentials, captcha, lockout) so that requests raise that error instead of hammering
    the token endpoint.

    Args:
        config: credentials and endpoints.
        store: where the token is shared (default: a new :class:`MemoryTokenStore`). The session
            does not close a store it was given.
        renew_before: renewal margin before expiry, seconds (default 300: 85 of 90 minutes).
        jitter: fraction of the margin added at random so a fleet does not renew at once.
        renewal_backoff: retry delays after a transient renewal failure (default 1 s to 60 s).
        renewals_per_hour: the renewal budget (the server allows 15 an hour).
        check_interval: longest sleep of the renewer between looks at the wall clock, so a
            suspended machine renews at once on wake-up.
        penalties: how far a login or renewal waits out ``p-ticket`` penalties.
        timeout: :class:`Timeouts` (or seconds) for every HTTP exchange.
        verify: ``True`` (system CAs), a CA bundle path, or an ``ssl.SSLContext``. ``False``
            is refused: TLS verification is never turned off. Sockets inherit it.
        limits: the HTTP connection pool's limits.
        token_bounds, request_bounds: total deadline and body cap of each token exchange
            (default 30 s, 64 KiB) and each REST call (60 s, 64 MiB); see
            :class:`ExchangeBounds`. ``timeout`` bounds each network operation within them.
        rate_limits: the user's request budget, shared through ``store`` by every session,
            socket and process of the user (``None``: no local budget).
        retry: how reads are retried (commands never are).
        order_defaults: ``isAutomated`` and client order ids added to order commands.
        clock: the :class:`~tradovate_async._clock.Clock` for wall time and sleeps (tests pass a
            fake or a warped one).
        rng: random source for jitter (tests seed it).
        use_api_hosts: build REST and WebSocket URLs from the ``apiHosts`` of token answers
            (the server's per-user hosts; see :attr:`endpoints`). ``False`` keeps the
            configured URLs whatever the server says.
        max_logins_per_hour, login_pause: the login pacing floor: at most this many successful
            logins of the user in any rolling hour, and this many seconds between two, whatever
            asks for them (beyond it: :class:`LoginPacedError` and a WARNING).

    Token time is the server's time: every answer's ``Date`` header keeps an estimate of the
    server's clock on the host's elapsed time, and expiry, renewal and stored tokens are judged
    on it (see the README, "How time is handled").
    """

    def __init__(
        self,
        config: TradovateConfig,
        *,
        store: TokenStore | None = None,
        renew_before: float = 300.0,
        jitter: float = 0.1,
        renewal_backoff: Backoff = DEFAULT_RENEWAL_BACKOFF,
        renewals_per_hour: int = 15,
        check_interval: float = 5.0,
        penalties: PenaltyPolicy = DEFAULT_PENALTIES,
        timeout: TimeoutsLike = DEFAULT_TIMEOUTS,
        verify: Verify = True,
        limits: httpx.Limits | None = None,
        token_bounds: ExchangeBounds = TOKEN_BOUNDS,
        request_bounds: ExchangeBounds = REQUEST_BOUNDS,
        rate_limits: RateLimits | None = RateLimits(),  # noqa: B008 - frozen
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen
        order_defaults: OrderDefaults = OrderDefaults(),  # noqa: B008 - frozen
        clock: Clock = SYSTEM_CLOCK,
        max_logins_per_hour: int = 4,
        login_pause: float = 60.0,
        rng: random.Random | None = None,
        use_api_hosts: bool = True,
        http_backend: Literal["aiohttp", "httpx"] = "aiohttp",
    ) -> None:
        self.config = config
        self._owns_store = store is None
        self._store: TokenStore = store if store is not None else MemoryTokenStore()
        self._timeouts: Timeouts = Timeouts.of(timeout)
        self._verify = verify
        self._ssl_context = ssl_context(verify)
        self._limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        if http_backend not in ("aiohttp", "httpx"):
            raise ValueError("http_backend must be 'aiohttp' or 'httpx'")
        self._http_backend = http_backend
        self._exchanger: AiohttpExchanger | None = None
        self._token_bounds = token_bounds
        self._request_bounds = request_bounds
        self._penalty_policy = penalties
        self._check_interval = check_seconds("check_interval", check_interval)
        # --- server time (issue 9): every decision reads the server's time from self._clock ---
        self._time = SessionTime(clock)
        self._clock: Clock = self._time
        self._pacing = LoginPacing(max_logins_per_hour, login_pause)
        self._probe_not_before: float | None = None
        self._schedule = RenewalSchedule(
            dt.timedelta(seconds=check_seconds("renew_before", renew_before)),
            jitter=jitter,
            renewals_per_hour=renewals_per_hour,
            backoff_initial=dt.timedelta(seconds=renewal_backoff.initial),
            backoff_max=dt.timedelta(seconds=renewal_backoff.maximum),
            rng=rng,
        )
        self.stats = SessionStats()
        self._state = _State.UNOPENED
        self._token: AccessToken | None = None
        self._last_error: TradovateError | None = None
        # The token a refusal-driven refresh produced, and when: refusing it again at once is
        # a permission problem, not an expiry.
        self._rejection_refresh: tuple[AccessToken | None, dt.datetime | None] = (None, None)
        self._listeners: list[TokenListener] = []
        self._client: httpx.AsyncClient | None = None
        self._auth: Authenticator | None = None
        self._auth_lock: anyio.Lock | None = None
        self._tasks = TaskHost()
        self._in_flight: set[anyio.CancelScope] = set()
        self._use_api_hosts = use_api_hosts
        self._endpoints = resolve_endpoints(config, None)
        self._api: Api | None = None
        self.order_defaults = order_defaults
        self.budget: RateBudget | None = None
        if rate_limits is not None:
            self.budget = RateBudget(
                rate_limits,
                budget_backend(self._store) or MemoryBudget(),
                f"{config.api_url}|{config.username}",
                clock=lambda: self._clock.now().timestamp(),
                sleep=self._clock.sleep,
                poll=min(check_interval, 1.0),
            )
            self.stats.budget = self.budget.stats
        self._calls = CallRunner(
            budget=self.budget,
            retry=retry,
            penalty_policy=self._penalty_policy,
            order_defaults=order_defaults,
            stats=self.stats,
            clock=self._clock,
            rng=rng or random.Random(),
            closed=lambda: self._state is _State.CLOSED,
        )

    def __repr__(self) -> str:
        expiry = self._token.expiration_time.isoformat() if self._token else None
        return (
            f"TradovateSession(user={self.config.username!r}, api_url={self.config.api_url!r}, "
            f"state={self._state.value}, token_expires={expiry!r})"
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state is not _State.UNOPENED:
            raise SessionClosedError(
                "a TradovateSession can be opened once; create a new one"
                if self._state is _State.CLOSED
                else "this TradovateSession is already open"
            )
        self._state = _State.OPENED
        self._auth_lock = anyio.Lock()
        timeouts = self._timeouts
        self._client = httpx.AsyncClient(
            base_url=self.config.api_url + "/",
            auth=BearerAuth(self),
            headers={"Accept": "application/json"},
            timeout=httpx.Timeout(
                timeouts.request, connect=timeouts.connect_seconds, pool=timeouts.request
            ),
            verify=self._ssl_context if self._ssl_context is not None else True,
            limits=self._limits,
            event_hooks={"request": [self._on_request], "response": [self._on_response]},
        )
        self._auth = Authenticator(
            self.config,
            self._client,
            penalty_policy=self._penalty_policy,
            clock=self._clock,
            bounds=self._token_bounds,
        )
        if self._http_backend == "aiohttp":
            self._exchanger = AiohttpExchanger(
                ssl_context=self._ssl_context, limits=self._limits, timeouts=timeouts
            )
            await self._exchanger.open()
        try:
            await self._tasks.open(self._renew_forever)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._shutdown()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the renewer, fail requests in flight with :class:`SessionClosedError`, close the
        HTTP client. Idempotent; the session cannot reopen.

        Safe from any task: the renewer is stopped and awaited whoever calls; the task group is
        released by the opener when it leaves ``async with`` (at once if it is the caller).
        """
        if self._state is _State.CLOSED:
            await self._tasks.stop()  # the opener leaving after another task closed
            return
        self._state = _State.CLOSED
        for scope in list(self._in_flight):
            scope.cancel()
        try:
            await self._tasks.stop()
        finally:
            with anyio.CancelScope(shield=True):
                await self._shutdown()

    async def _shutdown(self) -> None:
        self._state = _State.CLOSED
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
        exchanger, self._exchanger = self._exchanger, None
        if exchanger is not None:
            await exchanger.aclose()
        if self._owns_store:
            await self._store.aclose()

    def _check_open(self) -> None:
        if self._state is not _State.OPENED:
            raise SessionClosedError(
                "the session is closed"
                if self._state is _State.CLOSED
                else "the session is not open: use 'async with TradovateSession(...)'"
            )

    # -- public API -------------------------------------------------------------------------

    @property
    def token(self) -> AccessToken:
        """The current token (it may be due for renewal; requests wait for a usable one)."""
        self._check_open()
        assert self._token is not None
        return self._token

    @property
    def http(self) -> httpx.AsyncClient:
        """The underlying client, bearer-signed, with ``base_url`` set to the REST base."""
        self._check_open()
        assert self._client is not None
        return self._client

    @property
    def endpoints(self) -> ResolvedEndpoints:
        """The URLs in use: the configured ones, or the hosts the server named in the
        ``apiHosts`` of its token answers (kept when a later answer names none)."""
        return self._endpoints

    @property
    def store(self) -> TokenStore:
        """The token store this session shares its token through."""
        return self._store

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """Send a bearer-signed request and return its parsed JSON.

        A 200 with ``errorText``, an order result whose ``failureReason`` is not ``Success``,
        ``violations``, and every non-2xx answer raise typed errors. List parameters go out as
        the documentation writes them (``ids=1,2,3``). A time penalty (``p-ticket``) is waited
        out and the identical request resent with the ticket, within the same bounds as a login
        (the penalised request was not executed); ``p-captcha`` raises
        :class:`CaptchaRequiredError`.

        Every request first takes its place in the user's request budget (``rate_limits``).
        Reads (``*/list``, ``*/item``, ``auth/me``...) are retried on transport errors, 408 and
        5xx as ``retry`` says. Anything else is a command and is never sent twice: a transport
        failure raises :class:`TransportError`; an order command is validated and labelled
        (``isAutomated``, ``clOrdId``) first, and a lost answer raises
        :class:`OrderOutcomeUnknownError` — see :meth:`reconcile_order`.
        """
        relative = path.lstrip("/")
        return await self._call(method, relative, params, json, raw_lists=False)

    async def _call(
        self,
        method: str,
        relative: str,
        params: Mapping[str, Any] | None,
        json: Any,
        *,
        raw_lists: bool,
    ) -> Any:
        """One request, cancelled by ``aclose()``. With ``raw_lists`` a successful list answer
        comes back as its JSON text, for the typed API to decode straight from bytes."""
        outcome: Any = None
        with anyio.CancelScope() as scope:
            self._in_flight.add(scope)
            try:
                self._check_open()
                outcome = await self._calls.call(
                    self._exchange, self._scrub, method, relative, params, json, raw_lists
                )
            finally:
                self._in_flight.discard(scope)
        if scope.cancelled_caught:  # aclose() (from this or another task) cancelled it
            raise SessionClosedError(f"{method} /{relative}: the session closed")
        return outcome

    async def _exchange(self, method: str, target: str, json: Any) -> Answer:
        """The one place every API request goes through: one bounded exchange, signed with a
        usable token (waited for outside the deadline: a renewal in progress has its own
        bounds, and the deadline is for the server's answer)."""
        auth = self._auth
        assert auth is not None
        token = await self.current_token()
        try:
            exchanger = self._exchanger
            if exchanger is None:
                return await bounded_exchange(
                    self.http,
                    method,
                    target,
                    bounds=self._request_bounds,
                    scrub=auth.scrub,
                    json=json,
                )
            answer = await self._signed_exchange(exchanger, method, target, json, token)
            if not self.refuses(answer.status_code, token):
                return answer
            try:
                fresh = await self.token_rejected(token)
            except TokenRejectedError:
                return answer  # the caller sees the refusal as TokenRejectedError
            return await self._signed_exchange(exchanger, method, target, json, fresh)
        except TransportError:
            if self._state is _State.CLOSED:
                raise SessionClosedError(f"{method} /{target}: the session closed") from None
            raise

    async def _signed_exchange(
        self, exchanger: AiohttpExchanger, method: str, target: str, json: Any, token: AccessToken
    ) -> Answer:
        """One exchange over aiohttp, bearer-signed; its ``Date`` feeds the server clock."""
        sent = self._time.elapsed()
        answer = await exchanger.exchange(
            method,
            f"{self.http.base_url}{target}",  # one source of the REST base (apiHosts move it)
            bounds=self._request_bounds,
            json=json,
            headers={"Authorization": f"Bearer {token.access_token.reveal()}"},
        )
        self._time.observe(answer.headers.get("date"), sent=sent, received=self._time.elapsed())
        return answer

    def _scrub(self, text: str) -> str:
        auth = self._auth
        assert auth is not None
        return auth.scrub(text)

    async def reconcile_order(self, lost: OrderOutcomeUnknownError | str) -> Order | None:
        """Find out what became of an order command whose answer was lost.

        ``lost`` is the :class:`OrderOutcomeUnknownError` (or its ``cl_ord_id``). Returns the
        :class:`~tradovate_async.api.Order` the command created or changed, or ``None`` if
        Tradovate has no command with that client order id (it never arrived: placing it again
        is safe). Two reads: ``command/list`` and ``order/item``.
        """
        cl_ord_id = lost.cl_ord_id if isinstance(lost, OrderOutcomeUnknownError) else lost
        if not cl_ord_id:
            raise ValueError(
                "this command carries no client order id (liquidateposition, order "
                "strategies): look at positions and orders instead"
            )

        async def get(endpoint: str, params: Any) -> Any:
            return await self.request("GET", endpoint, params=dict(params) if params else None)

        found = await find_order(get, cl_ord_id)
        return None if found is None else decode_answer("order/item", found, Order)

    # -- hooks for the sockets of this session ---------------------------------------------

    async def spend_request(self, endpoint: str, *, command: bool) -> None:
        """Take a socket request from the user's budget (see ``rate_limits``)."""
        if self.budget is not None:
            await self.budget.acquire(normalize(endpoint), command=command)

    @property
    def api(self) -> Api:
        """The typed API over REST: ``await session.api.account.list()``."""
        if self._api is None:
            self._api = Api(BoundTransport(self._api_send))
        return self._api

    async def _api_send(self, call: ApiCall) -> Any:
        """Send one typed-API call (see :meth:`_call`)."""
        return await self._call(call.method, call.endpoint, call.query, call.body, raw_lists=True)

    async def get(self, path: str, *, params: dict[str, Any] | None = None) -> Any:
        """``GET path`` with the bearer token; the decoded JSON answer."""
        return await self.request("GET", path, params=params)

    async def post(
        self, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        """``POST path`` with a JSON body and the bearer token; the decoded answer."""
        return await self.request("POST", path, params=params, json=json)

    async def me(self) -> UserInfo:
        """``GET /auth/me`` as a :class:`UserInfo`."""
        data = await self.get("auth/me")
        if not isinstance(data, dict):
            raise InvalidResponseError("/auth/me answer is not a JSON object")
        try:
            return UserInfo.from_response(data)
        except ValueError as exc:
            raise InvalidResponseError(f"/auth/me answer unusable ({exc})") from None

    def websocket(
        self,
        kind: SocketKind = "trading",
        *,
        url: str | None = None,
        **options: Unpack[WebSocketOptions],
    ) -> TradovateWebSocket:
        """A WebSocket bound to this session's token (use it with ``async with``).

        ``kind="trading"`` connects to ``config.ws_url``, ``"md"`` to ``config.md_url`` (with the
        market-data token), ``"replay"`` to ``config.replay_url``; ``url=`` overrides. The
        options are :class:`TradovateWebSocket`'s (typed: a misspelt one fails type checking);
        ``verify`` defaults to the session's. The socket's ``clock`` is not inherited: heartbeats
        and silence are real-time rules of the server, while a session's clock may be warped.
        """
        from ._ws import TradovateWebSocket

        self._check_open()
        if url is None:
            urls = self._endpoints
            url = {"md": urls.md_url, "replay": urls.replay_url}.get(kind, urls.ws_url)
        options.setdefault("verify", self._verify)
        return TradovateWebSocket(self, url=url, kind=kind, **options)

    def market_data(self, **options: Unpack[WebSocketOptions]) -> MarketData:
        """Typed market data over a new market-data socket (use it with ``async with``).

        Symbols are resolved with ``contract/find`` over REST; ``options`` go to the socket
        (see :meth:`websocket`). See :class:`~tradovate_async.MarketData`.
        """
        from ._market_data import MarketData, session_resolver

        return MarketData(
            self.websocket(kind="md", **options), resolve=session_resolver(self), own_socket=True
        )

    def replay(
        self,
        *,
        start: dt.datetime | str,
        speed: float = 100,
        initial_balance: float = 50_000,
        **options: Unpack[WebSocketOptions],
    ) -> ReplaySession:
        """A market replay from ``start`` at ``speed`` percent of real time (``async with``):
        ``replay.md`` and ``replay.account_state()`` work as live. See
        :class:`~tradovate_async.ReplaySession`."""
        from ._replay import ReplaySession

        self._check_open()
        return ReplaySession(
            self, start=start, speed=speed, initial_balance=initial_balance, **options
        )

    def account_state(
        self, *, market_data: MarketData | None = None, **options: Any
    ) -> AccountState:
        """A live mirror of the user's accounts over a new trading socket (``async with``).

        With ``market_data``, open P&L follows live quotes. ``options`` go to the socket. See
        :class:`~tradovate_async.AccountState`.
        """
        from ._account_state import AccountState

        self._check_open()
        return AccountState(
            self.websocket(kind="trading", **options),
            sync_body={"users": [self.token.user_id]},
            own_socket=True,
            market_data=market_data,
        )

    def add_token_listener(self, listener: TokenListener) -> Callable[[], None]:
        """Call ``listener(token)`` for every new token (login, renewal, adoption from the store).

        Listeners are plain functions, called in the renewing task; they must not block. A
        coroutine function is refused with ``TypeError`` (its coroutine would never be
        awaited): to do async work, start a task from the listener or read ``session.token``.
        Returns a function that removes the listener. Exceptions in listeners are logged.
        """
        if _is_async_callable(listener):
            raise TypeError(
                "add_token_listener takes a plain function, not a coroutine function: "
                "its coroutine would never be awaited"
            )
        self._listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    # -- TokenSource (used by BearerAuth and WebSockets) ------------------------------------

    async def current_token(self) -> AccessToken:
        """A token usable right now, waiting for (or doing) the single-flight refresh if needed.

        Raises the standing permanent error (bad credentials, captcha, lockout) if there is one.
        """
        self._check_open()
        now = self._clock.now()
        blocked = self._schedule.blocked(now)
        if blocked is not None:
            raise blocked.error
        token = self._token
        if token is not None and self._schedule.is_usable(token, now):
            return token
        return await self._refresh(token, "expired")

    def refuses(self, status: int, token: AccessToken) -> bool:
        """Whether an answer with ``status`` to a request signed with ``token`` refuses the
        token: a 401, or a 400 once that token is spent (Tradovate answers an expired token
        with either; any other 400 is the request's own fault)."""
        return status == 401 or (status == 400 and self.token_spent(token))

    def token_spent(self, token: AccessToken) -> bool:
        """Whether ``token`` had expired (or was within the safety margin) by now.

        The documentation says an expired token gets "400 or 401". A 400 is also the answer to a
        malformed request, and no public recording shows the body of the expired-token 400, so
        a 400 counts as a refused token only when the token that signed the request was spent;
        any other 400 is the request's own fault and is never answered with a renewal.
        """
        return not self._schedule.is_usable(token, self._clock.now())

    async def token_rejected(self, token: AccessToken) -> AccessToken:
        """The server refused ``token``: renew it once (single-flight) and return the current one.

        If the token was already replaced, the current one is returned at once. If the refused
        token is the very one such a renewal produced, less than ``min(60 s, lifetime / 10)``
        ago, the refusal points to permissions or the wrong environment, not to expiry: this
        raises :class:`TokenRejectedError` instead of burning the renewal budget.
        """
        self._check_open()
        now = self._clock.now()
        current = self._token
        if current is not None and current is not token and self._schedule.is_usable(current, now):
            return current
        self.stats.rejected_tokens += 1
        product, when = self._rejection_refresh
        if (
            token is product
            and when is not None
            and now - when < self._schedule.rejection_grace(token)
        ):
            raise TokenRejectedError(
                "the server refused the token obtained moments ago after a refusal; not "
                "renewing again. Either another login of this user keeps ending this session "
                "(at most 2 sessions per user: share one token store between processes), or the "
                "API key lacks permissions or points at the wrong environment (live/demo)"
            )
        fresh = await self._refresh(token, "rejected")
        if fresh is not product:
            self._rejection_refresh = (fresh, self._clock.now())
        return fresh

    # -- single-flight refresh --------------------------------------------------------------

    async def _refresh(self, seen: AccessToken | None, reason: Reason) -> AccessToken:
        lock = self._auth_lock
        assert lock is not None
        async with lock:
            if self._time.needs_sample():  # the host's clock jumped: re-read the server's
                await self._sample_server_time()
                now, current = self._clock.now(), self._token
                if (
                    current is not None
                    and current is seen
                    and reason in ("expired", "renew")
                    and self._schedule.is_usable(current, now)
                    and (reason == "expired" or now < self._schedule.renew_at(current))
                ):
                    return current
            now = self._clock.now()
            current = self._token
            if (
                current is not None
                and current is not seen
                and self._schedule.is_usable(current, now)
            ):
                return current
            blocked = self._schedule.blocked(now)
            if blocked is not None:
                raise blocked.error
            if reason in ("expired", "rejected") and self._last_error is not None:
                if self._schedule.retry_pending(now):
                    # Requests do not hammer the token endpoint while the renewer backs off.
                    raise self._last_error
            # Without the store's lock a fleet sharing one token would renew it several times
            # over, each renewal retiring the others' token: while the token has plenty of life
            # left, a scheduled renewal waits for the store to come back instead.
            may_defer = reason == "renew" and self._schedule.may_defer(current, now)
            try:
                async with self._store_lock(may_defer=may_defer):
                    token, how = await self._obtain(seen, reason)
            except TradovateError as exc:
                self._last_error = exc
                self._record_failure(exc, current)
                raise
            self._last_error = None
            self._publish(token)
            if how == "login":
                self.stats.logins += 1
            elif how == "renewal":
                self.stats.renewals += 1
            else:
                self.stats.adopted_from_store += 1
            return token

    async def _obtain(
        self, seen: AccessToken | None, reason: Reason
    ) -> tuple[AccessToken, Literal["adopted", "renewal", "login"]]:
        """Inside both locks: adopt the stored token, renew, or log in."""
        auth = self._auth
        assert auth is not None
        now = self._clock.now()
        current = self._token
        stored = await self._store_load()
        if stored is not None and not self._time.known:
            # A stored record is judged on the server's clock: read it first (one request).
            await self._sample_server_time()
            now = self._clock.now()
        self._merge_login_history(stored)
        if (
            stored is not None
            and (seen is None or stored.access_token != seen.access_token)
            and (current is None or stored.expiration_time >= current.expiration_time)
            and self._schedule.is_usable(stored, now)
        ):
            current = stored
            if reason in ("expired", "rejected") or self._schedule.is_fresh(stored, now):
                logger.debug("adopted the token from the store")
                return stored, "adopted"
        elif current is None and stored is not None and not stored.is_expired(now):
            current = stored  # not usable for requests any more, but still renewable

        if current is not None and not current.is_expired(now):
            if self._schedule.budget_free_at(now) is None:
                self._schedule.record_renewal_attempt(now)
                try:
                    token = await auth.renew(current)
                except TokenRejectedError as exc:
                    logger.warning("renewal refused (%s); logging in again", exc)
                else:
                    token = self._stamped(token)
                    await self._store_save(token)
                    return token, "renewal"
            else:
                logger.warning(
                    "renewal budget (%d/h) spent; logging in instead",
                    self._schedule.renewals_per_hour,
                )
        self._check_login_pacing()
        token = await auth.login()
        self._pacing.record(self._time.steady())
        token = self._stamped(token)
        await self._store_save(token)
        return token, "login"

    def _record_failure(self, error: TradovateError, current: AccessToken | None) -> None:
        now = self._clock.now()
        if isinstance(error, LoginPacedError):  # no login until the floor allows one
            self.stats.paced_logins += 1
            self._schedule.on_paced(now + error.retry_after)
            logger.warning("%s", error)
            return
        if is_permanent(error):
            self.stats.permanent_failures += 1
            blocked = self._schedule.on_permanent_failure(error, now)
            until = blocked.until.isoformat() if blocked.until else "the session is recreated"
            logger.error(
                "authentication failed for good (%s); no retry until %s",
                type(error).__name__,
                until,
            )
            return
        self.stats.transient_failures += 1
        retry_at = self._schedule.on_transient_failure(now, current)
        left = current.expires_in(now).total_seconds() if current is not None else 0.0
        logger.warning(
            "authentication failed (%s: %s); token valid for %.0f s more; retrying in %.1f s",
            type(error).__name__,
            error,
            max(left, 0.0),
            (retry_at - now).total_seconds(),
        )

    def _publish(self, token: AccessToken) -> None:
        auth = self._auth
        assert auth is not None
        previous, self._token = self._token, token
        auth.remember_token(token)
        self._schedule.on_success()
        if self._use_api_hosts and token.api_hosts:
            self._apply_endpoints(resolve_endpoints(self.config, token))
        if previous is not None and previous.access_token == token.access_token:
            return
        logger.info("new token in use; expires %s", token.expiration_time.isoformat())
        for listener in list(self._listeners):
            try:
                result = listener(token)
            except Exception:
                logger.exception("token listener failed")
                continue
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()  # never awaited: close it instead of leaking a warning
                logger.error(
                    "token listener %r returned an awaitable; it was not awaited", listener
                )

    def _apply_endpoints(self, endpoints: ResolvedEndpoints) -> None:
        """Move requests, renewals and new sockets to the hosts the server named."""
        previous, self._endpoints = self._endpoints, endpoints
        if endpoints == previous:
            return
        logger.info(
            "the server's apiHosts move this session to %s (trading socket %s, market data %s)",
            endpoints.api_url,
            endpoints.ws_url,
            endpoints.md_url,
        )
        auth = self._auth
        if endpoints.api_url != previous.api_url and self._client is not None and auth is not None:
            self._client.base_url = httpx.URL(endpoints.api_url + "/")
            auth.api_url = endpoints.api_url

    # -- server time (issue 9) --------------------------------------------------------------

    async def _on_request(self, request: httpx.Request) -> None:
        request.extensions[_SENT_AT] = self._time.elapsed()

    async def _on_response(self, response: httpx.Response) -> None:
        """Every answer's ``Date`` is a sample of the server's clock."""
        sent = response.request.extensions.get(_SENT_AT)
        if isinstance(sent, float):
            received = self._time.elapsed()
            self._time.observe(response.headers.get("date"), sent=sent, received=received)

    def elapsed_stamp(self) -> float:
        """The host's elapsed time, for a socket to date its handshake (:meth:`observe_date`)."""
        return self._time.elapsed()

    def observe_date(self, header: str | None, *, sent: float) -> None:
        """A ``Date`` header received now, in answer to something sent at ``sent``
        (:meth:`elapsed_stamp`): the WebSocket handshake feeds the server-clock estimate too."""
        self._time.observe(header, sent=sent, received=self._time.elapsed())

    async def _sample_server_time(self) -> None:
        """Read the server's clock from any answer of the API host: an unauthenticated
        ``GET`` of the REST base, whose answer (a 404 is as good as any) carries ``Date``.
        At most one every ``_PROBE_INTERVAL`` seconds; a failure leaves the estimate as is."""
        elapsed = self._time.elapsed()
        if self._probe_not_before is not None and elapsed < self._probe_not_before:
            return
        self._probe_not_before = elapsed + _PROBE_INTERVAL
        client = self._client
        assert client is not None
        try:
            await client.get(client.base_url, auth=None)
        except httpx.HTTPError as exc:
            logger.info("could not read the server's clock (%s)", type(exc).__name__)

    def _stamped(self, token: AccessToken) -> AccessToken:
        """``token`` with the clock facts a token store keeps for other processes."""
        return dataclasses.replace(
            token,
            issued_on_server_clock=self._time.known,
            host_clock_offset=self._time.host_offset(),
            login_times=self._login_times(),
        )

    def _check_login_pacing(self) -> None:
        wait = self._pacing.wait_before_login(self._time.steady())
        if wait > 0:
            raise LoginPacedError(
                f"login refused by the pacing floor: at most {self._pacing.per_hour} successful "
                f"logins an hour, {self._pacing.pause:g} s apart; next one allowed in "
                f"{wait:.0f} s. Something keeps asking for logins: look for another process of "
                "this user without a shared token store, or a session that keeps being refused",
                retry_after=dt.timedelta(seconds=wait),
            )

    def _merge_login_history(self, stored: AccessToken | None) -> None:
        """Logins other processes recorded in the shared token record count here too."""
        if stored is None or not stored.login_times:
            return
        wall, steady = self._clock.now(), self._time.steady()
        for at in stored.login_times:
            self._pacing.record(steady - (wall.timestamp() - at))

    def _login_times(self) -> tuple[float, ...]:
        """This user's recent logins on the server's clock, for the shared record."""
        now, steady = self._clock.now().timestamp(), self._time.steady()
        return tuple(now - (steady - at) for at in self._pacing.history(steady))

    # -- store access that never takes the session down -------------------------------------

    @contextlib.asynccontextmanager
    async def _store_lock(self, *, may_defer: bool = False) -> AsyncIterator[None]:
        lock_cm = self._store.lock(self.config.token_key)
        try:
            await lock_cm.__aenter__()
        except TokenStoreError as exc:
            self.stats.store_errors += 1
            if may_defer:
                logger.warning("token store lock unavailable (%s); renewal deferred", exc)
                raise
            logger.warning("token store lock unavailable (%s); going on without it", exc)
            yield
            return
        try:
            yield
        finally:
            try:
                await lock_cm.__aexit__(None, None, None)
            except TokenStoreError as exc:
                self.stats.store_errors += 1
                logger.warning("token store lock release failed: %s", exc)

    async def _store_load(self) -> AccessToken | None:
        try:
            return await self._store.load(self.config.token_key)
        except TokenStoreError as exc:
            self.stats.store_errors += 1
            logger.warning("token store unreadable (%s); going on without it", exc)
            return None

    async def _store_save(self, token: AccessToken) -> None:
        try:
            await self._store.save(self.config.token_key, token)
        except TokenStoreError as exc:
            self.stats.store_errors += 1
            logger.warning("token store write failed (%s); the token is kept in memory", exc)

    # -- the renewer task -------------------------------------------------------------------

    async def _renew_forever(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        await self._refresh(None, "start")
        task_status.started()
        while True:
            now = self._clock.now()
            action = self._schedule.next_action(self._token, now)
            if isinstance(action, Wait | Blocked):
                until = action.until
                delay = self._check_interval
                if until is not None:
                    delay = min(delay, max((until - now).total_seconds(), 0.001))
                await self._clock.sleep(delay)
                continue
            assert isinstance(action, Renew | Login)
            try:
                await self._refresh(
                    self._token, "renew" if isinstance(action, Renew) else "expired"
                )
            except TradovateError:
                pass  # recorded in the schedule and logged by _record_failure
            except Exception:
                # A bug or an unforeseen answer must not end the renewer: its task group would
                # cancel the bot's own task. Log it and back off as after a transient failure.
                logger.exception("unexpected error while renewing the token; retrying later")
                self.stats.transient_failures += 1
                self._schedule.on_transient_failure(self._clock.now(), self._token)
