"""Immutable value objects parsed from Tradovate answers."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from collections.abc import Mapping
from typing import Any

from ._exports import publish
from ._secret import Secret

__all__ = [
    "AccessToken",
    "UserInfo",
    "parse_api_hosts",
    "parse_timestamp",
    "token_from_record",
]


def parse_timestamp(value: str) -> dt.datetime:
    """Parse Tradovate's ISO-8601 time (``2021-06-15T15:40:30.056Z``) into an aware UTC datetime.

    Raises ``ValueError`` for anything else. A time without zone is taken as UTC, as the server
    documents all its times in UTC.
    """
    if not isinstance(value, str) or not value:
        raise ValueError("timestamp must be a non-empty string")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("timestamp out of range") from None


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("datetime must be timezone-aware")
    return value.astimezone(dt.UTC)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AccessToken:
    """One access token as the server issued it.

    ``issued_at`` is the time of receipt; with ``expiration_time`` it gives the lifetime that
    the renewal schedule works from (the server documents 90 minutes, some pages say 80: the
    library never assumes either). A session measures it on its estimate of the server's clock
    (``issued_on_server_clock``); records of older versions hold the writer's host clock.

    The last three fields are what a token store keeps for other processes:
    ``issued_on_server_clock``; ``host_clock_offset``, how far the writer's host clock was ahead
    of the server's (seconds, a diagnostic); ``login_times``, the user's recent successful
    logins on the server's clock (epoch seconds), so the login pacing floor holds fleet-wide.
    """

    access_token: Secret
    expiration_time: dt.datetime
    user_id: int
    name: str = ""
    md_access_token: Secret | None = None
    user_status: str | None = None
    has_live: bool = False
    issued_at: dt.datetime | None = None
    password_expiration_time: dt.datetime | None = None
    has_market_data: bool | None = None
    outdated_tac: bool | None = None
    hibp_hint: str | None = None
    #: ``apiHosts`` of the answer: (key, bare hostname) pairs such as ``("demo",
    #: "demo.tradovateapi.com")``; empty when the answer had none (see :meth:`api_host`).
    api_hosts: tuple[tuple[str, str], ...] = ()

    def api_host(self, key: str) -> str | None:
        """The host ``apiHosts`` names for ``key`` (``live``, ``demo``, ``mdLive``, ``mdDemo``,
        ``replay`` ...), or ``None``."""
        return next((host for name, host in self.api_hosts if name == key), None)

    issued_on_server_clock: bool = False
    host_clock_offset: float | None = None
    login_times: tuple[float, ...] = ()

    def expires_in(self, now: dt.datetime) -> dt.timedelta:
        """Time left until expiry, negative once expired."""
        return self.expiration_time - _utc(now)

    def is_expired(self, now: dt.datetime) -> bool:
        """Whether the token has expired at ``now`` (the server's time)."""
        return self.expires_in(now) <= dt.timedelta(0)

    @property
    def lifetime(self) -> dt.timedelta | None:
        """The lifetime the server granted, when the time of issue is known."""
        if self.issued_at is None:
            return None
        return self.expiration_time - self.issued_at

    @property
    def market_data_token(self) -> Secret:
        """The token for market-data sockets: ``mdAccessToken``, else ``accessToken``."""
        return self.md_access_token if self.md_access_token else self.access_token

    def with_md_fallback(self, previous: AccessToken | None) -> AccessToken:
        """This token, keeping ``previous``'s md token when the server sent none."""
        if self.md_access_token is not None or previous is None:
            return self
        return dataclasses.replace(self, md_access_token=previous.md_access_token)

    @classmethod
    def from_response(cls, body: Mapping[str, Any], *, issued_at: dt.datetime) -> AccessToken:
        """Build from an ``AccessTokenResponse`` body. Raises ``ValueError``/``TypeError`` on a
        missing or malformed required field; unknown fields are ignored."""
        token = body.get("accessToken")
        if not isinstance(token, str) or not token:
            raise ValueError("accessToken missing")
        md = body.get("mdAccessToken")
        if md is not None and not isinstance(md, str):
            raise TypeError("mdAccessToken is not a string")
        exp = body.get("expirationTime")
        if not isinstance(exp, str):
            raise ValueError("expirationTime missing")
        user_id = body.get("userId")
        if isinstance(user_id, bool) or not isinstance(user_id, int):
            raise ValueError("userId missing or not an integer")
        name = body.get("name", "")
        status = body.get("userStatus")
        password_expiry = body.get("passwordExpirationTime")
        hint = body.get("hibpHint")
        return cls(
            access_token=Secret(token),
            md_access_token=Secret(md) if md else None,
            expiration_time=parse_timestamp(exp),
            user_id=user_id,
            name=name if isinstance(name, str) else "",
            user_status=status if isinstance(status, str) else None,
            has_live=body.get("hasLive") is True,
            issued_at=_utc(issued_at),
            password_expiration_time=_optional_time(password_expiry),
            has_market_data=_optional_bool(body.get("hasMarketData")),
            outdated_tac=_optional_bool(body.get("outdatedTaC")),
            hibp_hint=hint if isinstance(hint, str) and hint else None,
            api_hosts=parse_api_hosts(body.get("apiHosts")),
        )

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict holding the raw token values, for token stores only."""
        return {
            "accessToken": self.access_token.reveal(),
            "mdAccessToken": self.md_access_token.reveal() if self.md_access_token else None,
            "expirationTime": self.expiration_time.isoformat(),
            "userId": self.user_id,
            "name": self.name,
            "userStatus": self.user_status,
            "hasLive": self.has_live,
            "issuedAt": self.issued_at.isoformat() if self.issued_at else None,
            "passwordExpirationTime": (
                self.password_expiration_time.isoformat() if self.password_expiration_time else None
            ),
            "hasMarketData": self.has_market_data,
            "outdatedTaC": self.outdated_tac,
            "hibpHint": self.hibp_hint,
            "apiHosts": dict(self.api_hosts) or None,
            "issuedAtClock": "server" if self.issued_on_server_clock else "host",
            "hostClockOffset": self.host_clock_offset,
            "loginTimes": list(self.login_times),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> AccessToken:
        """Inverse of :meth:`to_record`. Raises ``ValueError``/``TypeError``/``KeyError``."""
        issued = record.get("issuedAt")
        token = cls.from_response(record, issued_at=dt.datetime.now(dt.UTC))
        issued_at = parse_timestamp(issued) if isinstance(issued, str) else None
        on_server = record.get("issuedAtClock") == "server"
        if issued_at is not None and "issuedAtClock" not in record:
            # A record of an older version, written on some host's clock: believe it only as a
            # plausible lifetime, or a skewed writer would shrink or stretch the renewal margin.
            lifetime = token.expiration_time - issued_at
            if not dt.timedelta(0) < lifetime <= dt.timedelta(hours=24):
                issued_at = None
        offset = record.get("hostClockOffset")
        logins = record.get("loginTimes")
        return dataclasses.replace(
            token,
            issued_at=issued_at,
            issued_on_server_clock=on_server and issued_at is not None,
            host_clock_offset=_finite(offset),
            login_times=tuple(
                t
                for t in (_finite(v) for v in (logins if isinstance(logins, list) else [])[:16])
                if t is not None
            ),
        )


def _optional_bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _optional_time(value: object) -> dt.datetime | None:
    """A time field the client does not depend on: unparseable means absent, not an error."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(?::[0-9]{1,5})?")


def parse_api_hosts(value: object) -> tuple[tuple[str, str], ...]:
    """The usable entries of an ``apiHosts`` object: bare hostnames (optionally with a port),
    as NinjaTrader's dynamic-API-hosts page describes them. Anything else — a scheme, a path,
    user info, a non-string — is dropped rather than repaired, so a malformed entry can never
    send a token somewhere unexpected. Unknown keys are kept (more hosts get added over time)."""
    if not isinstance(value, Mapping):
        return ()
    hosts = []
    for key, host in value.items():
        if isinstance(key, str) and isinstance(host, str):
            bare = host.strip().lower()
            if len(bare) <= 260 and _HOSTNAME.fullmatch(bare):
                hosts.append((key, bare))
    return tuple(sorted(hosts))


def _finite(value: object) -> float | None:
    """A JSON number as a finite float, else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def token_from_record(record: object) -> AccessToken | None:
    """A stored record (:meth:`AccessToken.to_record`) as a token, or ``None`` if it is not one:
    stores treat a foreign or damaged record as absent."""
    if not isinstance(record, dict):
        return None
    try:
        return AccessToken.from_record(record)
    except (ValueError, TypeError, KeyError):
        return None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class UserInfo:
    """The ``/auth/me`` answer (``OAuthMeResponse``)."""

    user_id: int
    name: str
    full_name: str | None = None
    email: str | None = None
    email_verified: bool | None = None
    is_trial: bool | None = None
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def from_response(cls, body: Mapping[str, Any]) -> UserInfo:
        """Parse a ``/auth/me`` answer; ``ValueError`` when ``userId`` is missing."""
        user_id = body.get("userId")
        if isinstance(user_id, bool) or not isinstance(user_id, int):
            raise ValueError("userId missing or not an integer")
        name = body.get("name")
        if not isinstance(name, str):
            raise ValueError("name missing")

        def opt_str(key: str) -> str | None:
            value = body.get(key)
            return value if isinstance(value, str) else None

        def opt_bool(key: str) -> bool | None:
            value = body.get(key)
            return value if isinstance(value, bool) else None

        return cls(
            user_id=user_id,
            name=name,
            full_name=opt_str("fullName"),
            email=opt_str("email"),
            email_verified=opt_bool("emailVerified"),
            is_trial=opt_bool("isTrial"),
            raw=dict(body),
        )


publish(globals())  # its public classes show tradovate_async.X (see _exports)
