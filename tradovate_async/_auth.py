"""The HTTP side of authentication: send the token requests, wait out penalties.

Decisions live in ``_auth_core``; this layer moves bytes, sleeps and logs.
"""

from __future__ import annotations

import logging

import httpx

from ._auth_core import Scrubber, build_login_body, interpret_token_response
from ._clock import SYSTEM_CLOCK, Clock
from ._config import TradovateConfig
from ._http import (
    TOKEN_BOUNDS,
    Answer,
    ExchangeBounds,
    bounded_exchange,
    translate_transport_error,
)
from ._models import AccessToken
from ._penalty import Penalty, PenaltyPolicy

__all__ = ["Authenticator", "translate_transport_error", "warn_account_notices"]

logger = logging.getLogger(__name__)

_JSON_HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}


def warn_account_notices(token: AccessToken, username: str) -> None:
    """Log what the token answer says the user must act on, in words that say what to do."""
    if token.outdated_tac:
        logger.warning(
            "Tradovate reports that %s has not accepted the current Terms and Conditions "
            "(outdatedTaC): log in to Tradovate Trader (trader.tradovate.com or the desktop/mobile "
            "app) as this user and accept them, or the server may refuse trading requests",
            username,
        )
    if token.hibp_hint:
        logger.warning(
            "Tradovate reports that the password of %s appears in a known data breach (%s): "
            "change it in Tradovate Trader",
            username,
            token.hibp_hint,
        )


class Authenticator:
    """Login and renewal over an ``httpx.AsyncClient``.

    The client's own ``auth`` is bypassed: the token request carries no ``Authorization``, the
    renewal carries the token it renews. No call is ever retried here except
    for a penalty, which is the server's own instruction to resend; bad credentials, captcha and
    lockouts raise at once (5 failed logins an hour lock the user out).
    """

    def __init__(
        self,
        config: TradovateConfig,
        client: httpx.AsyncClient,
        *,
        penalty_policy: PenaltyPolicy | None = None,
        clock: Clock = SYSTEM_CLOCK,
        bounds: ExchangeBounds = TOKEN_BOUNDS,
    ) -> None:
        self.config = config
        self._client = client
        self._bounds = bounds
        self._policy = penalty_policy or PenaltyPolicy()
        self._clock = clock
        #: Where renewals go: the configured REST base until the server names another.
        self.api_url = config.api_url
        self.scrub = Scrubber([config.password.reveal(), config.sec.reveal()])
        self._recent_tokens: list[str] = []

    def __repr__(self) -> str:
        return f"Authenticator(user={self.config.username!r}, api_url={self.config.api_url!r})"

    def remember_token(self, token: AccessToken) -> None:
        """Add a token to the values scrubbed from server text (the last few tokens stay: a
        renewed token remains valid until it expires, and late answers may echo it)."""
        fresh = [token.access_token.reveal()]
        if token.md_access_token:
            fresh.append(token.md_access_token.reveal())
        recent = [t for t in self._recent_tokens if t not in fresh]
        self._recent_tokens = (fresh + recent)[:6]
        self.scrub = Scrubber(
            [self.config.password.reveal(), self.config.sec.reveal()], self._recent_tokens
        )

    def _url(self, path: str) -> str:
        # Logins go to the configured host; renewals follow the server's apiHosts (api_url).
        base = self.config.api_url if path == "auth/accesstokenrequest" else self.api_url
        return f"{base}/{path}"

    async def _send(
        self, method: str, path: str, *, json_body: object = None, token: AccessToken | None = None
    ) -> Answer:
        headers = dict(_JSON_HEADERS)
        if token is not None:
            headers["Authorization"] = f"Bearer {token.access_token.reveal()}"
        return await bounded_exchange(
            self._client,
            method,
            self._url(path),
            bounds=self._bounds,
            scrub=self.scrub,
            json=json_body,
            headers=headers,
            auth=None,
        )

    async def login(self) -> AccessToken:
        """``POST /auth/accesstokenrequest``, serving penalty tickets as the policy allows."""
        ticket: str | None = None
        rounds = 0
        while True:
            body = build_login_body(self.config, ticket)
            logger.debug("requesting an access token for %s", self.config.username)
            response = await self._send("POST", "auth/accesstokenrequest", json_body=body)
            outcome = interpret_token_response(
                "login",
                response.status_code,
                response.content,
                issued_at=self._clock.now(),
                scrub=self.scrub,
            )
            if isinstance(outcome, AccessToken):
                self.remember_token(outcome)
                warn_account_notices(outcome, self.config.username)
                logger.info(
                    "logged in as %s; token expires %s",
                    self.config.username,
                    outcome.expiration_time.isoformat(),
                )
                return outcome
            wait = self._policy.wait_for(outcome, rounds)
            rounds += 1
            logger.warning(
                "token request penalised (p-ticket): waiting %.1f s before resending "
                "(round %d of %d)",
                wait,
                rounds,
                self._policy.max_rounds,
            )
            await self._clock.sleep(wait)
            ticket = outcome.ticket

    async def renew(self, token: AccessToken) -> AccessToken:
        """``GET /auth/renewaccesstoken``: a new token on the same server session.

        A penalty here is waited out like a login's; the md token is kept if the answer lacks one.
        """
        rounds = 0
        while True:
            response = await self._send("GET", "auth/renewaccesstoken", token=token)
            outcome = interpret_token_response(
                "renew",
                response.status_code,
                response.content,
                issued_at=self._clock.now(),
                scrub=self.scrub,
            )
            if not isinstance(outcome, Penalty):
                renewed = outcome.with_md_fallback(token)
                self.remember_token(renewed)
                warn_account_notices(renewed, self.config.username)
                logger.info("token renewed; expires %s", renewed.expiration_time.isoformat())
                return renewed
            wait = self._policy.wait_for(outcome, rounds)
            rounds += 1
            logger.warning("token renewal penalised: waiting %.1f s before resending", wait)
            await self._clock.sleep(wait)
