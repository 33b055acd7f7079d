"""The token lifecycle of a session: one token, kept fresh, shared through the store.

:class:`TokenKeeper` is the part of :class:`~tradovate_async.TradovateSession` that holds the
token: the single-flight refresh (:meth:`TokenKeeper.refresh`, one call at a time per session
and, through the store's lock, one at a time per user across processes), adoption from the
store, renewal and login with the login pacing floor, failure bookkeeping, the server-time
probe, token listeners and the renewer task. The session is the HTTP facade; it owns one keeper
and delegates its token methods (``current_token``, ``token_rejected``...) to it. They were one
class until it passed 800 lines (issue 8).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import inspect
import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import anyio
import anyio.abc
import httpx

from ._api_hosts import ResolvedEndpoints, resolve_endpoints
from ._auth import Authenticator
from ._config import TradovateConfig
from ._errors import LoginPacedError, TokenRejectedError, TradovateError
from ._http import ExchangeBounds
from ._models import AccessToken
from ._options import Backoff, check_seconds
from ._penalty import PenaltyPolicy
from ._schedule import Blocked, Login, LoginPacing, Renew, RenewalSchedule, Wait, is_permanent
from ._server_time import Lease, SessionTime
from ._store import TokenStore
from ._store_access import StoreAccess

if TYPE_CHECKING:
    from ._session import SessionStats  # the session owns its counters

__all__ = ["LoginFloor", "Reason", "TokenKeeper", "TokenListener", "renewal_schedule"]

logger = logging.getLogger(__name__)

Reason = Literal["start", "renew", "expired", "rejected"]
_PROBE_INTERVAL = 10.0  # seconds between two reads of the server's clock on purpose
TokenListener = Callable[[AccessToken], object]


def _is_async_callable(obj: object) -> bool:
    call = getattr(obj, "__call__", None)  # noqa: B004 - an async __call__ counts too
    return inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(call)


def renewal_schedule(
    renew_before: float,
    jitter: float,
    backoff: Backoff,
    renewals_per_hour: int,
    rng: random.Random | None,
) -> RenewalSchedule:
    """The session's renewal schedule from its constructor's arguments (seconds)."""
    return RenewalSchedule(
        dt.timedelta(seconds=check_seconds("renew_before", renew_before)),
        jitter=jitter,
        renewals_per_hour=renewals_per_hour,
        backoff_initial=dt.timedelta(seconds=backoff.initial),
        backoff_max=dt.timedelta(seconds=backoff.maximum),
        rng=rng,
    )


class LoginFloor:
    """The login pacing floor (issue 9) on this session's clocks: at most ``per_hour`` logins
    an hour, ``pause`` apart, counting the logins other processes recorded in the shared
    token record."""

    __slots__ = ("_pacing", "_time")

    def __init__(self, pacing: LoginPacing, time: SessionTime) -> None:
        self._pacing, self._time = pacing, time

    def check(self) -> None:
        """Raise :class:`LoginPacedError` if a login now would break the floor."""
        wait = self._pacing.wait_before_login(self._time.steady())
        if wait > 0:
            raise LoginPacedError(
                f"login refused by the pacing floor: at most {self._pacing.per_hour} successful "
                f"logins an hour, {self._pacing.pause:g} s apart; next one allowed in "
                f"{wait:.0f} s. Something keeps asking for logins: look for another process of "
                "this user without a shared token store, or a session that keeps being refused",
                retry_after=dt.timedelta(seconds=wait),
            )

    def record(self) -> None:
        """A login succeeded now."""
        self._pacing.record(self._time.steady())

    def merge(self, stored: AccessToken | None) -> None:
        """Logins other processes recorded in the shared token record count here too."""
        if stored is None or not stored.login_times:
            return
        wall, steady = self._time.now(), self._time.steady()
        for at in stored.login_times:
            self._pacing.record(steady - (wall.timestamp() - at))

    def times(self) -> tuple[float, ...]:
        """This user's recent logins on the server's clock, for the shared record."""
        now, steady = self._time.now().timestamp(), self._time.steady()
        return tuple(now - (steady - at) for at in self._pacing.history(steady))


class TokenKeeper:
    """Holds one session's token and keeps it usable (see the module notes).

    Args:
        config: the session's credentials and endpoints.
        store: the shared token store.
        time: the session's clock (server time on the host's elapsed time).
        stats: the session's counters.
        schedule, pacing: when to renew or log in, and the login floor.
        check_interval: longest sleep of the renewer between looks at the clock.
        use_api_hosts: follow the ``apiHosts`` of token answers (see ``endpoints``).
        penalty_policy, token_bounds: for the :class:`Authenticator` built by :meth:`attach`.
        check_open: raises :class:`SessionClosedError` unless the session is open.
    """

    def __init__(
        self,
        config: TradovateConfig,
        store: TokenStore,
        time: SessionTime,
        stats: SessionStats,
        *,
        schedule: RenewalSchedule,
        pacing: LoginPacing,
        check_interval: float,
        use_api_hosts: bool,
        penalty_policy: PenaltyPolicy,
        token_bounds: ExchangeBounds,
        check_open: Callable[[], None],
    ) -> None:
        self.config = config
        self.stats = stats
        self.schedule = schedule
        self.endpoints = resolve_endpoints(config, None)
        self.token: AccessToken | None = None
        self.auth: Authenticator | None = None
        self.auth_lock: anyio.Lock | None = None
        self._client: httpx.AsyncClient | None = None
        self._store = StoreAccess(store, config.token_key, stats)
        self._time = time
        self._floor = LoginFloor(pacing, self._time)
        self._check_interval = check_interval
        self._use_api_hosts = use_api_hosts
        self._penalty_policy = penalty_policy
        self._token_bounds = token_bounds
        self._check_open = check_open
        self._last_error: TradovateError | None = None
        self._probe_not_before: float | None = None
        # The token a refusal-driven refresh produced, and when: refusing it again at once is
        # a permission problem, not an expiry.
        self._rejection_refresh: tuple[AccessToken | None, dt.datetime | None] = (None, None)
        self._listeners: list[TokenListener] = []
        # "The token held stays usable while this lease holds" (see current_token).
        self._lease: tuple[AccessToken, Lease] | None = None

    def attach(self, client: httpx.AsyncClient) -> None:
        """The session opened: token exchanges and clock probes go through ``client``."""
        self.auth_lock = anyio.Lock()
        self._client = client
        self.auth = Authenticator(
            self.config,
            client,
            penalty_policy=self._penalty_policy,
            clock=self._time,
            bounds=self._token_bounds,
        )

    def detach(self) -> None:
        """The session closed its client: no more endpoint moves through it."""
        self._client = None

    def add_listener(self, listener: TokenListener) -> Callable[[], None]:
        """See :meth:`TradovateSession.add_token_listener`."""
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

    # -- TokenSource (used by BearerAuth and WebSockets, through the session) ----------------

    async def current_token(self) -> AccessToken:
        """See :meth:`TradovateSession.current_token`.

        Every request asks this first, so the answer "usable" is kept as a :class:`Lease` on
        the server's clock: until the lease runs out, the clocks jump or the token changes,
        the check is a reading of the clocks and two comparisons. Anything else takes the
        full judgement below, which is what the lease was derived from.
        """
        self._check_open()
        held = self.held_token()
        if held is not None:
            return held
        token = self.token
        now = self._time.now()
        blocked = self.schedule.blocked(now)
        if blocked is not None:
            raise blocked.error
        if token is not None and self.schedule.is_usable(token, now):
            found = self._time.lease(token.expiration_time - self.schedule.safety(token))
            self._lease = None if found is None else (token, found)
            return token
        return await self.refresh(token, "expired")

    def held_token(self) -> AccessToken | None:
        """The token, if its lease from :meth:`current_token` still holds (nothing is waited
        for or judged here: ``None`` says "ask :meth:`current_token`")."""
        lease = self._lease
        if (
            lease is not None
            and lease[0] is self.token
            and not self.schedule.has_block
            and self._time.holds(lease[1])
        ):
            return lease[0]
        return None

    def refuses(self, status: int, token: AccessToken) -> bool:
        """See :meth:`TradovateSession.refuses`."""
        return status == 401 or (status == 400 and self.token_spent(token))

    def token_spent(self, token: AccessToken) -> bool:
        """See :meth:`TradovateSession.token_spent`."""
        return not self.schedule.is_usable(token, self._time.now())

    async def token_rejected(self, token: AccessToken) -> AccessToken:
        """See :meth:`TradovateSession.token_rejected`."""
        self._check_open()
        now = self._time.now()
        current = self.token
        if current is not None and current is not token and self.schedule.is_usable(current, now):
            return current
        self.stats.rejected_tokens += 1
        product, when = self._rejection_refresh
        if (
            token is product
            and when is not None
            and now - when < self.schedule.rejection_grace(token)
        ):
            raise TokenRejectedError(
                "the server refused the token obtained moments ago after a refusal; not "
                "renewing again. Either another login of this user keeps ending this session "
                "(at most 2 sessions per user: share one token store between processes), or the "
                "API key lacks permissions or points at the wrong environment (live/demo)"
            )
        fresh = await self.refresh(token, "rejected")
        if fresh is not product:
            self._rejection_refresh = (fresh, self._time.now())
        return fresh

    # -- single-flight refresh --------------------------------------------------------------

    async def refresh(self, seen: AccessToken | None, reason: Reason) -> AccessToken:
        """A usable token other than ``seen``: one refresh at a time (see the module notes)."""
        lock = self.auth_lock
        assert lock is not None
        async with lock:
            if self._time.needs_sample():  # the host's clock jumped: re-read the server's
                await self._sample_server_time()
                if self._still_good_after_sample(seen, reason):
                    assert self.token is not None
                    return self.token
            now = self._time.now()
            current = self.token
            if (
                current is not None
                and current is not seen
                and self.schedule.is_usable(current, now)
            ):
                return current
            blocked = self.schedule.blocked(now)
            if blocked is not None:
                raise blocked.error
            if reason in ("expired", "rejected") and self._last_error is not None:
                if self.schedule.retry_pending(now):
                    # Requests do not hammer the token endpoint while the renewer backs off.
                    raise self._last_error
            # Without the store's lock a fleet sharing one token would renew it several times
            # over, each renewal retiring the others' token: while the token has plenty of life
            # left, a scheduled renewal waits for the store to come back instead.
            may_defer = reason == "renew" and self.schedule.may_defer(current, now)
            try:
                async with self._store.lock(may_defer=may_defer):
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

    def _still_good_after_sample(self, seen: AccessToken | None, reason: Reason) -> bool:
        """After a fresh read of the server's clock: the token asked about is still the one
        held, and on the corrected clock it needs no refresh after all."""
        now, current = self._time.now(), self.token
        return (
            current is not None
            and current is seen
            and reason in ("expired", "renew")
            and self.schedule.is_usable(current, now)
            and (reason == "expired" or now < self.schedule.renew_at(current))
        )

    async def _obtain(
        self, seen: AccessToken | None, reason: Reason
    ) -> tuple[AccessToken, Literal["adopted", "renewal", "login"]]:
        """Inside both locks: adopt the stored token, renew, or log in."""
        auth = self.auth
        assert auth is not None
        now = self._time.now()
        current = self.token
        stored = await self._store.load()
        if stored is not None and not self._time.known:
            # A stored record is judged on the server's clock: read it first (one request).
            await self._sample_server_time()
            now = self._time.now()
        self._floor.merge(stored)
        if (
            stored is not None
            and (seen is None or stored.access_token != seen.access_token)
            and (current is None or stored.expiration_time >= current.expiration_time)
            and self.schedule.is_usable(stored, now)
        ):
            current = stored
            if reason in ("expired", "rejected") or self.schedule.is_fresh(stored, now):
                logger.debug("adopted the token from the store")
                return stored, "adopted"
        elif current is None and stored is not None and not stored.is_expired(now):
            current = stored  # not usable for requests any more, but still renewable

        if current is not None and not current.is_expired(now):
            if self.schedule.budget_free_at(now) is None:
                self.schedule.record_renewal_attempt(now)
                try:
                    token = await auth.renew(current)
                except TokenRejectedError as exc:
                    logger.warning("renewal refused (%s); logging in again", exc)
                else:
                    token = self._stamped(token)
                    await self._store.save(token)
                    return token, "renewal"
            else:
                logger.warning(
                    "renewal budget (%d/h) spent; logging in instead",
                    self.schedule.renewals_per_hour,
                )
        self._floor.check()
        token = await auth.login()
        self._floor.record()
        token = self._stamped(token)
        await self._store.save(token)
        return token, "login"

    def _record_failure(self, error: TradovateError, current: AccessToken | None) -> None:
        now = self._time.now()
        if isinstance(error, LoginPacedError):  # no login until the floor allows one
            self.stats.paced_logins += 1
            self.schedule.on_paced(now + error.retry_after)
            logger.warning("%s", error)
            return
        if is_permanent(error):
            self.stats.permanent_failures += 1
            blocked = self.schedule.on_permanent_failure(error, now)
            until = blocked.until.isoformat() if blocked.until else "the session is recreated"
            logger.error(
                "authentication failed for good (%s); no retry until %s",
                type(error).__name__,
                until,
            )
            return
        self.stats.transient_failures += 1
        retry_at = self.schedule.on_transient_failure(now, current)
        left = current.expires_in(now).total_seconds() if current is not None else 0.0
        logger.warning(
            "authentication failed (%s: %s); token valid for %.0f s more; retrying in %.1f s",
            type(error).__name__,
            error,
            max(left, 0.0),
            (retry_at - now).total_seconds(),
        )

    def _publish(self, token: AccessToken) -> None:
        auth = self.auth
        assert auth is not None
        previous, self.token = self.token, token
        auth.remember_token(token)
        self.schedule.on_success()
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
        previous, self.endpoints = self.endpoints, endpoints
        if endpoints == previous:
            return
        logger.info(
            "the server's apiHosts move this session to %s (trading socket %s, market data %s)",
            endpoints.api_url,
            endpoints.ws_url,
            endpoints.md_url,
        )
        auth = self.auth
        if endpoints.api_url != previous.api_url and self._client is not None and auth is not None:
            self._client.base_url = httpx.URL(endpoints.api_url + "/")
            auth.api_url = endpoints.api_url

    # -- server time (issue 9) and the login floor ------------------------------------------

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
            login_times=self._floor.times(),
        )

    # -- the renewer task -------------------------------------------------------------------

    async def renew_forever(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """The session's background task: the first token, then each renewal when due."""
        await self.refresh(None, "start")
        task_status.started()
        while True:
            now = self._time.now()
            action = self.schedule.next_action(self.token, now)
            if isinstance(action, Wait | Blocked):
                until = action.until
                delay = self._check_interval
                if until is not None:
                    delay = min(delay, max((until - now).total_seconds(), 0.001))
                await self._time.sleep(delay)
                continue
            assert isinstance(action, Renew | Login)
            try:
                await self.refresh(self.token, "renew" if isinstance(action, Renew) else "expired")
            except TradovateError:
                pass  # recorded in the schedule and logged by _record_failure
            except Exception:
                # A bug or an unforeseen answer must not end the renewer: its task group would
                # cancel the bot's own task. Log it and back off as after a transient failure.
                logger.exception("unexpected error while renewing the token; retrying later")
                self.stats.transient_failures += 1
                self.schedule.on_transient_failure(self._time.now(), self.token)
