"""Catalogue-driven routing: every entity operation and command of the REST catalogue.

Standard operations (``list``, ``item``, ``items``, ``find``, ``suggest``, ``deps``,
``ldeps``) are answered from the :class:`~._entities.EntityStore`. Commands go to a handler
registered for their endpoint (:meth:`Routes.register`); every command has a default handler
(:mod:`._commands`), so no catalogue endpoint is left unserved. The order engine plugs in by
registering its own handlers for ``order/placeorder`` and friends.

Query parameters are checked the way the real server's JSON extraction reports them: a
missing or unconvertible parameter is HTTP 400 with ``No usable value for <name>`` and the
type it wanted (the shape seen on the real server, tradovate/api issue 32). List parameters
are comma-separated (``ids=1,2,3``).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from .._catalogue import Catalogue, CommandSpec, EntitySpec
from ._entities import EntityStore
from ._reply import Reply
from ._types import SimUser

__all__ = ["CommandContext", "CommandHandler", "Routes"]

logger = logging.getLogger(__name__)

_INT = re.compile(r"\s*-?\d{1,18}\s*")
_WANTS = {"long": "long", "int": "int", "str": "java.lang.String", "list": "long"}


@dataclasses.dataclass(slots=True)
class CommandContext:
    """What a command handler gets: the caller, the JSON body, the store and the time."""

    user: SimUser
    body: dict[str, Any]
    store: EntityStore
    now: float
    spec: CommandSpec
    catalogue: Catalogue


CommandHandler = Callable[[CommandContext], Reply]


class _Invalid(Exception):
    def __init__(self, name: str, wanted: str) -> None:
        super().__init__(name)
        self.reply = Reply.plain(
            400,
            f"No usable value for {name}\nDid not find value which can be converted into "
            f"{_WANTS[wanted]}",
            "bad-parameter",
        )


def _text(query: Mapping[str, str], name: str) -> str:
    value = query.get(name)
    if value is None:
        raise _Invalid(name, "str")
    return value


def _long(query: Mapping[str, str], name: str) -> int:
    value = query.get(name)
    if value is None or not _INT.fullmatch(value):
        raise _Invalid(name, "long")
    return int(value)


def _longs(query: Mapping[str, str], name: str) -> list[int]:
    value = query.get(name)
    if value is None:
        raise _Invalid(name, "list")
    parts = [p for p in value.split(",") if p.strip()]
    if not all(_INT.fullmatch(p) for p in parts):
        raise _Invalid(name, "list")
    return [int(p) for p in parts]


class Routes:
    """Answers every catalogue endpoint except the token endpoints, ``auth/me`` and
    ``user/syncrequest`` (the state answers those itself)."""

    def __init__(self, catalogue: Catalogue, store: EntityStore) -> None:
        self.catalogue = catalogue
        self.store = store
        self._handlers: dict[str, CommandHandler] = {}

    def register(self, endpoint: str, handler: CommandHandler) -> None:
        """Answer ``endpoint`` (a catalogue command, any case) with ``handler``."""
        if self.catalogue.command_of_path(endpoint) is None:
            raise ValueError(f"{endpoint} is not a command of the catalogue")
        self._handlers[endpoint.lower()] = handler

    def knows(self, path: str) -> bool:
        command = self.catalogue.command_of_path(path)
        return self.catalogue.entity_of_path(path) is not None or (
            command is not None and not command.session_only
        )

    def serve(
        self, path: str, query: Mapping[str, str], body: Any, user: SimUser, now: float
    ) -> Reply | None:
        """The answer for ``path``, or None when it is not a catalogue endpoint."""
        found = self.catalogue.entity_of_path(path)
        try:
            if found is not None:
                return self._operation(found[0], found[1], query, user)
        except _Invalid as exc:
            return exc.reply
        command = self.catalogue.command_of_path(path)
        if command is None or command.session_only:
            return None
        if body is None:
            body = {}
        if not isinstance(body, dict):
            return Reply.plain(400, "Request body must be a JSON object", "bad-request")
        missing = self._missing(command, body)
        if missing:
            violations = [
                {"constraint": "NotNull", "value": None, "description": f"{name} is required"}
                for name in missing
            ]
            return Reply.json({"violations": violations})
        handler = self._handlers.get(command.endpoint.lower())
        if handler is None:
            return Reply.plain(404, f"Not found: {path}", "not-found")
        return handler(CommandContext(user, body, self.store, now, command, self.catalogue))

    def _missing(self, command: CommandSpec, body: dict[str, Any]) -> list[str]:
        if command.request is None:
            return []
        return [
            f.wire
            for f in self.catalogue.types[command.request]
            if f.required and body.get(f.wire) is None
        ]

    def _operation(
        self, spec: EntitySpec, operation: str, query: Mapping[str, str], user: SimUser
    ) -> Reply:
        store = self.store
        if operation == "item":
            ident = _long(query, "id")
            for record in store.visible(user, spec.name):
                if record["id"] == ident:
                    return Reply.json(record)
            if spec.name == "contract":
                return Reply.json(store.contract(ident))
            return Reply.plain(404, f"{spec.name} {ident} not found", "not-found")
        if operation == "items":
            wanted = set(_longs(query, "ids"))
            return Reply.json([r for r in store.visible(user, spec.name) if r["id"] in wanted])
        if operation == "find":
            name = _text(query, "name")
            for record in store.visible(user, spec.name):
                if record.get("name") == name:
                    return Reply.json(record)
            if spec.name == "contract" and name.strip():
                return Reply.json(store.contract(name))
            if spec.name == "product" and name.strip():
                return Reply.json(store.product(name))
            return Reply.plain(404, f"{spec.name} {name!r} not found", "not-found")
        if operation == "suggest":
            text = _text(query, "t").lower()
            limit = _long(query, "l")
            hits = [
                r
                for r in store.visible(user, spec.name)
                if any(isinstance(v, str) and text in v.lower() for v in r.values())
            ]
            return Reply.json(hits[: max(limit, 0)])
        if operation in ("deps", "ldeps"):
            masters = (
                {_long(query, "masterid")}
                if operation == "deps"
                else set(_longs(query, "masterids"))
            )
            field = spec.master_field or "id"
            return Reply.json(
                [r for r in store.visible(user, spec.name) if r.get(field) in masters]
            )
        return Reply.json(store.visible(user, spec.name))
