"""The account mirror's storage, without I/O: a ``user/syncrequest`` snapshot plus ``props``
events, as tables of entities by type and id, and the differences each step makes.

Tradovate's trading socket answers ``user/syncrequest`` with a SyncMessage (arrays named
``accounts``, ``cashBalances``, ``positions``, ``orders``, ``orderVersions``, ``fills``,
``orderStrategies``, ``contracts``, ``products`` ...) and then pushes ``props`` events
``{entityType, eventType: Created|Updated|Deleted, entity}`` where ``entity`` is one object or
an array, each shaped like ``<entityType>/item`` (protocol reference §4.5 and §4.8; the
official C# sample's SessionCache applies them by ``entityType`` + ``entity.id``).

:class:`EntityStore` applies both and returns :class:`Change`\\ s. Loading a snapshot over an
existing state returns the difference as changes (``resync=True``), so a consumer of changes
never keeps a stale position after a reconnect. Entities are stored as the decoder makes
them (by default read-only mappings of the wire objects), so switching to typed models is a
change of decoder, not of storage.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final, Literal

import msgspec

from ._exports import publish

__all__ = [
    "Change",
    "EntityStore",
    "EventType",
    "difference",
    "entity_type_of_key",
    "field",
    "typed_decoder",
]

logger = logging.getLogger(__name__)

EventType = Literal["Created", "Updated", "Deleted"]
Decoder = Callable[[str, Mapping[str, Any]], Any]

_EVENT_TYPES: Final = frozenset({"Created", "Updated", "Deleted"})


class Change(msgspec.Struct, frozen=True, gc=False):
    """One entity that changed: ``entity`` is the new version (None when deleted),
    ``previous`` the one held before (None when created). ``resync`` marks differences found
    by loading a fresh snapshot rather than from a ``props`` event."""

    entity_type: str
    event: EventType
    id: int
    entity: Any
    previous: Any
    resync: bool = False


def entity_type_of_key(key: str) -> str:
    """SyncMessage array name -> entity type: ``cashBalances`` -> ``cashBalance``,
    ``orderStrategies`` -> ``orderStrategy``, ``accountRiskStatuses`` -> ``accountRiskStatus``."""
    if key.endswith("ies"):
        return key[:-3] + "y"
    if key.endswith("ses"):
        return key[:-2]
    return key[:-1] if key.endswith("s") else key


def _readonly(entity_type: str, raw: Mapping[str, Any]) -> Any:
    # The decoded event owns its dicts and nobody else keeps them: wrap, do not copy.
    return types.MappingProxyType(raw if type(raw) is dict else dict(raw))


def typed_decoder() -> Decoder:
    """Entities as the typed API's models (``tradovate_async.api``: ``Position``, ``Order``,
    ``CashBalance`` ...) when the type has a model and the entity validates; otherwise (an
    entity type without a model, or one that lacks a required field) a read-only mapping, so
    nothing the server sends is ever dropped. ``field()`` reads either."""
    from .api import _models

    models: dict[str, type[Any] | None] = {}
    convert = msgspec.convert

    def decode(entity_type: str, raw: Mapping[str, Any]) -> Any:
        model = models.get(entity_type, _UNKNOWN)
        if model is _UNKNOWN:
            candidate = getattr(_models, entity_type[:1].upper() + entity_type[1:], None)
            ok = isinstance(candidate, type) and issubclass(candidate, msgspec.Struct)
            model = models[entity_type] = candidate if ok else None
        if model is not None:
            try:
                return convert(raw, model)
            except msgspec.ValidationError as exc:
                logger.debug("%s %s kept untyped: %s", entity_type, raw.get("id"), exc)
        return _readonly(entity_type, raw)

    return decode


_UNKNOWN: Final[Any] = object()


def field(entity: Any, name: str, default: Any = None) -> Any:
    """Read a field by its Tradovate (camelCase) name from a mapping or a typed model
    (snake_case attribute), so queries work with either storage."""
    if isinstance(entity, Mapping):
        return entity.get(name, default)
    snake = "".join("_" + c.lower() if c.isupper() else c for c in name)
    return getattr(entity, snake, default)


class EntityStore:
    """Tables of entities by type and id. Not thread-safe; used from one event loop."""

    def __init__(self, decoder: Decoder | None = None) -> None:
        self._decode: Decoder = decoder or _readonly
        self._tables: dict[str, dict[int, Any]] = {}
        self.events_applied = 0
        self.snapshots_loaded = 0
        self.ignored = 0

    # -- reading ----------------------------------------------------------------------------

    def table(self, entity_type: str) -> Mapping[int, Any]:
        """Entities of one type by id (a live read-only view)."""
        return types.MappingProxyType(self._tables.setdefault(entity_type, {}))

    def get(self, entity_type: str, ident: int) -> Any:
        table = self._tables.get(entity_type)
        return table.get(ident) if table is not None else None

    def types(self) -> list[str]:
        return sorted(t for t, table in self._tables.items() if table)

    def count(self) -> int:
        return sum(len(t) for t in self._tables.values())

    def dump(self) -> dict[str, dict[int, Any]]:
        """A plain copy of every table (for comparisons)."""
        return {t: dict(table) for t, table in self._tables.items() if table}

    def __iter__(self) -> Iterator[tuple[str, int, Any]]:
        for entity_type, table in self._tables.items():
            for ident, entity in table.items():
                yield entity_type, ident, entity

    # -- writing ----------------------------------------------------------------------------

    def apply(self, data: Any, *, want_changes: bool = True) -> list[Change]:
        """Apply one ``props`` event's ``d``; returns what changed (empty when unchanged, or
        when ``want_changes`` is False). Malformed events are counted in ``ignored``."""
        try:
            entity_type = data["entityType"]
            event = data["eventType"]
            payload = data["entity"]
        except (TypeError, KeyError, IndexError):
            self.ignored += 1
            return []
        if type(entity_type) is not str or event not in _EVENT_TYPES:
            self.ignored += 1
            return []
        items: Iterable[Any] = payload if type(payload) is list else (payload,)
        table = self._tables.setdefault(entity_type, {})
        changes: list[Change] = []
        decode = self._decode
        applied = 0
        for raw in items:
            ident = raw.get("id") if type(raw) is dict else None
            if type(ident) is not int:
                self.ignored += 1
                continue
            applied += 1
            previous = table.get(ident)
            if event == "Deleted":
                if previous is None:
                    continue
                del table[ident]
                if want_changes:
                    changes.append(Change(entity_type, "Deleted", ident, None, previous))
                continue
            entity = decode(entity_type, raw)
            if previous is not None and previous == entity:
                continue
            table[ident] = entity
            if want_changes:
                kind: EventType = "Created" if previous is None else "Updated"
                changes.append(Change(entity_type, kind, ident, entity, previous))
        self.events_applied += applied
        return changes

    def load(self, snapshot: Any) -> list[Change]:
        """Replace everything with a ``user/syncrequest`` snapshot; returns the differences
        from the state held before (``resync=True``). Keys that are not arrays are ignored."""
        if not isinstance(snapshot, Mapping):
            raise ValueError("a user/syncrequest snapshot is a JSON object")
        fresh: dict[str, dict[int, Any]] = {}
        decode = self._decode
        for key, items in snapshot.items():
            if not isinstance(items, list):
                continue
            entity_type = entity_type_of_key(key)
            table = fresh.setdefault(entity_type, {})
            for raw in items:
                ident = raw.get("id") if isinstance(raw, Mapping) else None
                if isinstance(ident, bool) or not isinstance(ident, int):
                    self.ignored += 1
                    continue
                table[ident] = decode(entity_type, raw)
        changes = difference(self._tables, fresh)
        self._tables = fresh
        self.snapshots_loaded += 1
        return changes


def difference(old: dict[str, dict[int, Any]], new: dict[str, dict[int, Any]]) -> list[Change]:
    changes: list[Change] = []
    for entity_type in sorted(set(old) | set(new)):
        before = old.get(entity_type, {})
        after = new.get(entity_type, {})
        for ident, entity in after.items():
            previous = before.get(ident)
            if previous is None:
                changes.append(Change(entity_type, "Created", ident, entity, None, True))
            elif previous != entity:
                changes.append(Change(entity_type, "Updated", ident, entity, previous, True))
        for ident, previous in before.items():
            if ident not in after:
                changes.append(Change(entity_type, "Deleted", ident, None, previous, True))
    return changes


publish(globals())  # its public classes show tradovate_async.X (see _exports)
