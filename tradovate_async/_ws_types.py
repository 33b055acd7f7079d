"""The socket's plain data: what the sans-I/O core and the asyncio layer both speak.

Public names here are re-exported by ``tradovate_async._ws`` and the package.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Final, Literal, Protocol

from ._errors import PenaltyLimitError, TradovateError
from ._exports import publish
from ._models import AccessToken

__all__ = [
    "EVENT_DISCONNECTED",
    "EVENT_RECONNECTED",
    "QUOTA_REASONS",
    "AuthFrame",
    "Disconnected",
    "Reconnected",
    "ReplayResult",
    "SocketKind",
    "Subscription",
    "TokenSource",
    "WebSocketStats",
    "canonical_body",
    "default_unsubscribe",
    "with_ticket",
]

#: Kind of the library's event announcing a lost connection (``data``: :class:`Disconnected`).
EVENT_DISCONNECTED: Final = "disconnected"
#: Kind of the library's event announcing a restored connection (``data``: :class:`Reconnected`).
EVENT_RECONNECTED: Final = "reconnected"

#: ``shutdown`` reason codes after which reconnecting at once would evict another connection.
QUOTA_REASONS: Final = frozenset({"ConnectionQuotaReached", "IPQuotaReached"})

SocketKind = Literal["trading", "md", "replay"]
AuthFrame = Literal["authorize", "json"]


class TokenSource(Protocol):
    """Where a socket gets its token; :class:`~tradovate_async.TradovateSession` is one."""

    async def current_token(self) -> AccessToken:
        """A token usable now (waits for, or performs, a single-flight authentication)."""
        ...

    async def token_rejected(self, token: AccessToken) -> AccessToken:
        """The server refused ``token``: renew once (no-op if already replaced); return the
        token now current. Raises when renewal is impossible."""
        ...


@dataclasses.dataclass(slots=True)
class WebSocketStats:
    """Counters of one socket object over its whole life (all its connections)."""

    #: Successful authorizations, first connect included (the current "generation").
    connects: int = 0
    #: Successful re-connections after a loss.
    reconnects: int = 0
    #: Connect attempts that failed (transport, handshake, authorize).
    connect_failures: int = 0
    malformed_frames: int = 0
    dropped_events: int = 0
    heartbeats_sent: int = 0
    requests_sent: int = 0
    penalties: int = 0
    #: Seconds from noticing the last loss to authorized and resubscribed again.
    last_recovery_seconds: float | None = None
    last_disconnect_reason: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Subscription:
    """A remembered subscription: replayed after every reconnect until unsubscribed.

    Identity is ``endpoint`` plus the canonical JSON of the body (``body_json``), so the set in
    :attr:`TradovateWebSocket.subscriptions` is comparable across reconnects.
    """

    endpoint: str
    body_json: str
    unsubscribe: str | None = dataclasses.field(default=None, compare=False)

    @property
    def body(self) -> Any:
        """The subscription's request body, decoded from JSON."""
        return json.loads(self.body_json) if self.body_json else None


@dataclasses.dataclass(frozen=True, slots=True)
class ReplayResult:
    """What replaying one subscription on a new connection gave: ``data`` or ``error``."""

    subscription: Subscription
    data: Any = None
    error: TradovateError | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Disconnected:
    """``data`` of the ``disconnected`` event: events may be missing from here on."""

    generation: int
    reason: str
    #: ``reasonCode`` of a ``shutdown`` event that preceded the loss, if any.
    shutdown_reason: str | None = None

    @property
    def quota(self) -> bool:
        """The server shut us out for a connection/IP quota: the next attempt waits longer."""
        return self.shutdown_reason in QUOTA_REASONS


@dataclasses.dataclass(frozen=True, slots=True)
class Reconnected:
    """``data`` of the ``reconnected`` event: the socket is authorized and resubscribed.

    ``replayed`` holds the new answers (a ``user/syncrequest`` snapshot, new chart ids ...);
    a bot should rebuild its state from them, since events during the gap are lost.
    """

    generation: int
    recovery_seconds: float
    attempts: int
    replayed: tuple[ReplayResult, ...]


def default_unsubscribe(endpoint: str) -> str | None:
    """``md/subscribeQuote`` -> ``md/unsubscribeQuote``; ``md/getChart`` -> ``md/cancelChart``."""
    head, _, operation = endpoint.rpartition("/")
    lowered = operation.lower()
    prefix = head + "/" if head else ""
    if lowered.startswith("subscribe"):
        return f"{prefix}unsubscribe{operation[len('subscribe') :]}"
    if lowered == "getchart":
        return f"{prefix}cancelChart"
    return None


def canonical_body(body: Any) -> str:
    """The identity of a request body: compact JSON with sorted keys (``""`` for none)."""
    if body is None:
        return ""
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return str(body)
    return json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def with_ticket(body: Any, ticket: str) -> dict[str, Any]:
    """The body to resend after a penalty: the original object plus ``"p-ticket"``."""
    if body is None:
        return {"p-ticket": ticket}
    if isinstance(body, str):
        try:
            body = json.loads(body) if body.strip() else {}
        except ValueError:
            body = None
    if not isinstance(body, Mapping):
        raise PenaltyLimitError("a penalty ticket needs a JSON object body to travel in")
    return {**body, "p-ticket": ticket}


publish(globals())  # its public classes show tradovate_async.X (see _exports)
