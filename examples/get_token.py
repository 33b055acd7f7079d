"""Get an access token: the source document's script, done right.

Reads credentials from the environment or ``.env``, reuses a stored token when one is still
fresh (the token endpoint allows 5 failed logins an hour and 2 sessions per user), waits out a
penalty ticket, and prints the first 8 characters of the token, its expiry and the user id.

    python examples/get_token.py
"""

from __future__ import annotations

import sys

import anyio

from tradovate_async import (
    ConfigError,
    FileTokenStore,
    TradovateConfig,
    TradovateError,
    TradovateSession,
)


async def main() -> int:
    try:
        config = TradovateConfig.from_env()
    except ConfigError as exc:
        print(f"Missing or invalid settings; see .env.example.\n{exc}", file=sys.stderr)
        return 2
    store = FileTokenStore.from_env()
    try:
        async with TradovateSession(config, store=store) as session:
            token = session.token
            print("SUCCESS: access token ready")
            print(f"Token: {token.access_token.prefix()}... (truncated for security)")
            print(f"Expiration Time: {token.expiration_time.isoformat()}")
            print(f"User ID: {token.user_id}")
    except TradovateError as exc:
        print(f"FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        await store.aclose()
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
