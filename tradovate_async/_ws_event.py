"""The socket's event type, in a module of its own: its annotations are real objects here (no
``from __future__ import annotations``), so ``typing.get_type_hints(Event)`` works wherever
the class says it lives (the package re-exports it as ``tradovate_async.Event``)."""

from typing import Any

import msgspec

from ._exports import publish

__all__ = ["Event"]


class Event(msgspec.Struct, frozen=True, gc=False, rename={"kind": "e", "data": "d"}):
    """A server push ``{"e": kind, "d": data}``, or a synthetic event of the library.

    Server kinds: ``props``, ``md``, ``chart``, ``clock`` (``data`` already parsed from its JSON
    string), ``shutdown``. The socket layer adds ``disconnected`` and ``reconnected`` (see
    ``TradovateWebSocket.events``).

    Immutable (assigning raises :class:`AttributeError`), compared and matched by ``kind`` and
    ``data``. A msgspec ``Struct``, so that a frame of events is decoded straight into them in
    one pass, in C. It is not tracked by the garbage collector (``gc=False``): a socket may hold
    thousands of them unread, and none refers back to itself (an ``Event`` whose ``data``
    contains that same ``Event`` would never be freed).
    """

    kind: str
    data: Any = None


publish(globals())  # it shows tradovate_async.Event (see _exports)
