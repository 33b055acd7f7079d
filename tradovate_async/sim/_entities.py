"""Every entity of the REST catalogue, held as wire-format dicts, and the seeded start state.

The store knows nothing of HTTP: :mod:`._routes` answers the standard operations from it and
the command handlers (orders included) change it. Who may see a record follows its links: a
record with ``accountId`` belongs to that account's user, one with ``userId`` to that user; a
record without either follows its ``deps`` master (a fill its order, a margin snapshot the
account with the same id); records linked to neither (contracts, products, exchanges) are
public.

Seeding: exchanges, currencies, contract groups, products, maturities and contracts for the
front-month equity index and energy futures; per user the user, accounts, cash balances and
the positions their ``SimAccount`` lists; then one sample of every other catalogue entity not
tied to trading, linked to the seeded records, so every endpoint has something to answer.
Trading entities (orders, fills, commands, ...) start empty and come from the order handlers.

Not thread-safe on its own: the simulator calls it under ``SimState.lock``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Iterable
from typing import Any

from .._catalogue import Catalogue, EntitySpec, FieldSpec
from ._instruments import EXCHANGES, PRODUCTS, maturities
from ._market import contract_entity, contract_id, iso_time, product_entity
from ._prices import product_spec
from ._types import SimAccount, SimUser

__all__ = ["TRADING_ENTITIES", "EntityStore"]

logger = logging.getLogger(__name__)

# Entities that only trading creates; they start empty.
TRADING_ENTITIES = frozenset(
    {
        "order",
        "orderVersion",
        "command",
        "commandReport",
        "executionReport",
        "fill",
        "fillPair",
        "fillFee",
        "orderStrategy",
        "orderStrategyLink",
        "cashBalanceLog",
    }
)
# Entities that get no made-up sample: trading creates them, or the SimAccount lists them.
_NO_SAMPLES = TRADING_ENTITIES | {"position"}
_ID_BASE = 100_000


class EntityStore:
    """Records per entity, keyed by id; visibility per user; the seeded start state."""

    def __init__(self, catalogue: Catalogue, users: Iterable[SimUser], now: float) -> None:
        self.catalogue = catalogue
        self.users = {u.username: u for u in users}
        self._records: dict[str, dict[int, dict[str, Any]]] = {n: {} for n in catalogue.entities}
        self._ids = {
            name: itertools.count(_ID_BASE * (i + 1) + 1)
            for i, name in enumerate(sorted(catalogue.entities))
        }
        self._account_owner = {a.id: u for u in self.users.values() for a in u.accounts}
        self._seed(now)

    # -- records -----------------------------------------------------------------------------

    def next_id(self, entity: str) -> int:
        while True:
            candidate = next(self._ids[entity])
            if candidate not in self._records[entity]:
                return candidate

    def add(self, entity: str, record: dict[str, Any]) -> dict[str, Any]:
        """Store ``record`` (giving it an id if it has none) and return it."""
        if "id" not in record:
            record = {"id": self.next_id(entity), **record}
        self._records[entity][record["id"]] = record
        return record

    def get(self, entity: str, ident: object) -> dict[str, Any] | None:
        table = self._records.get(entity)
        if table is None or isinstance(ident, bool) or not isinstance(ident, int):
            return None
        return table.get(ident)

    def update(self, entity: str, ident: int, changes: dict[str, Any]) -> dict[str, Any] | None:
        record = self.get(entity, ident)
        if record is None:
            return None
        record.update(changes)
        return record

    def remove(self, entity: str, ident: int) -> dict[str, Any] | None:
        return self._records[entity].pop(ident, None)

    def values(self, entity: str) -> list[dict[str, Any]]:
        return list(self._records[entity].values())

    def visible(self, user: SimUser, entity: str) -> list[dict[str, Any]]:
        """The records of ``entity`` that ``user`` may see, in id order."""
        return [
            r
            for _, r in sorted(self._records[entity].items())
            if self.owner(entity, r) in (None, user.username)
        ]

    def owner(self, entity: str, record: dict[str, Any], depth: int = 0) -> str | None:
        """The username a record belongs to, or None for public records."""
        if entity == "user":
            return self._user_name(record.get("id"))
        if entity == "account":
            return self._user_name(record.get("userId"))
        if "accountId" in record:
            owner = self._account_owner.get(record["accountId"])
            return owner.username if owner else "<nobody>"
        if "userId" in record:
            return self._user_name(record["userId"])
        spec = self.catalogue.entities[entity]
        if spec.master and spec.master_field and depth < 8:
            master = self.get(spec.master, record.get(spec.master_field))
            if master is not None:
                return self.owner(spec.master, master, depth + 1)
            if spec.master in ("account", "user"):
                return "<nobody>"
        return None

    def _user_name(self, user_id: object) -> str:
        for user in self.users.values():
            if user.user_id == user_id:
                return user.username
        return "<nobody>"

    def account_of(self, entity: str, record: dict[str, Any]) -> int | None:
        """The account a record belongs to (for ``syncrequest``'s ``accounts`` filter)."""
        if entity == "account":
            return int(record["id"])
        if isinstance(record.get("accountId"), int):
            return int(record["accountId"])
        spec = self.catalogue.entities[entity]
        if spec.master and spec.master_field and spec.master != "user":
            master = self.get(spec.master, record.get(spec.master_field))
            if master is not None:
                return self.account_of(spec.master, master)
        return None

    def contract(self, symbol: str | int) -> dict[str, Any]:
        """The contract for a symbol or id; unknown ones are made up (and stored) the way the
        quote feed makes up prices, so any symbol can be quoted and traded."""
        cid = contract_id(symbol)
        found = self.get("contract", cid)
        if found is None:
            found = self.add("contract", contract_entity(symbol))
        return found

    def product(self, name: str) -> dict[str, Any]:
        """The product named ``name``; unknown ones are made up (and stored) like contracts."""
        for record in self._records["product"].values():
            if record.get("name") == name:
                return record
        made = {"exchangeId": 1, "contractGroupId": 1, **product_entity(name)}
        return self.get("product", made["id"]) or self.add("product", made)

    def find_contract(self, name: str) -> dict[str, Any] | None:
        for record in self._records["contract"].values():
            if record.get("name") == name:
                return record
        return None

    # -- seeding -----------------------------------------------------------------------------

    def _seed(self, now: float) -> None:
        stamp = iso_time(now)
        for name, ident in EXCHANGES.items():
            self.add("exchange", {"id": ident, "name": name})
        self.add("currency", {"id": 1, "name": "USD", "symbol": "$"})
        self.add("contractGroup", {"id": 1, "name": "Equity Index"})
        self.add("contractGroup", {"id": 2, "name": "Energy"})
        for product in PRODUCTS:
            self.add("product", product.entity())
            for pair in maturities(product, now):
                self.add("contractMaturity", pair["maturity"])
                self.add("contract", pair["contract"])
        for user in self.users.values():
            self.add("user", user_entity(user))
            for account in user.accounts:
                self.add("account", account_entity(user, account))
                self.add("cashBalance", cash_balance(account, now))
                for position in account.positions:
                    contract = self._contract_for(position.symbol, now)
                    price = position.net_price
                    if price is None:
                        price = product_spec(contract["name"]).base_price
                    self.add(
                        "position",
                        position_entity(account.id, contract, position.net_pos, price, now),
                    )
        samples = [
            n for n in self._dependency_order() if n not in _NO_SAMPLES and not self._records[n]
        ]
        for entity in samples:
            for context in self._contexts(entity):
                self.add(entity, self.sample(entity, context, stamp))

    def _contract_for(self, symbol: str, now: float) -> dict[str, Any]:
        for product in PRODUCTS:
            if product.name == symbol:
                return dict(maturities(product, now, 1)[0]["contract"])
        return self.contract(symbol)

    def _dependency_order(self) -> list[str]:
        def depth(name: str) -> int:
            seen = 0
            spec: EntitySpec | None = self.catalogue.entities[name]
            while spec is not None and spec.master and seen < 8:
                spec = self.catalogue.entities.get(spec.master)
                seen += 1
            return seen

        return sorted(self.catalogue.entities, key=lambda n: (depth(n), n))

    def _contexts(self, entity: str) -> list[dict[str, int]]:
        """One linking context per sample to create: per account, per user, or one public."""
        spec = self.catalogue.entities[entity]
        if spec.model is None:
            return []
        fields = {f.wire for f in self.catalogue.types[spec.model]}
        chain = self._master_chain(entity)
        users = list(self.users.values())
        if "accountId" in fields or "account" in chain:
            return [{"account": a.id, "user": u.user_id} for u in users for a in u.accounts]
        if "userId" in fields or "user" in chain:
            return [{"user": u.user_id} for u in users]
        return [{}]

    def _master_chain(self, entity: str) -> list[str]:
        chain: list[str] = []
        spec: EntitySpec | None = self.catalogue.entities[entity]
        while spec is not None and spec.master and len(chain) < 8:
            chain.append(spec.master)
            spec = self.catalogue.entities.get(spec.master)
        return chain

    def sample(self, entity: str, context: dict[str, int], stamp: str) -> dict[str, Any]:
        """A plausible record of ``entity`` with every field set, linked through ``context``
        (entity name -> id) or to the first stored record of the linked entity."""
        spec = self.catalogue.entities[entity]
        assert spec.model is not None
        record = self._fill(spec.model, context, stamp)
        if spec.master_field == "id" and spec.master is not None:
            master_id = self._link(spec.master, context)
            if master_id is not None and self.get(entity, master_id) is None:
                record["id"] = master_id
        if "id" not in record or self.get(entity, record["id"]) is not None:
            record["id"] = self.next_id(entity)
        if "name" in record:
            record["name"] = f"{spec.model}{record['id']}"
        return record

    def _link(self, entity: str, context: dict[str, int]) -> int | None:
        if entity in context:
            return context[entity]
        table = self._records.get(entity)
        return min(table) if table else None

    def _fill(self, type_name: str, context: dict[str, int], stamp: str) -> dict[str, Any]:
        record: dict[str, Any] = {}
        for field in self.catalogue.types[type_name]:
            value = self._value(field, context, stamp)
            if value is not None:
                record[field.wire] = value
        return record

    def _value(self, field: FieldSpec, context: dict[str, int], stamp: str) -> Any:
        kind = field.kind["kind"]
        wire = field.wire
        if kind == "int":
            if wire == "id":
                return None
            if wire.endswith("Id"):
                target = wire[:-2]
                if target in self.catalogue.entities:
                    return self._link(target, context) or (1 if field.required else None)
            return 1
        if kind == "float":
            return 1.0
        if kind == "str":
            return "sim" if wire != "email" else "sim@example.invalid"
        if kind == "bool":
            return False
        if kind == "datetime":
            return stamp
        if kind == "enum":
            return field.kind["values"][0]
        if kind == "ref":
            name = field.kind["name"]
            if name == "TradeDate":
                day = dt.date.fromisoformat(stamp[:10])
                return {"year": day.year, "month": day.month, "day": day.day}
            if name == "TradeTime":
                return {"hour": 17, "minute": 0}
            return self._fill(name, context, stamp)
        return []


def user_entity(user: SimUser) -> dict[str, Any]:
    return {
        "id": user.user_id,
        "name": user.username,
        "timestamp": "2024-01-02T00:00:00.000Z",
        "email": user.email,
        "status": "Active",
        "professional": False,
    }


def account_entity(user: SimUser, account: SimAccount) -> dict[str, Any]:
    return {
        "id": account.id,
        "name": account.name,
        "userId": user.user_id,
        "accountType": account.account_type,
        "active": account.active,
        "clearingHouseId": 2,
        "riskCategoryId": 2,
        "autoLiqProfileId": 2,
        "marginAccountType": "Speculator",
        "legalStatus": "Individual",
        "archived": False,
        "timestamp": "2024-01-02T00:00:00.000Z",
    }


def trade_date(now: float) -> dict[str, int]:
    day = dt.datetime.fromtimestamp(now, dt.UTC).date()
    return {"year": day.year, "month": day.month, "day": day.day}


def cash_balance(account: SimAccount, now: float) -> dict[str, Any]:
    return {
        "id": account.id,
        "accountId": account.id,
        "timestamp": iso_time(now),
        "tradeDate": trade_date(now),
        "currencyId": 1,
        "amount": account.balance,
        "realizedPnL": 0.0,
        "weekRealizedPnL": 0.0,
    }


def position_entity(
    account_id: int, contract: dict[str, Any], net_pos: int, price: float, now: float
) -> dict[str, Any]:
    bought = max(net_pos, 0)
    sold = max(-net_pos, 0)
    return {
        "accountId": account_id,
        "contractId": contract["id"],
        "timestamp": iso_time(now),
        "tradeDate": trade_date(now),
        "netPos": net_pos,
        "netPrice": price,
        "bought": bought,
        "boughtValue": bought * price,
        "sold": sold,
        "soldValue": sold * price,
        "prevPos": 0,
    }
