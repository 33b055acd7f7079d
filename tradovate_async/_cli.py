"""The ``tradovate-async`` command: token, me, sim, demo, doctor.

Exit codes: 0 success, 1 an API or authentication error, 2 a configuration error. Errors go to
stderr; no secret is printed beyond the 8-character prefix the source document shows.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import anyio

from ._config import TradovateConfig, default_token_file, merged_settings
from ._errors import ConfigError, TradovateError
from ._logging import redact
from ._secret import SecretScrubber
from ._store import MemoryTokenStore, TokenStore
from ._version import __version__

__all__ = ["main"]

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_API, EXIT_CONFIG = 0, 1, 2


def _store(args: argparse.Namespace) -> TokenStore:
    """The file store shared with every other run and bot of this user (``--no-store``: none).

    ``TRADOVATE_TOKEN_KEY`` (environment or ``.env``) encrypts the file at rest.
    """
    if args.no_store:
        return MemoryTokenStore()
    from ._file_store import FileTokenStore

    settings = merged_settings(args.env_file)
    path = args.token_file or default_token_file(settings)
    return FileTokenStore.from_env(path, environ=settings)


def _setup_logging(verbose: bool) -> None:
    from ._logging import RedactingFilter

    if not verbose:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        for handler in logging.getLogger().handlers:
            handler.addFilter(RedactingFilter())
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env-file", default=".env", help="the .env file to read (default .env)")
    parser.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help="token store file (default $TRADOVATE_TOKEN_FILE or ~/.cache/tradovate-async/tokens.json)",
    )
    parser.add_argument(
        "--no-store", action="store_true", help="keep the token in memory only (logs in every run)"
    )
    parser.add_argument("--verbose", action="store_true", help="DEBUG logs on stderr (redacted)")


async def _cmd_token(args: argparse.Namespace, config: TradovateConfig) -> None:
    from ._session import TradovateSession  # HTTP and sockets load only for commands that log in

    store = _store(args)
    try:
        async with TradovateSession(config, store=store) as session:
            token = session.token
            print(f"Token: {token.access_token.prefix()}... (truncated for security)")
            print(f"Expiration Time: {token.expiration_time.isoformat().replace('+00:00', 'Z')}")
            print(f"User ID: {token.user_id}")
    finally:
        await store.aclose()


async def _cmd_me(args: argparse.Namespace, config: TradovateConfig) -> None:
    from ._session import TradovateSession

    store = _store(args)
    try:
        async with TradovateSession(config, store=store) as session:
            me = await session.me()
            print(f"User ID: {me.user_id}")
            print(f"Username: {me.name}")
            print(f"Email: {me.email or 'Not provided'}")
    finally:
        await store.aclose()


def _run_with_config(
    args: argparse.Namespace,
    command: Callable[[argparse.Namespace, TradovateConfig], Awaitable[None]],
) -> int:
    try:
        config = TradovateConfig.from_env(args.env_file)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        print(
            "Set the variables in the environment or in a .env file (see .env.example).",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    # Alive for the whole run: log redaction scrubs these values (any encoding) from every
    # record, and the final error line is scrubbed with it too.
    scrub = SecretScrubber([config.password.reveal(), config.sec.reveal()])
    try:
        anyio.run(command, args, config)
    except ConfigError as exc:
        print(f"configuration error: {scrub(str(exc))}", file=sys.stderr)
        return EXIT_CONFIG
    except TradovateError as exc:
        print(f"error: {type(exc).__name__}: {scrub(redact(str(exc)))}", file=sys.stderr)
        return EXIT_API
    return EXIT_OK


def _cmd_sim(args: argparse.Namespace) -> int:
    from .sim import SimulatedTradovate

    sim = SimulatedTradovate(
        port=args.port,
        host=args.host,
        token_lifetime=args.token_lifetime,
        market_speed=args.market_speed,
    )
    sim.start()
    user = sim.users[0]
    print("Tradovate simulator running; point a bot at it with:")
    print(f"TRADOVATE_API_URL={sim.api_url}")
    print(f"TRADOVATE_WS_URL={sim.ws_url}")
    print(f"TRADOVATE_MD_URL={sim.md_url}")
    print(f"TRADOVATE_REPLAY_URL={sim.replay_url}")
    print(f"TRADOVATE_USERNAME={user.username}")
    print(f"TRADOVATE_APP_ID={user.app_id}")
    print("TRADOVATE_DEVICE_ID=any-stable-id")
    print("(password and secret: the SimUser defaults in the README's simulator section)")
    print("Press Ctrl-C to stop.", flush=True)
    sim.serve_forever()
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    try:
        anyio.run(run_demo)
    except TradovateError as exc:
        print(f"demo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_API
    return EXIT_OK


def _cmd_doctor(args: argparse.Namespace) -> int:
    from ._doctor import DoctorOptions, run_doctor

    options = DoctorOptions(
        env_file=args.env_file,
        token_file=args.token_file,
        no_store=args.no_store,
        ca_file=args.ca_file,
        timeout=args.timeout,
    )
    report = anyio.run(run_doctor, options)
    print(report.to_json() if args.json else report.to_text())
    return report.exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tradovate-async",
        description="Tradovate API client: tokens, /auth/me, and an offline simulator.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    token = commands.add_parser(
        "token", help="get (or reuse) an access token and show its first 8 characters"
    )
    _add_common(token)
    me = commands.add_parser("me", help="show /auth/me for the configured user")
    _add_common(me)
    sim = commands.add_parser("sim", help="run the Tradovate simulator in the foreground")
    sim.add_argument("--port", type=int, default=8765, help="port on the host (default 8765)")
    sim.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    sim.add_argument(
        "--token-lifetime", type=float, default=5400.0, help="token lifetime in seconds (5400)"
    )
    sim.add_argument(
        "--market-speed",
        type=float,
        default=1.0,
        help="market time runs this many times faster than the clock (default 1)",
    )
    sim.add_argument("--verbose", action="store_true", help="DEBUG logs on stderr (redacted)")
    demo = commands.add_parser(
        "demo", help="run the whole flow offline against a built-in simulator"
    )
    demo.add_argument("--verbose", action="store_true", help="DEBUG logs on stderr (redacted)")
    doctor = commands.add_parser(
        "doctor",
        help="check configuration, clock, network, token store, login and sockets "
        "(exit 0 ok, 1 warning, 2 failure)",
    )
    _add_common(doctor)
    doctor.add_argument("--json", action="store_true", help="the report as JSON, for monitoring")
    doctor.add_argument("--ca-file", default=None, help="PEM file of extra trusted CAs (TLS)")
    doctor.add_argument(
        "--timeout", type=float, default=15.0, help="seconds per network step (default 15)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    if args.command == "token":
        return _run_with_config(args, _cmd_token)
    if args.command == "me":
        return _run_with_config(args, _cmd_me)
    if args.command == "sim":
        return _cmd_sim(args)
    if args.command == "doctor":
        return _cmd_doctor(args)
    return _cmd_demo(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
