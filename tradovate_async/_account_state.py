"""A live mirror of the account: ``async with session.account_state() as state:``.

It takes the ``user/syncrequest`` snapshot on a trading socket, applies every ``props`` event
to it (:class:`~tradovate_async._entity_store.EntityStore`) and answers queries from memory:
``state.positions(account)``, ``state.working_orders()``, ``state.order(id)``,
``state.cash(account)``; ``await state.wait_for(lambda s: ...)``; ``state.changes()``.

Why it is built this way:

* **It stays true.** Events lost while a connection was down cannot be replayed, so after
  every reconnect the mirror loads the fresh snapshot the socket took on the new connection
  (the socket replays ``user/syncrequest``) and emits the difference as changes
  (``Change.resync``). ``await state.resync()`` does the same on demand, and so does the
  dispatcher if the socket ever reports dropped events.
* **It never shows a state with a hole in it.** When the socket drops ``props`` events (its
  buffer overflowed), events after the gap are not applied over the gap: the mirror keeps its
  last whole state (``live`` is False) until the fresh snapshot comes, which covers every
  event that arrived before it. A predicate of :meth:`AccountState.wait_for` therefore never
  sees some entities newer than the gap and others missing their changes.
* **Changes never pile up.** ``state.changes()`` keeps at most one pending change per entity
  (a newer version supersedes the older one; created-then-deleted cancels out), so a slow
  consumer costs memory bounded by the number of entities and still ends up with the truth.
* **Open P&L** per position is ``(price - netPrice) * valuePerPoint * netPos`` (the official
  tutorial ``tradovate/example-api-js`` EX-12 and ``example-api-trading-strategy``
  ``utils/calculatePnL.js``: ``prevPrice`` when there is no ``netPrice``), with the product's
  ``valuePerPoint`` found through contract -> contractMaturity -> product, and the price from
  live quotes (last trade; the bid/offer midpoint when there was no trade yet). Rounded to
  cents.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import anyio
import anyio.abc

from ._entity_store import (
    Change,
    Decoder,
    EntityStore,
    EventType,
    difference,
    field,
    typed_decoder,
)
from ._errors import SessionClosedError, TradovateError
from ._event_buffer import EVENT_OVERFLOW, EVENT_RESYNCED, Overflow
from ._exports import publish
from ._md_models import Quote
from ._ws import EVENT_DISCONNECTED, EVENT_RECONNECTED, Reconnected, TradovateWebSocket

if TYPE_CHECKING:
    from ._market_data import MarketData

__all__ = ["AccountState", "ChangeStream", "open_pnl"]

logger = logging.getLogger(__name__)

#: ``ordStatus`` values of an order that may still fill.
WORKING_STATUSES: Final = frozenset(
    {"PendingNew", "PendingReplace", "PendingCancel", "Suspended", "Working"}
)
_SYNC: Final = "user/syncrequest"
_MAX_HELD: Final = 100_000


def open_pnl(position: Any, price: float, value_per_point: float) -> float:
    """Open P&L of a position at ``price``, in the account's currency, rounded to cents."""
    net = field(position, "netPos") or 0
    if not net:
        return 0.0
    average = field(position, "netPrice")
    if average is None:
        average = field(position, "prevPrice")
    if average is None:
        raise ValueError("a position with a net position but no netPrice or prevPrice")
    return round((price - float(average)) * value_per_point * int(net), 2)


class ChangeStream:
    """Changes of the mirror, at most one pending per entity (see the module docstring)."""

    def __init__(self, state: AccountState) -> None:
        self._state = state
        self._pending: collections.OrderedDict[tuple[str, int], Change] = collections.OrderedDict()
        self._wake = anyio.Event()
        self._closed = False
        self.coalesced = 0

    def __aiter__(self) -> Self:
        return self

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.aclose()

    def aclose(self) -> None:
        self._closed = True
        self._state._streams.discard(self)
        self._wake.set()

    def put(self, change: Change) -> None:
        """Queue ``change``, merged with a pending change of the same entity."""
        key = (change.entity_type, change.id)
        earlier = self._pending.pop(key, None)
        if earlier is not None:
            self.coalesced += 1
            merged = _merge(earlier, change)
            if merged is None:
                self._wake.set()
                return
            change = merged
        self._pending[key] = change
        self._wake.set()

    async def __anext__(self) -> Change:
        while True:
            if self._pending:
                return self._pending.popitem(last=False)[1]
            if self._closed or self._state.finished:
                self._state.raise_failure()
                raise StopAsyncIteration
            self._wake = anyio.Event()
            await self._wake.wait()


def _merge(earlier: Change, later: Change) -> Change | None:
    """Two pending changes of one entity as one (None: they cancel out)."""
    if earlier.event == "Created":
        if later.event == "Deleted":
            return None
        return Change(later.entity_type, "Created", later.id, later.entity, None, later.resync)
    event: EventType = "Updated" if later.event == "Created" else later.event
    return Change(later.entity_type, event, later.id, later.entity, earlier.previous, later.resync)


class AccountState:
    """A live, typed copy of what the user's ``user/syncrequest`` covers.

    Args:
        ws: a trading socket (opened and closed with this object when ``own_socket``).
        sync_body: the ``user/syncrequest`` body (``{"users": [user_id]}``).
        market_data: when given, quotes of every contract with an open position are tracked
            for :meth:`open_pnl` / :meth:`account_pnl`.
        decoder: ``(entity_type, raw) -> stored entity``; default :func:`typed_decoder`
            (the typed API's models, read-only mappings for what does not validate).
    """

    def __init__(
        self,
        ws: TradovateWebSocket,
        *,
        sync_body: Mapping[str, Any],
        own_socket: bool = False,
        market_data: MarketData | None = None,
        decoder: Decoder | None = None,
        dispatch: bool = True,
    ) -> None:
        self._ws = ws
        self._own_dispatch = dispatch
        #: the snapshot is loaded and events are being applied
        self.started = False
        self._sync_body = dict(sync_body)
        self._own_socket = own_socket
        self._md = market_data
        self.store = EntityStore(decoder or typed_decoder())
        self._streams: set[ChangeStream] = set()
        self._changed: anyio.Event | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._scopes: set[anyio.CancelScope] = set()
        self._tracked: set[int] = set()
        self._failure: BaseException | None = None
        self.prices: dict[int, float] = {}
        self.finished = False
        #: False between a lost connection and the snapshot of the next one.
        self.live = False
        self.resyncs = 0
        self._holds = _Holds()

    def __repr__(self) -> str:
        return (
            f"AccountState(entities={self.store.count()}, events={self.store.events_applied}, "
            f"resyncs={self.resyncs}, live={self.live})"
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._own_socket:
            await self._ws.__aenter__()
        try:
            snapshot = await self._ws.subscribe(_SYNC, self._sync_body)
            self.store.load(snapshot)
        except BaseException:
            if self._own_socket:
                await self._ws.aclose()
            raise
        self.live = True
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        if self._own_dispatch:
            task_group.start_soon(self._guarded, self._dispatch)
        self.started = True
        self._track_positions()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._finish()
        task_group, self._task_group = self._task_group, None
        if task_group is not None:
            for scope in list(self._scopes):
                scope.cancel()
            await task_group.__aexit__(None, None, None)
        if self._own_socket:
            await self._ws.aclose()

    def _finish(self, failure: BaseException | None = None) -> None:
        if failure is not None and self._failure is None:
            self._failure = failure
        self.finished = True
        self._notify()
        for stream in list(self._streams):
            stream._wake.set()

    def finish(self, failure: BaseException | None = None) -> None:
        """End waits and change streams (with ``failure``): for an outside dispatcher."""
        self._finish(failure)

    def raise_failure(self) -> None:
        """Raise the error that stopped the mirror, if any."""
        if self._failure is not None:
            raise self._failure

    async def _guarded(self, func: Callable[..., Awaitable[None]], *args: Any) -> None:
        if self._task_group is None:
            return
        scope = anyio.CancelScope()
        self._scopes.add(scope)
        try:
            with scope:
                await func(*args)
        finally:
            self._scopes.discard(scope)

    # -- queries ------------------------------------------------------------------------------

    def accounts(self) -> list[Any]:
        """Every account in the mirror."""
        return list(self.store.table("account").values())

    def account_id(self, account: int | str | Any) -> int:
        """An account id from an id, an account name (``DEMO70001``) or an account entity."""
        if isinstance(account, int) and not isinstance(account, bool):
            return account
        if isinstance(account, str):
            for entity in self.store.table("account").values():
                if field(entity, "name") == account:
                    return int(field(entity, "id"))
            raise KeyError(f"no account named {account!r} in the mirror")
        return int(field(account, "id"))

    def positions(self, account: int | str | Any | None = None) -> list[Any]:
        """Positions (of one account when given), including flat ones of the day."""
        items = self.store.table("position").values()
        if account is None:
            return list(items)
        ident = self.account_id(account)
        return [p for p in items if field(p, "accountId") == ident]

    def working_orders(self, account: int | str | Any | None = None) -> list[Any]:
        """Orders that may still fill (Working, PendingNew/Replace/Cancel, Suspended)."""
        ident = None if account is None else self.account_id(account)
        return [
            o
            for o in self.store.table("order").values()
            if field(o, "ordStatus") in WORKING_STATUSES
            and (ident is None or field(o, "accountId") == ident)
        ]

    def order(self, ident: int) -> Any:
        """The order with id ``ident`` (``None`` if unknown)."""
        return self.store.get("order", ident)

    def order_versions(self, order_id: int) -> list[Any]:
        """Versions of an order, oldest first (each modify adds one)."""
        versions = [
            v for v in self.store.table("orderVersion").values() if field(v, "orderId") == order_id
        ]
        return sorted(versions, key=lambda v: field(v, "id"))

    def fills(self, order_id: int | None = None) -> list[Any]:
        """Fills, of one order if ``order_id`` is given."""
        items = self.store.table("fill").values()
        return [f for f in items if order_id is None or field(f, "orderId") == order_id]

    def order_strategies(self) -> list[Any]:
        """Every order strategy in the mirror."""
        return list(self.store.table("orderStrategy").values())

    def cash(self, account: int | str | Any) -> Any:
        """The cash balance of an account (the newest if several are held)."""
        ident = self.account_id(account)
        balances = [
            c for c in self.store.table("cashBalance").values() if field(c, "accountId") == ident
        ]
        if not balances:
            return None
        return max(balances, key=lambda c: (str(field(c, "timestamp", "")), field(c, "id")))

    def contract(self, ident: int) -> Any:
        """The contract with id ``ident`` (``None`` if unknown)."""
        return self.store.get("contract", ident)

    def value_per_point(self, contract_id: int) -> float | None:
        """``valuePerPoint`` of the contract's product: contract -> contractMaturity ->
        product (or the contract's own ``productId``); None when the mirror lacks one."""
        contract = self.store.get("contract", contract_id)
        if contract is None:
            return None
        product_id = field(contract, "productId")
        maturity = self.store.get("contractMaturity", field(contract, "contractMaturityId"))
        if maturity is not None:
            product_id = field(maturity, "productId", product_id)
        product = self.store.get("product", product_id) if product_id is not None else None
        value = field(product, "valuePerPoint") if product is not None else None
        return float(value) if value is not None else None

    # -- P&L ------------------------------------------------------------------------------------

    def mark(self, contract_id: int, price: float) -> None:
        """Set the price of a contract used for open P&L (live quotes do this)."""
        if not math.isfinite(price):
            raise ValueError("a price must be finite")
        self.prices[contract_id] = price
        self._notify()

    def open_pnl(self, position: Any) -> float | None:
        """Open P&L of one position (None when its price or point value is unknown)."""
        cid = field(position, "contractId")
        price = self.prices.get(cid)
        vpp = self.value_per_point(cid)
        if not field(position, "netPos"):
            return 0.0
        if price is None or vpp is None:
            return None
        return open_pnl(position, price, vpp)

    def account_pnl(self, account: int | str | Any) -> float | None:
        """Open P&L of an account: the sum over its positions (None if any is unknown)."""
        total = 0.0
        for position in self.positions(account):
            pnl = self.open_pnl(position)
            if pnl is None:
                return None
            total += pnl
        return round(total, 2)

    def _track_positions(self) -> None:
        """Follow quotes of every contract with an open position (when given market data)."""
        md, task_group = self._md, self._task_group
        if md is None or task_group is None:
            return
        for position in self.store.table("position").values():
            cid = field(position, "contractId")
            if field(position, "netPos") and cid not in self._tracked:
                self._tracked.add(cid)
                task_group.start_soon(self._guarded, self._follow_quotes, md, cid)

    async def _follow_quotes(self, md: MarketData, cid: int) -> None:
        try:
            async with md.quotes(cid) as quotes:
                async for quote in quotes:
                    price = _mark_price(quote)
                    if price is not None:
                        self.mark(cid, price)
        except TradovateError as exc:
            logger.warning("quotes of contract %d for P&L stopped: %s", cid, exc)
            self._tracked.discard(cid)

    # -- waiting and changes --------------------------------------------------------------------

    def changes(self) -> ChangeStream:
        """A stream of :class:`Change`\\ s from now on (one consumer per stream)."""
        stream = ChangeStream(self)
        self._streams.add(stream)
        return stream

    async def wait_for(
        self,
        predicate: Callable[[AccountState], object],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a bounded wait is the point
    ) -> None:
        """Return once ``predicate(state)`` is true (checked now and after every change or
        price); ``TimeoutError`` after ``timeout``; the socket's error if it gave up."""
        with anyio.fail_after(timeout):
            while True:
                if predicate(self):
                    return
                if self.finished:
                    self.raise_failure()
                    raise SessionClosedError("the account state is closed")
                changed = self._changed
                if changed is None:
                    changed = self._changed = anyio.Event()
                await changed.wait()

    def _notify(self) -> None:
        changed = self._changed
        if changed is not None:  # an Event only while someone waits: events are hot
            self._changed = None
            changed.set()

    def _publish(self, changes: list[Change]) -> None:
        if changes:
            for stream in self._streams:
                for change in changes:
                    stream.put(change)
            if self._md is not None and any(c.entity_type == "position" for c in changes):
                self._track_positions()
        self._notify()

    # -- the dispatcher -------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        try:
            async for event in self._ws.events():
                self.handle_event(event.kind, event.data)
        except TradovateError as exc:
            self._finish(exc)
            return
        self._finish()

    def handle_event(self, kind: str, data: Any) -> None:
        """Apply one socket event (the dispatcher calls this; so does a replay session)."""
        try:
            self._on_event(kind, data)
        except Exception:
            logger.exception("account state: handling a %s event failed", kind)

    def _on_event(self, kind: str, data: Any) -> None:
        holds = self._holds
        if kind == "props":
            if not holds.props(data):
                self._spawn_resync("too many events before the reconnect settled")
            if holds.gap:
                return  # not over a gap: the coming snapshot covers this event
            self._publish(self.store.apply(data, want_changes=bool(self._streams)))
            if self._md is not None and data.get("entityType") == "position":
                self._track_positions()
        elif kind == EVENT_RECONNECTED and isinstance(data, Reconnected):
            held, holds.since_loss = holds.since_loss or [], None
            fresh = next((r for r in data.replayed if r.subscription.endpoint == _SYNC), None)
            if fresh is not None and fresh.error is None and isinstance(fresh.data, Mapping):
                holds.gap = False  # taken on the new connection, after anything dropped
                self._load(fresh.data, "reconnected", held)
            else:
                self._spawn_resync("reconnected without a fresh snapshot")
        elif kind == EVENT_DISCONNECTED:
            self.live = False
            holds.since_loss = []
            self._notify()
        elif kind == EVENT_OVERFLOW and isinstance(data, Overflow) and data.dropped.get("props"):
            # props the socket could not keep (its overflow policy); a ``resynced`` snapshot follows
            logger.warning(
                "account state: %d props event(s) dropped; resyncing", data.dropped["props"]
            )
            self.live = False
            holds.dropped()
            if "props" not in data.resync:
                self._spawn_resync("props events dropped")
            self._notify()
        elif kind == EVENT_RESYNCED and isinstance(data, tuple):
            fresh = next((r for r in data if r.subscription.endpoint == _SYNC), None)
            if fresh is not None and fresh.error is None and isinstance(fresh.data, Mapping):
                # Handed over where the answer arrived: events before it are in the snapshot,
                # those after it are newer and apply on top. (Re-applying the held ones could
                # be stale: more of them may have been dropped meanwhile.)
                holds.since_loss, holds.gap = None, False
                self._load(fresh.data, "events dropped by the socket buffer")
            elif fresh is not None:
                self._spawn_resync("the socket's resync failed")

    def _load(
        self, snapshot: Mapping[str, Any], why: str, after: list[Any] | None = None
    ) -> list[Change]:
        """Rebuild from ``snapshot``, then apply ``after``: events the dispatcher already saw
        that may be newer than the snapshot (see :class:`_Holds`)."""
        state_before = self.store.dump() if after else None
        changes = self.store.load(snapshot)
        if after:
            for data in after:
                self.store.apply(data, want_changes=False)
            assert state_before is not None
            changes = difference(state_before, self.store.dump())
        self.resyncs += 1
        self.live = not self._holds.gap
        logger.info(
            "account state rebuilt from a fresh snapshot (%s): %d change(s)", why, len(changes)
        )
        self._publish(changes)
        return changes

    def _spawn_resync(self, why: str) -> None:
        task_group = self._task_group
        if task_group is not None:
            logger.warning("account state: %s; taking a fresh snapshot", why)
            task_group.start_soon(self._guarded, self._resync_quietly, why)

    async def _resync_quietly(self, why: str) -> None:
        try:
            await self.resync(why)
        except TradovateError as exc:
            logger.warning("account state: resync failed: %s", exc)

    async def resync(self, why: str = "requested") -> list[Change]:
        """Take a fresh ``user/syncrequest`` snapshot now and rebuild from it; returns (and
        emits) the differences."""
        if self.finished:
            raise SessionClosedError("the account state is closed")
        with self._holds.recording() as recording:
            snapshot = await self._ws.request(_SYNC, json=self._sync_body, idempotent=True)
        if not isinstance(snapshot, Mapping):
            raise TradovateError("user/syncrequest answer is not an object")
        if not self._holds.answered(recording):
            self._spawn_resync("too many events while a snapshot was taken")
        return self._load(snapshot, why, recording.events)


class _Recording:
    """``props`` events handled while a :meth:`AccountState.resync` waits for its snapshot
    (``events`` is None once more than ``_MAX_HELD`` came), and the gaps seen before."""

    __slots__ = ("events", "gaps")

    def __init__(self, gaps: int) -> None:
        self.gaps = gaps
        self.events: list[Any] | None = []


class _Holds:
    """What the dispatcher keeps for the next rebuild, and whether it may apply events now.

    * ``since_loss``: events since a lost connection. The socket announces a reconnect only
      after replaying ``user/syncrequest``, so events sent after that snapshot can be
      dispatched before it: they are applied again on top of it. Events the snapshot already
      reflects change nothing when applied again: each carries a whole entity, and the last
      one of each entity is the snapshot's;
    * ``gap``: the socket dropped ``props`` events and no snapshot since covers them: events
      are not applied over the gap (the coming snapshot covers those that arrived before it);
    * recordings: events handled while a ``resync()`` waits for its answer, which reaches that
      task some time after the dispatcher went past it: those are applied again on top of it
      (the ones older than the snapshot change nothing: each carries a whole entity).
    """

    __slots__ = ("gap", "gaps", "recordings", "since_loss")

    def __init__(self) -> None:
        self.since_loss: list[Any] | None = None
        self.gap = False
        self.gaps = 0  # gaps seen so far (a resync heals only those before its request)
        self.recordings: list[_Recording] = []

    def props(self, data: Any) -> bool:
        """Hold one ``props`` event; False when more came since the loss than are held."""
        for recording in self.recordings:
            if recording.events is not None:
                recording.events.append(data)
                if len(recording.events) > _MAX_HELD:
                    recording.events = None
        if self.since_loss is not None:
            self.since_loss.append(data)
            if len(self.since_loss) > _MAX_HELD:
                self.since_loss = None
                return False
        return True

    def dropped(self) -> None:
        self.gap = True
        self.gaps += 1

    @contextlib.contextmanager
    def recording(self) -> Iterator[_Recording]:
        recording = _Recording(self.gaps)
        self.recordings.append(recording)
        try:
            yield recording
        finally:
            self.recordings.remove(recording)

    def answered(self, recording: _Recording) -> bool:
        """A resync's answer came: whether the events after it are all held."""
        if recording.events is None:
            self.gap = True  # events after the answer are lost: hold still until the next
            return False
        if self.gaps == recording.gaps:
            # Asked after every gap seen so far was dropped: the snapshot covers them. (A gap
            # seen meanwhile may have been dropped after the answer: the next snapshot heals.)
            self.gap = False
        return True


def _mark_price(quote: Quote) -> float | None:
    if quote.trade is not None:
        return quote.trade
    if quote.bid is not None and quote.offer is not None:
        return (quote.bid + quote.offer) / 2
    return None


publish(globals())  # its public classes show tradovate_async.X (see _exports)
