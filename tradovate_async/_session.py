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
import logging
import random
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

import anyio
import anyio.abc
import httpx

from ._api_hosts import ResolvedEndpoints, resolve_endpoints
from ._auth import Authenticator, utc_now
from ._auth_core import PenaltyPolicy
from ._config import TradovateConfig
from ._errors import (
    InvalidResponseError,
    SessionClosedError,
    TokenRejectedError,
    TokenStoreError,
    TradovateError,
    TransportError,
    is_permanent,
)
from ._models import AccessToken, UserInfo
from ._responses import Penalty, encode_params, interpret_api_response, with_ticket
from ._schedule import Blocked, Login, Renew, RenewalSchedule, Wait
from ._store import MemoryTokenStore, TokenStore

if TYPE_CHECKING:
    from ._market_data import MarketData
    from ._ws import TradovateWebSocket

__all__ = ["BearerAuth", "SessionStats", "TradovateSession"]

logger = logging.getLogger(__name__)

Reason = Literal["start", "renew", "expired", "rejected"]
TokenListener = Callable[[AccessToken], object]


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
        if response.status_code != 401 and not (
            response.status_code == 400 and self._session.token_spent(token)
        ):
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
        renew_before: renewal margin before expiry (default 5 minutes: 85 of 90).
        jitter: fraction of the margin added at random so a fleet does not renew at once.
        timeout: HTTP timeout in seconds.
        verify: ``True`` (system CAs), a CA bundle path, or an ``ssl.SSLContext``. ``False``
            is refused: TLS verification is never turned off.
        max_penalty_rounds, max_penalty_wait: how far a login waits out ``p-ticket`` penalties.
        check_interval: longest sleep of the renewer between looks at the wall clock, so a
            suspended machine renews at once on wake-up.
        backoff_initial, backoff_max: retry delays (seconds) after a transient renewal failure.
        renewals_per_hour: the renewal budget (the server allows 15 an hour).
        clock: wall clock returning an aware UTC datetime (tests move it).
        rng: random source for jitter (tests seed it).
        use_api_hosts: build REST and WebSocket URLs from the ``apiHosts`` of token answers
            (the server's per-user hosts; see :attr:`endpoints`). ``False`` keeps the
            configured URLs whatever the server says.
    """

    def __init__(
        self,
        config: TradovateConfig,
        *,
        store: TokenStore | None = None,
        renew_before: dt.timedelta = dt.timedelta(minutes=5),
        jitter: float = 0.1,
        timeout: float | httpx.Timeout = 10.0,
        verify: ssl.SSLContext | str | bool = True,
        max_penalty_rounds: int = 3,
        max_penalty_wait: float = 120.0,
        check_interval: float = 5.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        renewals_per_hour: int = 15,
        limits: httpx.Limits | None = None,
        clock: Callable[[], dt.datetime] = utc_now,
        rng: random.Random | None = None,
        use_api_hosts: bool = True,
    ) -> None:
        if verify is False:
            raise ValueError("TLS verification cannot be turned off (verify=False)")
        if check_interval <= 0:
            raise ValueError("check_interval must be positive")
        self.config = config
        self._owns_store = store is None
        self._store: TokenStore = store if store is not None else MemoryTokenStore()
        self._timeout = timeout
        self._ssl_context: ssl.SSLContext | None = (
            ssl.create_default_context(cafile=verify)
            if isinstance(verify, str)
            else verify
            if isinstance(verify, ssl.SSLContext)
            else None
        )
        self._limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self._penalty_policy = PenaltyPolicy(max_penalty_rounds, max_penalty_wait)
        self._check_interval = check_interval
        self._clock = clock
        self._schedule = RenewalSchedule(
            renew_before,
            jitter=jitter,
            renewals_per_hour=renewals_per_hour,
            backoff_initial=dt.timedelta(seconds=backoff_initial),
            backoff_max=dt.timedelta(seconds=backoff_max),
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
        self._task_group: anyio.abc.TaskGroup | None = None
        self._use_api_hosts = use_api_hosts
        self._endpoints = resolve_endpoints(config, None)

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
        self._client = httpx.AsyncClient(
            base_url=self.config.api_url + "/",
            auth=BearerAuth(self),
            headers={"Accept": "application/json"},
            timeout=self._timeout,
            verify=self._ssl_context if self._ssl_context is not None else True,
            limits=self._limits,
        )
        self._auth = Authenticator(
            self.config, self._client, penalty_policy=self._penalty_policy, clock=self._clock
        )
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        try:
            await task_group.start(self._renew_forever)
        except BaseException as exc:
            task_group.cancel_scope.cancel()
            with contextlib.suppress(BaseException):
                await task_group.__aexit__(type(exc), exc, exc.__traceback__)
            self._task_group = None
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
        """Stop the renewer, close the HTTP client. Idempotent; the session cannot reopen.

        Call it from the task that opened the session (``async with`` does): the renewer's task
        group is bound to that task, as anyio's structured concurrency requires.
        """
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        task_group, self._task_group = self._task_group, None
        try:
            if task_group is not None:
                task_group.cancel_scope.cancel()
                await task_group.__aexit__(None, None, None)
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        self._state = _State.CLOSED
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
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
        :class:`CaptchaRequiredError`. A transport failure raises :class:`TransportError` and is
        never retried: the request may have reached the server.
        """
        client = self.http
        relative = path.lstrip("/")
        query = encode_params(params)
        target = f"{relative}?{query}" if query else relative
        auth = self._auth
        assert auth is not None
        rounds = 0
        while True:
            try:
                response = await client.request(method, target, json=json)
            except httpx.TransportError as exc:
                raise TransportError(f"{method} /{relative} failed: {type(exc).__name__}") from exc
            outcome = interpret_api_response(
                method, relative, response.status_code, response.content, auth.scrub
            )
            if not isinstance(outcome, Penalty):
                return outcome
            wait = self._penalty_policy.wait_for(outcome, rounds)
            rounds += 1
            logger.warning(
                "%s /%s penalised (p-ticket): waiting %.1f s before resending (round %d of %d)",
                method,
                relative,
                wait,
                rounds,
                self._penalty_policy.max_rounds,
            )
            await anyio.sleep(wait)
            json = with_ticket(json, outcome.ticket)

    async def get(self, path: str, *, params: dict[str, Any] | None = None) -> Any:
        return await self.request("GET", path, params=params)

    async def post(
        self, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
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
        self, kind: Literal["trading", "md", "replay"] = "trading", **options: Any
    ) -> TradovateWebSocket:
        """A WebSocket bound to this session's token (use it with ``async with``).

        ``kind="trading"`` connects to ``config.ws_url``, ``"md"`` to ``config.md_url`` (with the
        market-data token), ``"replay"`` to ``config.replay_url``; ``url=`` overrides. Options go
        to :class:`TradovateWebSocket`.
        """
        from ._ws import TradovateWebSocket

        self._check_open()
        url = options.pop("url", None)
        if url is None:
            urls = self._endpoints
            url = {"md": urls.md_url, "replay": urls.replay_url}.get(kind, urls.ws_url)
        options.setdefault("ssl", self._ssl_context)
        return TradovateWebSocket(self, url=url, kind=kind, **options)

    def market_data(self, **options: Any) -> MarketData:
        """Typed market data over a new market-data socket (use it with ``async with``).

        Symbols are resolved with ``contract/find`` over REST; ``options`` go to the socket
        (see :meth:`websocket`). See :class:`~tradovate_async.MarketData`.
        """
        from ._market_data import MarketData, session_resolver

        return MarketData(
            self.websocket(kind="md", **options), resolve=session_resolver(self), own_socket=True
        )

    def add_token_listener(self, listener: TokenListener) -> Callable[[], None]:
        """Call ``listener(token)`` for every new token (login, renewal, adoption from the store).

        Returns a function that removes the listener. Exceptions in listeners are logged.
        """
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
        now = self._clock()
        blocked = self._schedule.blocked(now)
        if blocked is not None:
            raise blocked.error
        token = self._token
        if token is not None and self._schedule.is_usable(token, now):
            return token
        return await self._refresh(token, "expired")

    def token_spent(self, token: AccessToken) -> bool:
        """Whether ``token`` had expired (or was within the safety margin) by now.

        The documentation says an expired token gets "400 or 401". A 400 is also the answer to a
        malformed request, and no public recording shows the body of the expired-token 400, so
        a 400 counts as a refused token only when the token that signed the request was spent;
        any other 400 is the request's own fault and is never answered with a renewal.
        """
        return not self._schedule.is_usable(token, self._clock())

    async def token_rejected(self, token: AccessToken) -> AccessToken:
        """The server refused ``token``: renew it once (single-flight) and return the current one.

        If the token was already replaced, the current one is returned at once. If the refused
        token is the very one such a renewal produced, less than ``min(60 s, lifetime / 10)``
        ago, the refusal points to permissions or the wrong environment, not to expiry: this
        raises :class:`TokenRejectedError` instead of burning the renewal budget.
        """
        self._check_open()
        now = self._clock()
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
            self._rejection_refresh = (fresh, self._clock())
        return fresh

    # -- single-flight refresh --------------------------------------------------------------

    async def _refresh(self, seen: AccessToken | None, reason: Reason) -> AccessToken:
        lock = self._auth_lock
        assert lock is not None
        async with lock:
            now = self._clock()
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
        now = self._clock()
        current = self._token
        stored = await self._store_load()
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
                    await self._store_save(token)
                    return token, "renewal"
            else:
                logger.warning(
                    "renewal budget (%d/h) spent; logging in instead",
                    self._schedule.renewals_per_hour,
                )
        token = await auth.login()
        await self._store_save(token)
        return token, "login"

    def _record_failure(self, error: TradovateError, current: AccessToken | None) -> None:
        now = self._clock()
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
                listener(token)
            except Exception:
                logger.exception("token listener failed")

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
            now = self._clock()
            action = self._schedule.next_action(self._token, now)
            if isinstance(action, Wait | Blocked):
                until = action.until
                delay = self._check_interval
                if until is not None:
                    delay = min(delay, max((until - now).total_seconds(), 0.001))
                await anyio.sleep(delay)
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
                self._schedule.on_transient_failure(self._clock(), self._token)
