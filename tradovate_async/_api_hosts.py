"""Which hosts to talk to, from the ``apiHosts`` of a token answer (sans-I/O).

Since October 2026 NinjaTrader's "Dynamic API Hosts" page (docs.ninjatrader.com/api/
dynamic-api-hosts, quoted by several client repositories; recorded answers in ``tests/wire/``)
says token answers (``accesstokenrequest``, ``renewaccesstoken``) carry ``apiHosts``: bare
hostnames per purpose (``live``, ``demo``, ``mdLive``, ``mdDemo``, ``replay``, ...). Some
organisations (evaluation firms) run on their own hosts; a client that keeps calling the shared
host gets REST 307 redirects and WebSocket 421 refusals. The page asks clients to treat every
host as authoritative, to ignore keys they do not know, and to keep the previous hosts when an
answer has none (errors and MFA answers omit it).

So the session builds its URLs from the hosts the server names, with two guards: a host must
be a bare hostname (``_models.parse_api_hosts``), and it must lie under a Tradovate/NinjaTrader
domain — or, for a simulator on loopback, be loopback itself — so that no answer can send the
token anywhere else.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from ._config import TradovateConfig
from ._exports import publish
from ._models import AccessToken

__all__ = ["ResolvedEndpoints", "TRUSTED_SUFFIXES", "is_trusted_host", "resolve_endpoints"]

logger = logging.getLogger(__name__)

#: Domains whose hosts the client will send a token to when ``apiHosts`` names them.
TRUSTED_SUFFIXES: Final = (
    "tradovateapi.com",
    "tradovate.com",
    "ninjatrader.com",
    "ninjatrader.dev",
)


@dataclasses.dataclass(frozen=True, slots=True)
class ResolvedEndpoints:
    """The URLs in use: the configured ones, with the hosts ``apiHosts`` names put in."""

    api_url: str
    ws_url: str
    md_url: str
    replay_url: str


def _hostname(host: str) -> str:
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def is_trusted_host(host: str, configured_url: str) -> bool:
    """Whether a token may go to ``host`` (``name`` or ``name:port``): under a Tradovate or
    NinjaTrader domain, or loopback when the configured URL is loopback (a local simulator)."""
    name = _hostname(host).lower()
    if any(name == suffix or name.endswith("." + suffix) for suffix in TRUSTED_SUFFIXES):
        return True
    configured = urlsplit(configured_url).hostname or ""
    return _is_loopback(name) and _is_loopback(configured)


def _with_host(url: str, host: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _environment_kind(config: TradovateConfig) -> str:
    return "demo" if config.environment.endswith("demo") else "live"


def resolve_endpoints(config: TradovateConfig, token: AccessToken | None) -> ResolvedEndpoints:
    """The configured URLs with the hosts of ``token.api_hosts`` put in, purpose by purpose:
    trading REST and WebSocket from ``live``/``demo`` (by the configured environment), market
    data from ``mdLive``/``mdDemo``, replay from ``replay``. Scheme and path stay as configured;
    a purpose the answer does not name, or names with an untrusted host, keeps its URL."""
    kind = _environment_kind(config)
    urls = {
        "api_url": config.api_url,
        "ws_url": config.ws_url,
        "md_url": config.md_url,
        "replay_url": config.replay_url,
    }
    if token is None or not token.api_hosts:
        return ResolvedEndpoints(**urls)
    keys = {
        "api_url": kind,
        "ws_url": kind,
        "md_url": "mdDemo" if kind == "demo" else "mdLive",
        "replay_url": "replay",
    }
    for field, key in keys.items():
        host = token.api_host(key)
        if host is None:
            continue
        if not is_trusted_host(host, urls[field]):
            logger.warning(
                "apiHosts names %r for %s, which is not a Tradovate/NinjaTrader host: ignored",
                host,
                key,
            )
            continue
        urls[field] = _with_host(urls[field], host)
    return ResolvedEndpoints(**urls)


publish(globals())  # its public classes show tradovate_async.X (see _exports)
