"""What a simulator front end should answer (shared by the state, the routes and handlers)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

__all__ = ["Reply"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(slots=True)
class Reply:
    """What a front end should answer: a status plus a JSON payload or a plain-text body.

    ``revoked`` lists sessions this request ended (their sockets must be closed) and ``events``
    the ``props`` events to push, as ``(username, event)`` pairs.
    """

    status: int
    payload: Any = None
    text: str | None = None
    reason: str | None = None
    revoked: tuple[int, ...] = ()
    events: list[tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=list)

    @classmethod
    def json(cls, payload: Any, status: int = 200) -> Reply:
        return cls(status, payload=payload)

    @classmethod
    def plain(cls, status: int, text: str = "", reason: str | None = None) -> Reply:
        return cls(status, text=text, reason=reason)

    @property
    def is_json(self) -> bool:
        return self.text is None
