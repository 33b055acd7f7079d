"""``tradovate-async doctor``: what is wrong on this machine, as a checklist.

Each line is one check with a verdict (``ok``, ``warn``, ``fail``, ``skip``): the configuration
and where every variable came from, the host clock against the server's ``Date`` header, DNS and
TLS to each host, the token store, a login (or the adoption of a stored token), ``/auth/me``
and the terms-and-conditions flag, authorize on both sockets, and the request budget. Checks
that need an earlier one that failed are skipped, never guessed. Exit codes follow monitoring
conventions: 0 all ok, 1 a warning, 2 a failure. Secrets are masked; tokens show 8 characters.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import json
import logging
import os
import socket
import ssl
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import httpx
from anyio.streams.tls import TLSAttribute
from dotenv import dotenv_values

from ._config import ENV_VARS, TradovateConfig, default_token_file
from ._errors import ConfigError, TradovateError
from ._models import AccessToken
from ._store import MemoryTokenStore, TokenStore
from ._version import __version__

if TYPE_CHECKING:
    from ._session import TradovateSession

__all__ = ["Check", "Doctor", "DoctorOptions", "Report", "run_doctor"]

logger = logging.getLogger(__name__)

Verdict = Literal["ok", "warn", "fail", "skip"]
_RANK: Mapping[Verdict, int] = {"skip": 0, "ok": 0, "warn": 1, "fail": 2}
_SECRET_VARS = frozenset({"TRADOVATE_PASSWORD", "TRADOVATE_SEC", "TRADOVATE_TOKEN_KEY"})
_EXTRA_VARS = ("TRADOVATE_TOKEN_FILE", "TRADOVATE_TOKEN_KEY")
CLOCK_WARN_SECONDS = 3.0  # the Date header has a 1 s resolution; past 3 s it is the host's clock
CERT_WARN_DAYS = 14
FRESH_MARGIN = dt.timedelta(minutes=5)  # the session renews 5 minutes before expiry


@dataclasses.dataclass(slots=True)
class Check:
    """One line of the report: a verdict, a one-line summary and optional detail lines."""

    name: str
    verdict: Verdict
    summary: str
    details: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DoctorOptions:
    """What the command line passes to :func:`run_doctor`."""

    env_file: str = ".env"
    token_file: Path | None = None
    no_store: bool = False
    ca_file: str | None = None
    timeout: float = 15.0


@dataclasses.dataclass(slots=True)
class Report:
    """Every check, in order, with the overall verdict and exit code."""

    checks: list[Check] = dataclasses.field(default_factory=list)

    def add(
        self, name: str, verdict: Verdict, summary: str, details: list[str] | None = None
    ) -> Check:
        check = Check(name, verdict, summary, details or [])
        self.checks.append(check)
        return check

    @property
    def verdict(self) -> Verdict:
        worst = max((_RANK[c.verdict] for c in self.checks), default=0)
        return {0: "ok", 1: "warn", 2: "fail"}[worst]  # type: ignore[return-value]

    @property
    def exit_code(self) -> int:
        return _RANK[self.verdict]

    def to_text(self) -> str:
        lines = [f"tradovate-async {__version__} doctor"]
        for check in self.checks:
            lines.append(f"[{check.verdict.upper():>4}] {check.name}: {check.summary}")
            lines.extend(f"         {detail}" for detail in check.details)
        counts = {v: sum(c.verdict == v for c in self.checks) for v in ("fail", "warn")}
        lines.append(
            f"verdict: {self.verdict.upper()} ({counts['fail']} failed, {counts['warn']} warnings)"
        )
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": __version__,
                "verdict": self.verdict,
                "exit_code": self.exit_code,
                "checks": [dataclasses.asdict(c) for c in self.checks],
            },
            indent=2,
        )


def _mask(var: str, value: str) -> str:
    if var in _SECRET_VARS:
        return f"******** ({len(value)} characters)" if value else "(empty)"
    return value


def _settings(options: DoctorOptions) -> tuple[dict[str, str], dict[str, str]]:
    """The merged settings (environment over ``.env``) and where each variable came from."""
    file_values: dict[str, str] = {}
    path = Path(options.env_file)
    if path.is_file():
        try:
            file_values = {k: v for k, v in dotenv_values(path).items() if v}
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                {"env_file": f"{path} is unreadable ({type(exc).__name__})"}
            ) from None
    elif options.env_file != ".env":
        raise ConfigError({"env_file": f"{path} does not exist"})
    merged, sources = dict(file_values), dict.fromkeys(file_values, f".env ({path.resolve()})")
    for var in [*ENV_VARS.values(), *_EXTRA_VARS, "XDG_CACHE_HOME"]:
        if os.environ.get(var):
            merged[var], sources[var] = os.environ[var], "environment"
    for key, value in os.environ.items():
        merged.setdefault(key, value)
    return merged, sources


def check_configuration(
    report: Report, options: DoctorOptions
) -> tuple[TradovateConfig | None, dict[str, str]]:
    """Every variable, its (masked) value and its source; the config, if it is complete."""
    try:
        merged, sources = _settings(options)
    except ConfigError as exc:
        report.add("configuration", "fail", str(exc))
        return None, {}
    try:
        config = TradovateConfig.from_env(options.env_file)
    except ConfigError as exc:
        problems = [f"{var}: {why}" for var, why in exc.problems.items()]
        config = None
    else:
        problems = []
    details = []
    for field, var in ENV_VARS.items():
        if var in sources:
            details.append(f"{var} = {_mask(var, merged[var])}  [{sources[var]}]")
        else:
            resolved = getattr(config, field, None) if config is not None else None
            shown = "" if resolved is None else f" {_mask(var, str(resolved))}"
            details.append(f"{var} = (not set){shown}  [default]")
    for var in _EXTRA_VARS:
        value = merged.get(var)
        details.append(
            f"{var} = {_mask(var, value) if value else '(not set)'}  [{sources.get(var, 'default')}]"
        )
    if config is None:
        report.add("configuration", "fail", "incomplete: " + "; ".join(problems), details)
    else:
        found = sum(var in sources for var in ENV_VARS.values())
        report.add(
            "configuration",
            "ok",
            f"{found} variables set, environment {config.environment}, API {config.api_url}",
            details,
        )
    return config, merged


def describe_file(path: Path) -> tuple[Verdict, list[str]]:
    """The token file's mode and owner; ``warn`` when other users may read it."""
    path = path.expanduser()
    try:
        info = path.stat()
    except FileNotFoundError:
        return "ok", [f"{path} does not exist yet (the first login creates it)"]
    except OSError as exc:
        return "fail", [f"{path}: {type(exc).__name__}: {exc}"]
    if not stat.S_ISREG(info.st_mode):
        return "fail", [f"{path} is not a regular file"]
    mode = stat.S_IMODE(info.st_mode)
    owner = "this user" if info.st_uid == os.getuid() else f"uid {info.st_uid}, not this user"
    lines = [f"{path}: mode {mode:04o}, owner {owner}, {info.st_size} bytes"]
    if mode & 0o077 or info.st_uid != os.getuid():
        lines.append("other users may read it: chmod 600 and chown it to the bot's user")
        return "warn", lines
    return "ok", lines


def token_summary(token: AccessToken, server_now: dt.datetime) -> str:
    """Prefix and remaining lifetime of ``token`` by the server's clock (never the token)."""
    left = token.expiration_time - server_now
    state = (
        "expired" if left <= dt.timedelta(0) else f"expires in {left.total_seconds() / 60:.0f} min"
    )
    return f"token {token.access_token.prefix()}... {state} (server clock)"


class _Collect(logging.Handler):
    """WARNING records of one logger tree while in the ``with`` block (the store's verdicts)."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self._logger = logging.getLogger(name)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> _Collect:
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)


class Doctor:
    """Runs the checks in order against one configuration and fills a :class:`Report`."""

    def __init__(self, options: DoctorOptions) -> None:
        self.options = options
        self.report = Report()
        self.context = ssl.create_default_context(cafile=options.ca_file)
        self.offset = 0.0  # the server's clock minus the host's, seconds

    def server_now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.offset)

    async def run(self) -> Report:
        config, settings = check_configuration(self.report, self.options)
        if config is None:
            return self.report
        await self.check_clock(config)
        hosts: dict[tuple[bool, str | None, int | None], str] = {}  # one per scheme, host, port
        for url in (config.api_url, config.ws_url, config.md_url):
            parts = urlsplit(url)
            hosts.setdefault((parts.scheme in ("https", "wss"), parts.hostname, parts.port), url)
        for url in hosts.values():
            await self.check_host(url)
        store = await self.check_store(config, settings)
        if store is None:
            self._skip("needs a usable token store", "login", "/auth/me", "sockets")
            return self.report
        try:
            await self.check_session(config, store)
        finally:
            await store.aclose()
        return self.report

    def _skip(self, why: str, *names: str) -> None:
        for name in names:
            self.report.add(name, "skip", why)

    async def check_clock(self, config: TradovateConfig) -> None:
        """The server's clock against the host's, from the ``Date`` header of one request."""
        url = f"{config.api_url}/auth/me"  # unauthenticated: a 401 whose Date header is enough
        limit = self.options.timeout
        try:
            async with httpx.AsyncClient(verify=self.context, timeout=limit, trust_env=False) as c:
                sent = time.time()
                response = await c.get(url)
                received = time.time()
        except httpx.HTTPError as exc:
            self.report.add("clock", "fail", f"no answer from {url} ({type(exc).__name__}: {exc})")
            return
        header = response.headers.get("date")
        try:
            server = email.utils.parsedate_to_datetime(header).timestamp() if header else None
        except (TypeError, ValueError):
            server = None
        if server is None:
            self.report.add("clock", "warn", f"{config.api_url} sent no usable Date header")
            return
        rtt = received - sent
        # A Date header is truncated to the second: its moment lies half a second later on average.
        self.offset = server + 0.5 - (sent + received) / 2
        where = "ahead of" if self.offset > 0 else "behind"
        summary = (
            f"the server's clock is {abs(self.offset):.1f} s {where} this host's "
            f"(Date header, round trip {rtt * 1000:.0f} ms)"
        )
        if abs(self.offset) > CLOCK_WARN_SECONDS + rtt:
            why = "token expiry is judged on the server's clock; fix the host clock (NTP)"
            self.report.add("clock", "warn", summary, [why])
        else:
            self.report.add("clock", "ok", summary)

    async def check_host(self, url: str) -> None:
        """DNS, TCP and (for https/wss) TLS with the certificate verified, to ``url``'s host."""
        parts = urlsplit(url)
        host, secure = parts.hostname or "", parts.scheme in ("https", "wss")
        port = parts.port or (443 if secure else 80)
        name = f"host {host}:{port}"
        try:
            with anyio.fail_after(self.options.timeout):
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as exc:
            self.report.add(name, "fail", f"DNS lookup failed ({type(exc).__name__}: {exc})")
            return
        details = ["resolves to " + ", ".join(sorted({str(info[4][0]) for info in infos}))]
        try:
            with anyio.fail_after(self.options.timeout):
                if secure:
                    tls = await anyio.connect_tcp(host, port, ssl_context=self.context)
                    async with tls:
                        cert = tls.extra(TLSAttribute.peer_certificate)  # noqa: S610
                        version = tls.extra(TLSAttribute.tls_version)  # noqa: S610
                else:
                    plain = await anyio.connect_tcp(host, port)
                    await plain.aclose()
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            what = "TLS" if secure else "TCP"
            summary = f"{what} connection failed ({type(exc).__name__}: {exc})"
            self.report.add(name, "fail", summary, details)
            return
        if not secure:
            self.report.add(name, "ok", "DNS and TCP (plain: loopback only, no TLS)", details)
            return
        if not cert:
            self.report.add(name, "fail", "the server showed no certificate", details)
            return
        expires = dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(str(cert["notAfter"])), dt.UTC)
        details.append(f"{version}, certificate valid until {expires:%Y-%m-%d}")
        days = (expires - dt.datetime.now(dt.UTC)).days
        verdict: Verdict = "warn" if days < CERT_WARN_DAYS else "ok"
        self.report.add(name, verdict, "DNS, TCP and TLS (certificate verified)", details)

    async def check_store(
        self, config: TradovateConfig, settings: Mapping[str, str]
    ) -> TokenStore | None:
        """Path, mode, owner, lock and content of the token file; the store, None if unusable."""
        if self.options.no_store:
            self.report.add("token store", "skip", "--no-store: the token lives in memory only")
            return MemoryTokenStore()
        from ._file_store import FileTokenStore

        path = self.options.token_file or default_token_file(settings)
        verdict, details = await anyio.to_thread.run_sync(describe_file, path)
        if verdict == "fail":
            self.report.add("token store", "fail", "unusable", details)
            return None
        try:
            store = FileTokenStore.from_env(path, environ=settings, lock_wait=self.options.timeout)
            details.append(
                "encrypted (TRADOVATE_TOKEN_KEY)" if store.encrypted else "not encrypted"
            )
            with (
                anyio.fail_after(self.options.timeout + 1),
                _Collect("tradovate_async") as warnings,
            ):
                async with store.lock(config.token_key):
                    token = await store.load(config.token_key)
        except (TradovateError, TimeoutError, OSError) as exc:
            summary = f"unusable ({type(exc).__name__}: {exc})"
            self.report.add("token store", "fail", summary, details)
            return None
        if warnings.records:  # the store ignores what it cannot use and says so at WARNING
            verdict = "warn" if verdict == "ok" else verdict
            details.extend(record.getMessage() for record in warnings.records)
        if token is None:
            summary = "readable and lockable; no token stored for this user yet"
        else:
            fresh = token.expiration_time - self.server_now() > FRESH_MARGIN
            summary = "readable and lockable; " + (
                "a fresh token is stored" if fresh else "the stored token is stale (renewed next)"
            )
            details.append(token_summary(token, self.server_now()))
        self.report.add("token store", verdict, summary, details)
        return store

    async def check_session(self, config: TradovateConfig, store: TokenStore) -> None:
        """A login (or adoption), ``/auth/me``, the terms flag, both sockets, the budget."""
        from ._session import TradovateSession

        limit = self.options.timeout
        # A custom context only with --ca-file: the session hands it to ws:// sockets too.
        verify = self.context if self.options.ca_file else True
        session = TradovateSession(config, store=store, verify=verify, timeout=limit)
        logged_in = False
        try:
            async with session:  # logs in (or adopts the stored token) on entry
                logged_in = True
                how = (
                    "adopted the stored token" if session.stats.adopted_from_store else "logged in"
                )
                summary = f"{how}: {token_summary(session.token, self.server_now())}"
                self.report.add("login", "ok", summary)
                if await self.check_me(session):
                    await self.check_socket(session, "trading")
                    await self.check_socket(session, "md")
                self.check_budget(session)
        except TradovateError as exc:
            if logged_in:
                raise
            self.report.add("login", "fail", f"{type(exc).__name__}: {exc}")
            self._skip("needs a token", "/auth/me", "sockets")

    async def check_me(self, session: TradovateSession) -> bool:
        """``/auth/me`` and ``outdatedTaC``; whether the API answered."""
        try:
            with anyio.fail_after(self.options.timeout):
                me = await session.me()
        except (TradovateError, TimeoutError) as exc:
            self.report.add("/auth/me", "fail", f"{type(exc).__name__}: {exc}")
            return False
        self.report.add("/auth/me", "ok", f"user {me.name} (id {me.user_id})")
        outdated = session.token.outdated_tac
        if outdated is None:
            self.report.add("terms", "skip", "the token answer carried no outdatedTaC")
        elif outdated:
            self.report.add("terms", "warn", "outdatedTaC: accept the new terms at tradovate.com")
        else:
            self.report.add("terms", "ok", "outdatedTaC is false")
        return True

    async def check_socket(self, session: TradovateSession, kind: Literal["trading", "md"]) -> None:
        """Open the socket, authorize, close it again."""
        url = session.config.ws_url if kind == "trading" else session.config.md_url
        started = time.monotonic()
        try:
            with anyio.fail_after(self.options.timeout * 2):
                async with session.websocket(kind, timeout=self.options.timeout):
                    elapsed = time.monotonic() - started
        except Exception as exc:  # a diagnosis, not a crash: anything here is a failed check
            summary = f"authorize failed on {url} ({type(exc).__name__}: {exc})"
            self.report.add(f"{kind} socket", "fail", summary)
            return
        summary = f"authorized on {url} in {elapsed * 1000:.0f} ms"
        self.report.add(f"{kind} socket", "ok", summary)

    def check_budget(self, session: TradovateSession) -> None:
        """The request budget: what is left where the budget says, else its limits and use."""
        budget: Any = getattr(session, "budget", None)
        if budget is None:
            self.report.add("request budget", "skip", "n/a: no local request budget here")
            return
        remaining = getattr(budget, "remaining", None)
        if callable(remaining):
            self.report.add("request budget", "ok", f"left: {remaining()}")
            return
        limits, stats = getattr(budget, "limits", None), getattr(budget, "stats", None)
        parts = [
            f"{getattr(limits, 'per_hour', '?')} requests an hour",
            f"{getattr(limits, 'syncrequests_per_hour', '?')} user/syncrequest an hour",
            f"this run used {getattr(stats, 'counted', '?')}",
        ]
        self.report.add("request budget", "ok", ", ".join(parts) + " (what is left: not exposed)")


async def run_doctor(options: DoctorOptions) -> Report:
    """Every check, in order. Never raises for what it diagnoses."""
    return await Doctor(options).run()
