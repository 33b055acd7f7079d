"""Who am I? ``GET /auth/me`` with a bearer-signed session.

python examples/me.py
"""

from __future__ import annotations

import anyio

from tradovate_async import TradovateConfig, TradovateSession


async def main() -> None:
    async with TradovateSession(TradovateConfig.from_env()) as session:
        me = await session.me()
        print(f"User ID: {me.user_id}")
        print(f"Username: {me.name}")
        print(f"Email: {me.email or 'Not provided'}")


if __name__ == "__main__":
    anyio.run(main)
