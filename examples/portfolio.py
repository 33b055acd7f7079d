"""Accounts, cash, positions and contracts through the typed API.

``session.api.<entity>.<operation>(...)`` returns typed models (``Account``, ``CashBalance``,
``Position``, ``Contract``...); the same calls work on a trading socket as ``ws.api``.

python examples/portfolio.py
"""

from __future__ import annotations

import anyio

from tradovate_async import TradovateConfig, TradovateSession


async def main() -> None:
    async with TradovateSession(TradovateConfig.from_env()) as session:
        accounts = await session.api.account.list()
        for account in accounts:
            snapshot = await session.api.cash_balance.get_cash_balance_snapshot(
                account_id=account.id
            )
            print(
                f"{account.name} (id {account.id}, {account.account_type}): "
                f"cash {snapshot.total_cash_value}, net liq {snapshot.net_liq}"
            )
        positions = await session.api.position.ldeps([a.id for a in accounts])
        contracts = {
            c.id: c for c in await session.api.contract.items(p.contract_id for p in positions)
        }
        for position in positions:
            name = (
                contracts[position.contract_id].name if position.contract_id in contracts else "?"
            )
            print(f"position {name}: {position.net_pos:+d} @ {position.net_price}")
        if not positions:
            print("no positions")
        async with session.websocket() as ws:  # the same API over the trading socket
            product = await ws.api.product.find("ES")
            maturities = await ws.api.contract_maturity.deps(product.id)
            maturity = next(m for m in maturities if m.is_front)
            [contract] = await ws.api.contract.deps(maturity.id)
            print(
                f"front month {contract.name}: contract {contract.id}, expires {maturity.expiration_date:%Y-%m-%d}, "
                f"tick {product.tick_size}, ${product.value_per_point:g} per point"
            )


if __name__ == "__main__":
    anyio.run(main)
