"""tradovate-async: an asyncio client for the Tradovate (NinjaTrader) API.

One login serves every request, socket, restart and process of a user: a
:class:`TradovateSession` keeps its token fresh in the background and shares it through a
:class:`TokenStore`; :meth:`TradovateSession.websocket` opens sockets that authorize, keep their
heartbeat and come back with their subscriptions after a drop. ``tradovate_async.sim`` is an
offline Tradovate server for tests.
"""

import importlib
from typing import TYPE_CHECKING

from ._exports import DEFINED_IN
from ._version import __version__

if TYPE_CHECKING:  # what the names are; at run time each module loads when first asked for
    from ._account_state import AccountState, ChangeStream, open_pnl
    from ._api_hosts import ResolvedEndpoints
    from ._budget import BudgetStats, RateLimit, RateLimits
    from ._clock import Clock, FakeClock, SystemClock
    from ._config import ENVIRONMENTS, Endpoints, TradovateConfig
    from ._entity_store import Change
    from ._errors import (
        APIError,
        AuthenticationError,
        BudgetExhaustedError,
        CaptchaRequiredError,
        ConfigError,
        ConnectFailedError,
        ConnectionLostError,
        ExchangeDeadlineError,
        InvalidCredentialsError,
        InvalidResponseError,
        LocalError,
        LockoutWarningError,
        LoginPacedError,
        OrderOutcomeUnknownError,
        OrderRejectedError,
        OrderValidationError,
        PenaltyLimitError,
        ProtocolError,
        RateLimitedError,
        RequestFailedError,
        RequestTimeoutError,
        ResponseTooLargeError,
        RetryLaterError,
        SessionClosedError,
        TokenRejectedError,
        TokenStoreError,
        TradovateError,
        TransportError,
        ValidationError,
    )
    from ._file_store import FileTokenStore
    from ._http import ExchangeBounds
    from ._logging import RedactingFilter, install_redaction
    from ._market_data import MarketData
    from ._md_models import (
        Bar,
        BarSpec,
        ChartUpdate,
        Daily,
        DomLevel,
        DomSnapshot,
        Histogram,
        Minute,
        PriceSize,
        Quote,
        QuoteEntries,
        Range,
        ReplayClock,
        Tick,
        Ticks,
        Volume,
    )
    from ._md_streams import ChartStream, LatestStream, TickStream
    from ._models import AccessToken, UserInfo
    from ._options import Backoff, Timeouts
    from ._orders import OrderDefaults
    from ._penalty import PenaltyPolicy
    from ._redis_store import RedisTokenStore
    from ._replay import ReplaySession, ReplayUnavailableError
    from ._retry import RetryPolicy
    from ._secret import Secret
    from ._session import BearerAuth, SessionStats, TradovateSession
    from ._store import MemoryTokenStore, TokenStore
    from ._ws import TradovateWebSocket, WebSocketOptions
    from ._ws_codec import Event
    from ._ws_types import (
        EVENT_DISCONNECTED,
        EVENT_RECONNECTED,
        Disconnected,
        Reconnected,
        ReplayResult,
        Subscription,
        TokenSource,
        WebSocketStats,
    )

__all__ = [
    "APIError",
    "AccessToken",
    "AccountState",
    "AuthenticationError",
    "Backoff",
    "Bar",
    "BarSpec",
    "BearerAuth",
    "BudgetExhaustedError",
    "BudgetStats",
    "CaptchaRequiredError",
    "Change",
    "ChangeStream",
    "ChartStream",
    "ChartUpdate",
    "Clock",
    "ConfigError",
    "ConnectFailedError",
    "ConnectionLostError",
    "Daily",
    "Disconnected",
    "DomLevel",
    "DomSnapshot",
    "ENVIRONMENTS",
    "EVENT_DISCONNECTED",
    "EVENT_RECONNECTED",
    "Endpoints",
    "Event",
    "ExchangeBounds",
    "ExchangeDeadlineError",
    "FakeClock",
    "FileTokenStore",
    "Histogram",
    "InvalidCredentialsError",
    "InvalidResponseError",
    "LatestStream",
    "LocalError",
    "LockoutWarningError",
    "LoginPacedError",
    "MarketData",
    "MemoryTokenStore",
    "Minute",
    "OrderDefaults",
    "OrderOutcomeUnknownError",
    "OrderRejectedError",
    "OrderValidationError",
    "PenaltyLimitError",
    "PenaltyPolicy",
    "PriceSize",
    "ProtocolError",
    "Quote",
    "QuoteEntries",
    "Range",
    "RateLimit",
    "RateLimitedError",
    "RateLimits",
    "Reconnected",
    "RedactingFilter",
    "RedisTokenStore",
    "ReplayClock",
    "ReplayResult",
    "ReplaySession",
    "ReplayUnavailableError",
    "RequestFailedError",
    "RequestTimeoutError",
    "ResolvedEndpoints",
    "ResponseTooLargeError",
    "RetryLaterError",
    "RetryPolicy",
    "Secret",
    "SessionClosedError",
    "SessionStats",
    "Subscription",
    "SystemClock",
    "Tick",
    "TickStream",
    "Ticks",
    "Timeouts",
    "TokenRejectedError",
    "TokenSource",
    "TokenStore",
    "TokenStoreError",
    "TradovateConfig",
    "TradovateError",
    "TradovateSession",
    "TradovateWebSocket",
    "TransportError",
    "UserInfo",
    "ValidationError",
    "Volume",
    "WebSocketOptions",
    "WebSocketStats",
    "__version__",
    "install_redaction",
    "open_pnl",
]

_ORIGIN = {name: module for module, names in DEFINED_IN.items() for name in names}


def _load(name: str) -> object:
    """``tradovate_async.<name>``, importing the module that defines it on first use."""
    module = _ORIGIN.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value: object = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later look-ups find it without __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if not TYPE_CHECKING:  # for mypy, a name missing from the imports above stays an error
    __getattr__ = _load
