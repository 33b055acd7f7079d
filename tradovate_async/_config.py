"""Settings: credentials and endpoints, read from arguments, the environment or a ``.env`` file."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from dotenv import dotenv_values

from ._errors import ConfigError
from ._exports import publish
from ._secret import Secret

__all__ = [
    "ENVIRONMENTS",
    "Endpoints",
    "TradovateConfig",
    "default_token_file",
    "merged_settings",
    "read_env_file",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoints:
    """The REST base (with ``/v1``) and the WebSocket URLs of one environment.

    Sources: live/demo/md/replay hosts from Tradovate's API documentation and official examples
    (``md.tradovateapi.com``, ``replay.tradovateapi.com``); the demo market-data host
    ``md-demo.tradovateapi.com`` is what the server itself names as ``mdDemo`` in the
    ``apiHosts`` of token answers since 2026 (the older examples used ``md`` for both); staging
    hosts from the partner API cheat sheet. The server's ``apiHosts`` win when it sends them.
    """

    api_url: str
    ws_url: str
    md_url: str
    replay_url: str


ENVIRONMENTS: Final[Mapping[str, Endpoints]] = {
    "live": Endpoints(
        "https://live.tradovateapi.com/v1",
        "wss://live.tradovateapi.com/v1/websocket",
        "wss://md.tradovateapi.com/v1/websocket",
        "wss://replay.tradovateapi.com/v1/websocket",
    ),
    "demo": Endpoints(
        "https://demo.tradovateapi.com/v1",
        "wss://demo.tradovateapi.com/v1/websocket",
        "wss://md-demo.tradovateapi.com/v1/websocket",
        "wss://replay.tradovateapi.com/v1/websocket",
    ),
    "staging-live": Endpoints(
        "https://live-api.staging.ninjatrader.dev/v1",
        "wss://live-api.staging.ninjatrader.dev/v1/websocket",
        "wss://md-api.staging.ninjatrader.dev/v1/websocket",
        "wss://replay.staging.ninjatrader.dev/v1/websocket",
    ),
    "staging-demo": Endpoints(
        "https://demo-api.staging.ninjatrader.dev/v1",
        "wss://demo-api.staging.ninjatrader.dev/v1/websocket",
        "wss://md-api.staging.ninjatrader.dev/v1/websocket",
        "wss://replay.staging.ninjatrader.dev/v1/websocket",
    ),
}

#: The source document's default base URL is the partner staging live host.
DEFAULT_ENVIRONMENT: Final = "staging-live"

# Variable name for each field, in the order they are reported.
ENV_VARS: Final[Mapping[str, str]] = {
    "username": "TRADOVATE_USERNAME",
    "password": "TRADOVATE_PASSWORD",
    "app_id": "TRADOVATE_APP_ID",
    "app_version": "TRADOVATE_APP_VERSION",
    "cid": "TRADOVATE_CID",
    "sec": "TRADOVATE_SEC",
    "device_id": "TRADOVATE_DEVICE_ID",
    "environment": "TRADOVATE_ENV",
    "api_url": "TRADOVATE_API_URL",
    "ws_url": "TRADOVATE_WS_URL",
    "md_url": "TRADOVATE_MD_URL",
    "replay_url": "TRADOVATE_REPLAY_URL",
}

_REQUIRED: Final = ("username", "password", "app_id", "sec", "device_id")
# Kept exactly as written: a space may be part of a password (quote it in a .env file).
_SECRETS: Final = ("password", "sec")
_MAX_FIELD = 64  # the token request schema caps name, password, appId, appVersion, deviceId


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(value: str, secure: str, plain: str) -> str | None:
    """What is wrong with a URL, or None. Plain schemes are allowed only to loopback hosts."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return "is not a URL"
    if parts.scheme not in (secure, plain) or not parts.hostname:
        return f"must be a {secure}:// URL"
    if parts.scheme == plain and not _is_loopback(parts.hostname):
        return f"must use {secure}:// for a host that is not loopback (TLS is never turned off)"
    try:
        port = parts.port
    except ValueError:
        return "has a port that is not a number from 1 to 65535"
    if port == 0:
        return "has a port that is not a number from 1 to 65535"
    return None


def _key_part(text: str) -> str:
    return text.replace("%", "%25").replace("|", "%7C")


def _derived_ws(api_url: str) -> str:
    parts = urlsplit(api_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}/websocket"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TradovateConfig:
    """Everything needed to log in and reach one Tradovate environment.

    Build it directly, or with :meth:`from_env`. ``password`` and ``sec`` are :class:`Secret`
    values (plain strings are wrapped), so printing a config never shows them.
    """

    username: str
    password: Secret
    app_id: str
    sec: Secret
    device_id: str
    app_version: str = "1.0"
    cid: int = 0
    environment: str = DEFAULT_ENVIRONMENT
    api_url: str = ""
    ws_url: str = ""
    md_url: str = ""
    replay_url: str = ""

    def __post_init__(self) -> None:
        for name in ("password", "sec"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, Secret(value))
        problems = self._problems()
        env = ENVIRONMENTS.get(self.environment, ENVIRONMENTS[DEFAULT_ENVIRONMENT])
        if not self.api_url:
            object.__setattr__(self, "api_url", env.api_url)
        object.__setattr__(self, "api_url", self.api_url.rstrip("/"))
        known = next((e for e in ENVIRONMENTS.values() if e.api_url == self.api_url), None)
        if not self.ws_url:
            object.__setattr__(self, "ws_url", known.ws_url if known else _derived_ws(self.api_url))
        if not self.md_url:
            object.__setattr__(self, "md_url", known.md_url if known else self.ws_url)
        if not self.replay_url:
            object.__setattr__(self, "replay_url", known.replay_url if known else self.md_url)
        problems.update(
            (ENV_VARS[field], why)
            for field, secure, plain in (
                ("api_url", "https", "http"),
                ("ws_url", "wss", "ws"),
                ("md_url", "wss", "ws"),
                ("replay_url", "wss", "ws"),
            )
            if (why := _check_url(getattr(self, field), secure, plain))
        )
        if problems:
            raise ConfigError(problems)

    def _problems(self) -> dict[str, str]:
        problems: dict[str, str] = {}
        for field in _REQUIRED:
            value = getattr(self, field)
            text = value.reveal() if isinstance(value, Secret) else value
            if not isinstance(text, str) or not text.strip():
                problems[ENV_VARS[field]] = "missing or empty"
            elif len(text) > (8192 if field == "sec" else _MAX_FIELD):
                problems[ENV_VARS[field]] = "too long"
        if not isinstance(self.cid, int) or isinstance(self.cid, bool) or self.cid < 0:
            problems[ENV_VARS["cid"]] = "must be a non-negative integer"
        if self.environment not in ENVIRONMENTS:
            problems[ENV_VARS["environment"]] = "must be one of " + ", ".join(ENVIRONMENTS)
        if not self.app_version or len(self.app_version) > _MAX_FIELD:
            problems[ENV_VARS["app_version"]] = "must be 1 to 64 characters"
        return problems

    @property
    def token_key(self) -> str:
        """The key under which token stores keep this user's token: environment, user, app.

        The parts are joined with ``|`` after ``%`` and ``|`` inside each part are
        percent-encoded, so no two (environment, user, app) triples share a key; names without
        those two characters keep the key that earlier versions wrote.
        """
        return "|".join(_key_part(p) for p in (self.api_url, self.username, self.app_id))

    @classmethod
    def from_env(
        cls,
        env_file: str | os.PathLike[str] | None = ".env",
        *,
        environ: Mapping[str, str] | None = None,
        username: str | None = None,
        password: str | Secret | None = None,
        app_id: str | None = None,
        app_version: str | None = None,
        cid: int | None = None,
        sec: str | Secret | None = None,
        device_id: str | None = None,
        environment: str | None = None,
        api_url: str | None = None,
        ws_url: str | None = None,
        md_url: str | None = None,
    ) -> TradovateConfig:
        """Read settings with the precedence: arguments > process environment > ``.env``.

        Each keyword argument overrides its variable (``None``: not overridden).
        ``env_file`` is read with ``dotenv_values`` and never written into ``os.environ``. The
        default ``.env`` may be absent; a file named explicitly must exist. Every missing or
        invalid variable is reported at once in one :class:`ConfigError`, without values.
        """
        overrides: dict[str, Any] = {
            "username": username,
            "password": password,
            "app_id": app_id,
            "app_version": app_version,
            "cid": cid,
            "sec": sec,
            "device_id": device_id,
            "environment": environment,
            "api_url": api_url,
            "ws_url": ws_url,
            "md_url": md_url,
        }
        process = os.environ if environ is None else environ
        kwargs, problems = _settings(overrides, process, _file_values(env_file))
        try:
            config = cls(**kwargs)
        except ConfigError as exc:
            problems.update(exc.problems)
        else:
            if not problems:
                return config
        raise ConfigError(problems)


def _file_values(env_file: str | os.PathLike[str] | None) -> dict[str, str | None]:
    """The ``.env`` file's values: the default file may be absent, a named one must exist."""
    if env_file is None:
        return {}
    path = Path(env_file)
    if path.is_file():
        values = read_env_file(path)
        logger.debug("read %d settings from %s", len(values), path)
        return values
    if str(env_file) != ".env":
        raise ConfigError({"env_file": f"{path} does not exist"})
    return {}


def _settings(
    overrides: Mapping[str, Any],
    process: Mapping[str, str],
    file_values: Mapping[str, str | None],
) -> tuple[dict[str, Any], dict[str, str]]:
    """``TradovateConfig`` keyword arguments (arguments > environment > file) and problems."""
    raw: dict[str, str] = {}
    for field, var in ENV_VARS.items():
        if overrides.get(field) is not None:
            continue
        value = process.get(var)
        if value is None:
            value = file_values.get(var)
        if value is not None:
            raw[field] = value if field in _SECRETS else value.strip()
    _warn_about_edge_spaces(raw)

    problems: dict[str, str] = {}
    kwargs: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    for field, value in raw.items():
        if field == "cid":
            try:
                kwargs["cid"] = int(value or "0")
            except ValueError:
                problems[ENV_VARS["cid"]] = "must be an integer"
        elif value or field in _REQUIRED:
            kwargs[field] = value
    for field in _REQUIRED:
        kwargs.setdefault(field, "")
    kwargs.setdefault("environment", DEFAULT_ENVIRONMENT)
    return kwargs, problems


def read_env_file(path: Path) -> dict[str, str | None]:
    """The assignments of a ``.env`` file, or a :class:`ConfigError` if it is not UTF-8.

    The error names the variable assigned on the first undecodable line (or ``env_file`` when
    that line assigns nothing) and the line number, never the bytes themselves.
    """
    try:
        return dict(dotenv_values(path, encoding="utf-8"))
    except UnicodeDecodeError as exc:
        data = exc.object if isinstance(exc.object, bytes) else b""
        line_no = data.count(b"\n", 0, exc.start) + 1
        start = data.rfind(b"\n", 0, exc.start) + 1
        line = data[start : exc.start].decode("utf-8", "replace").strip()
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        name, sep, _ = line.partition("=")
        name = name.strip()
        variable = name if sep and name.isidentifier() else "env_file"
        raise ConfigError(
            {variable: f"{path} is not valid UTF-8 (line {line_no}); save it as UTF-8"}
        ) from None
    except OSError as exc:
        raise ConfigError({"env_file": f"cannot read {path}: {exc.strerror or exc}"}) from None


def _warn_about_edge_spaces(raw: Mapping[str, str]) -> None:
    """A WARNING, before any login, for a secret with spaces at either end (kept as written)."""
    for field in _SECRETS:
        value = raw.get(field)
        if value and value != value.strip():
            logger.warning(
                "%s has leading or trailing whitespace, which is kept as part of the value; "
                "remove it if it is not part of the secret",
                ENV_VARS[field],
            )


def default_token_file(settings: Mapping[str, str] | None = None) -> Path:
    """Where the CLI and examples keep tokens: ``TRADOVATE_TOKEN_FILE``, else
    ``$XDG_CACHE_HOME/tradovate-async/tokens.json`` (``~/.cache`` by default).

    ``settings`` defaults to the process environment merged over ``./.env``.
    """
    env = merged_settings() if settings is None else settings
    explicit = env.get("TRADOVATE_TOKEN_FILE")
    if explicit:
        return Path(explicit).expanduser()
    cache = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "tradovate-async" / "tokens.json"


def merged_settings(env_file: str | os.PathLike[str] | None = ".env") -> dict[str, str]:
    """The process environment over the ``.env`` file (non-empty values only), for settings
    beyond :class:`TradovateConfig`'s own, such as ``TRADOVATE_TOKEN_FILE`` or
    ``TRADOVATE_REDIS_URL``. Nothing is written into ``os.environ``."""
    merged: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        merged.update({k: v for k, v in read_env_file(Path(env_file)).items() if v})
    merged.update(os.environ)
    return merged


publish(globals())  # its public classes show tradovate_async.X (see _exports)
