"""Where each public name of the package is defined, and the public path its classes show.

``tradovate_async`` imports a private module only when one of its names is first asked for, so
that ``import tradovate_async`` (the CLI, a bot that only needs a token store, a child process)
does not pay for HTTP, WebSocket and API modules it never uses. A public class still shows
``tradovate_async.X`` in reprs, tracebacks and the reference, as soon as it exists: the module
that defines it calls :func:`publish` once its classes are made, however it was imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["DEFINED_IN", "PACKAGE", "publish"]

PACKAGE: Final = "tradovate_async"

#: Private module (relative to the package) -> the public names it defines.
DEFINED_IN: Final[Mapping[str, tuple[str, ...]]] = {
    "._account_state": ("AccountState", "ChangeStream", "open_pnl"),
    "._api_hosts": ("ResolvedEndpoints",),
    "._budget": ("BudgetStats", "RateLimit", "RateLimits"),
    "._clock": ("Clock", "FakeClock", "SystemClock"),
    "._config": ("ENVIRONMENTS", "Endpoints", "TradovateConfig"),
    "._entity_store": ("Change",),
    "._errors": (
        "APIError",
        "AuthenticationError",
        "BudgetExhaustedError",
        "CaptchaRequiredError",
        "ConfigError",
        "ConnectFailedError",
        "ConnectionLostError",
        "ExchangeDeadlineError",
        "InvalidCredentialsError",
        "InvalidResponseError",
        "LocalError",
        "LockoutWarningError",
        "LoginPacedError",
        "OrderOutcomeUnknownError",
        "OrderRejectedError",
        "OrderValidationError",
        "PenaltyLimitError",
        "ProtocolError",
        "RateLimitedError",
        "RequestFailedError",
        "RequestTimeoutError",
        "ResponseTooLargeError",
        "RetryLaterError",
        "SessionClosedError",
        "TokenRejectedError",
        "TokenStoreError",
        "TradovateError",
        "TransportError",
        "ValidationError",
    ),
    "._file_store": ("FileTokenStore",),
    "._http": ("ExchangeBounds",),
    "._logging": ("RedactingFilter", "install_redaction"),
    "._market_data": ("MarketData",),
    "._md_models": (
        "Bar",
        "BarSpec",
        "ChartUpdate",
        "Daily",
        "DomLevel",
        "DomSnapshot",
        "Histogram",
        "Minute",
        "PriceSize",
        "Quote",
        "QuoteEntries",
        "Range",
        "ReplayClock",
        "Tick",
        "Ticks",
        "Volume",
    ),
    "._md_streams": ("ChartStream", "LatestStream", "TickStream"),
    "._models": ("AccessToken", "UserInfo"),
    "._options": ("Backoff", "Timeouts"),
    "._orders": ("OrderDefaults",),
    "._penalty": ("PenaltyPolicy",),
    "._redis_store": ("RedisTokenStore",),
    "._replay": ("ReplaySession", "ReplayUnavailableError"),
    "._retry": ("RetryPolicy",),
    "._secret": ("Secret",),
    "._session": ("BearerAuth", "SessionStats", "TradovateSession"),
    "._store": ("MemoryTokenStore", "TokenStore"),
    "._ws": ("TradovateWebSocket", "WebSocketOptions"),
    "._ws_event": ("Event",),
    "._ws_types": (
        "EVENT_DISCONNECTED",
        "EVENT_RECONNECTED",
        "Disconnected",
        "Reconnected",
        "ReplayResult",
        "Subscription",
        "TokenSource",
        "WebSocketStats",
    ),
}


def publish(namespace: Mapping[str, Any]) -> None:
    """Give the public classes defined in the module of ``namespace`` (its ``globals()``) the
    package's path, as httpx does: ``tradovate_async.TradovateError`` in tracebacks."""
    module = namespace["__name__"].removeprefix(PACKAGE)
    for name in DEFINED_IN[module]:
        value = namespace[name]
        if isinstance(value, type):
            value.__module__ = PACKAGE
