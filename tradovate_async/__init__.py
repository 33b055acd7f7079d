"""tradovate-async: an asyncio client for the Tradovate (NinjaTrader) API.

One login serves every request, socket, restart and process of a user: a
:class:`TradovateSession` keeps its token fresh in the background and shares it through a
:class:`TokenStore`; :meth:`TradovateSession.websocket` opens sockets that authorize, keep their
heartbeat and come back with their subscriptions after a drop. ``tradovate_async.sim`` is an
offline Tradovate server for tests.
"""

from ._api_hosts import ResolvedEndpoints
from ._config import (
    ENVIRONMENTS,
    Endpoints,
    TradovateConfig,
    default_token_file,
    merged_settings,
)
from ._errors import (
    APIError,
    AuthenticationError,
    CaptchaRequiredError,
    ConfigError,
    ConnectFailedError,
    ConnectionLostError,
    InvalidCredentialsError,
    InvalidResponseError,
    LockoutWarningError,
    OrderRejectedError,
    PenaltyLimitError,
    ProtocolError,
    RateLimitedError,
    RequestFailedError,
    RequestTimeoutError,
    SessionClosedError,
    TokenRejectedError,
    TokenStoreError,
    TradovateError,
    TransportError,
    WebSocketError,
)
from ._file_store import FileTokenStore
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
from ._redis_store import RedisTokenStore
from ._schedule import RenewalSchedule
from ._secret import Secret
from ._session import BearerAuth, SessionStats, TradovateSession
from ._store import MemoryTokenStore, TokenStore
from ._version import __version__
from ._ws import (
    EVENT_DISCONNECTED,
    EVENT_RECONNECTED,
    Disconnected,
    Reconnected,
    ReplayResult,
    Subscription,
    TokenSource,
    TradovateWebSocket,
    WebSocketStats,
)
from ._ws_codec import Event, Response

__all__ = [
    "EVENT_RECONNECTED",
    "EVENT_DISCONNECTED",
    "Subscription",
    "ReplayResult",
    "Reconnected",
    "Disconnected",
    "ConnectFailedError",
    "ENVIRONMENTS",
    "APIError",
    "AccessToken",
    "AuthenticationError",
    "BearerAuth",
    "CaptchaRequiredError",
    "ConfigError",
    "ConnectionLostError",
    "Endpoints",
    "Event",
    "FileTokenStore",
    "InvalidCredentialsError",
    "InvalidResponseError",
    "LockoutWarningError",
    "MemoryTokenStore",
    "OrderRejectedError",
    "PenaltyLimitError",
    "ProtocolError",
    "RateLimitedError",
    "RedactingFilter",
    "RedisTokenStore",
    "RenewalSchedule",
    "RequestFailedError",
    "RequestTimeoutError",
    "ResolvedEndpoints",
    "Response",
    "Secret",
    "SessionClosedError",
    "SessionStats",
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
    "WebSocketError",
    "WebSocketStats",
    "__version__",
    "default_token_file",
    "merged_settings",
    "install_redaction",
    "Bar",
    "BarSpec",
    "ChartStream",
    "ChartUpdate",
    "Daily",
    "DomLevel",
    "DomSnapshot",
    "Histogram",
    "LatestStream",
    "MarketData",
    "Minute",
    "PriceSize",
    "Quote",
    "QuoteEntries",
    "Range",
    "ReplayClock",
    "Tick",
    "TickStream",
    "Ticks",
    "Volume",
]

# Show the public path in reprs and tracebacks, as httpx does.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = "tradovate_async"
del _name, _obj
