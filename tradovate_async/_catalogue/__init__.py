"""The Tradovate REST surface as data: entities, operations, commands and types.

``catalogue.json`` is derived from Tradovate's public OpenAPI description by
``scripts/build_catalogue.py`` (sources in ``SOURCES.md``). The typed API in
``tradovate_async.api`` is generated from it; the simulator routes requests with it and the
tests walk it, so an endpoint in the catalogue is generated, served and tested alike.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import json
import logging
from typing import Any

__all__ = ["Catalogue", "CommandSpec", "EntitySpec", "FieldSpec", "load_catalogue"]

logger = logging.getLogger(__name__)

STANDARD_OPERATIONS = ("list", "item", "items", "find", "suggest", "deps", "ldeps")


@dataclasses.dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field: ``wire`` is Tradovate's name, ``name`` the snake_case attribute; ``kind`` is
    int, float, str, bool, datetime, enum, ref or list (with ``of`` for the element kind)."""

    wire: str
    name: str
    kind: dict[str, Any]
    required: bool


@dataclasses.dataclass(frozen=True, slots=True)
class EntitySpec:
    """An entity and its standard operations; ``master``/``master_field`` for ``deps``."""

    name: str
    model: str | None
    operations: tuple[str, ...]
    master: str | None
    master_field: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class CommandSpec:
    """A command endpoint (``order/placeorder``) with its request and answer type names."""

    entity: str
    endpoint: str
    name: str
    method: str
    request: str | None
    answer: str
    read_only: bool
    session_only: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Catalogue:
    source: dict[str, Any]
    entities: dict[str, EntitySpec]
    commands: dict[str, CommandSpec]
    types: dict[str, tuple[FieldSpec, ...]]
    operations: dict[str, tuple[EntitySpec, str]]  # "position/ldeps" -> (position, "ldeps")

    def entity_of_path(self, path: str) -> tuple[EntitySpec, str] | None:
        """``position/ldeps`` (any case) -> (position's spec, ``ldeps``), for standard ops."""
        return self.operations.get(path.lower())

    def command_of_path(self, path: str) -> CommandSpec | None:
        """The command at ``path`` (any case), or None."""
        return self.commands.get(path.lower())


@functools.cache
def load_catalogue() -> Catalogue:
    """The catalogue shipped with the package (parsed once per process)."""
    raw = json.loads(
        importlib.resources.files(__name__).joinpath("catalogue.json").read_text("utf-8")
    )
    entities = {}
    for entry in raw["entities"]:
        master = entry.get("master") or {}
        entities[entry["name"]] = EntitySpec(
            name=entry["name"],
            model=entry["model"],
            operations=tuple(entry["operations"]),
            master=master.get("entity"),
            master_field=master.get("field"),
        )
    commands = {
        entry["endpoint"].lower(): CommandSpec(
            entity=entry["entity"],
            endpoint=entry["endpoint"],
            name=entry["name"],
            method=entry["method"],
            request=entry["request"],
            answer=entry["answer"]["name"],
            read_only=entry["read_only"],
            session_only=entry["session_only"],
        )
        for entry in raw["commands"]
    }
    types = {
        name: tuple(
            FieldSpec(f["wire"], f["name"], f["type"], f["required"]) for f in spec["fields"]
        )
        for name, spec in raw["types"].items()
    }
    operations = {
        f"{spec.name}/{op}".lower(): (spec, op)
        for spec in entities.values()
        for op in spec.operations
    }
    return Catalogue(raw["source"], entities, commands, types, operations)
