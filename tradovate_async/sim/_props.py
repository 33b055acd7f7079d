"""Entities a test scripts into the simulator's account state, pushed as ``props`` events.

``await sim.push_props(username, events)`` applies ``(entityType, eventType, entity)`` triples to
the user's state, which ``user/syncrequest`` snapshots include from then on, and sends them as
``props`` events to the user's synced trading sockets that are connected at that moment. A
socket that is down misses them, as with the real server: that is what a mirror must recover
from with a fresh snapshot.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any, Final

__all__ = ["PropsStore", "sync_key"]

_EVENT_TYPES: Final = frozenset({"Created", "Updated", "Deleted"})


def sync_key(entity_type: str) -> str:
    """Entity type -> SyncMessage array: ``position`` -> ``positions``, ``orderStrategy`` ->
    ``orderStrategies``, ``accountRiskStatus`` -> ``accountRiskStatuses``."""
    if entity_type.endswith("y") and not entity_type.endswith(("ay", "ey", "oy", "uy")):
        return entity_type[:-1] + "ies"
    if entity_type.endswith("s"):
        return entity_type + "es"
    return entity_type + "s"


class PropsStore:
    """Per-user tables of scripted entities; thread-safe (tests call from their own loop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tables: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}

    def apply(
        self, username: str, events: Iterable[tuple[str, str, Mapping[str, Any]]]
    ) -> list[dict[str, Any]]:
        """Apply events; returns them as ``props`` ``d`` objects, in order."""
        out: list[dict[str, Any]] = []
        with self._lock:
            tables = self._tables.setdefault(username, {})
            for entity_type, event_type, entity in events:
                if event_type not in _EVENT_TYPES:
                    raise ValueError(f"unknown eventType {event_type!r}")
                ident = entity.get("id")
                if isinstance(ident, bool) or not isinstance(ident, int):
                    raise ValueError("an entity needs an integer id")
                table = tables.setdefault(entity_type, {})
                if event_type == "Deleted":
                    table.pop(ident, None)
                else:
                    table[ident] = dict(entity)
                out.append(
                    {"entityType": entity_type, "eventType": event_type, "entity": dict(entity)}
                )
        return out

    def snapshot(self, username: str) -> dict[str, list[dict[str, Any]]]:
        """The user's scripted entities as SyncMessage arrays."""
        with self._lock:
            tables = self._tables.get(username, {})
            return {
                sync_key(t): [dict(e) for e in table.values()]
                for t, table in tables.items()
                if table
            }
