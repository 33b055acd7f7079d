"""What a socket keeps for a consumer that reads its events slower than they come (sans-I/O).

A socket never waits for its consumer (heartbeats and answers must go on), so a consumer that
falls behind, or never reads, would grow memory without limit. :class:`EventBuffer` bounds it
without lying to the consumer:

- **Quotes and DOM are superseded per contract.** An ``md`` event whose entries are all
  ``quotes``/``doms`` (and ``clock`` events) only matters in its latest version per
  (list, contract id): when the buffer is full, older versions are removed first, so the
  consumer gets the latest quote of every contract rather than the oldest of some.
- **Everything else is never silently lost.** ``props`` (entity changes), ``chart`` bars and
  ``histograms`` are not superseded by later events. When the buffer is still mostly full after
  superseding, the **backlog is dropped**: every buffered event of those kinds is removed,
  counted, and replaced by one ``overflow`` event (:class:`Overflow`) at the point of the gap,
  and :meth:`EventBuffer.take_resync` tells the owner which kinds to resynchronise (a fresh
  ``user/syncrequest`` for ``props``, the chart and histogram subscriptions for theirs). The
  consumer's state stays true: it learns where the gap is and gets a new snapshot after it.
- The library's own events (``disconnected``, ``reconnected``, ``shutdown``, ``resynced``) are
  never dropped; they are few. Unread ``overflow`` markers are merged into the newest one (the
  gap they mark is being dropped anyway), so their counts add up.

Memory is bounded by ``maxlen`` plus one latest ``md`` event per subscribed contract plus the
library's own events. Every operation is O(1) amortised: superseding and dropping run only when
the buffer is full, and free at least a quarter of it (else the backlog is dropped).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Hashable, Iterator, Mapping
from typing import Any, Final

from ._ws_codec import Event

__all__ = [
    "EVENT_OVERFLOW",
    "EVENT_RESYNCED",
    "RESYNC_ENDPOINTS",
    "EventBuffer",
    "Overflow",
]

#: The kind of the event that marks a dropped backlog (``data``: :class:`Overflow`).
EVENT_OVERFLOW: Final = "overflow"
#: The kind of the event that carries the fresh snapshots after an overflow (``data``: the
#: resubscription results, as in ``reconnected``).
EVENT_RESYNCED: Final = "resynced"

#: Which subscription endpoint (lower case) brings a fresh snapshot of each dropped kind.
RESYNC_ENDPOINTS: Final[Mapping[str, str]] = {
    "props": "user/syncrequest",
    "chart": "md/getchart",
    "histogram": "md/subscribehistogram",
}

_SUPERSEDED_LISTS: Final = frozenset({"quotes", "doms"})
_NEVER_DROPPED: Final = frozenset(
    {"disconnected", "reconnected", "shutdown", EVENT_OVERFLOW, EVENT_RESYNCED}
)


@dataclasses.dataclass(frozen=True, slots=True)
class Overflow:
    """``data`` of the ``overflow`` event: the consumer fell behind and events were dropped here.

    ``dropped`` counts the dropped events by kind (``props``, ``chart``, ``histogram``, ...);
    ``resync`` names the kinds for which the socket asked the server for a fresh snapshot (a
    ``resynced`` event follows with the answers). Superseded quotes and DOM are not counted
    here: a newer version of each is still in the buffer.
    """

    dropped: Mapping[str, int]
    resync: tuple[str, ...]


def _superseding_keys(event: Event) -> tuple[Hashable, ...] | None:
    """The (list, contract) keys an event holds the latest version of, or ``None`` if it is not
    superseded by later events."""
    if event.kind == "clock":
        return (("clock",),)
    if event.kind != "md" or not isinstance(event.data, Mapping) or not event.data:
        return None
    keys: list[Hashable] = []
    for name, entries in event.data.items():
        if name not in _SUPERSEDED_LISTS or not isinstance(entries, list):
            return None
        for entry in entries:
            contract = entry.get("contractId") if isinstance(entry, Mapping) else None
            if isinstance(contract, bool) or not isinstance(contract, int | str):
                return None
            keys.append((name, contract))
    return tuple(keys)


def _drop_kind(event: Event) -> str:
    """The kind an event is counted (and resynchronised) under when dropped."""
    if event.kind == "md" and isinstance(event.data, Mapping) and "histograms" in event.data:
        return "histogram"
    return event.kind


class EventBuffer:
    """A bounded FIFO of socket events with the overflow policy of the module docstring.

    ``put`` never refuses an event; ``get`` returns the oldest (``IndexError`` when empty).
    ``dropped`` counts dropped events (superseded quotes and DOM included).
    """

    __slots__ = (
        "_events",
        "_keys",
        "_latest",
        "_limit",
        "_order",
        "_resync",
        "_seq",
        "dropped",
        "maxlen",
        "overflows",
    )

    def __init__(self, maxlen: int) -> None:
        if maxlen < 4:
            raise ValueError("maxlen must be >= 4")
        self.maxlen = maxlen
        self._limit = maxlen  # the size at which room is made next
        self.dropped = 0
        self.overflows = 0
        self._seq = 0
        self._order: deque[int] = deque()  # sequence numbers; removed ones are skipped lazily
        self._events: dict[int, Event] = {}
        self._keys: dict[int, tuple[Hashable, ...]] = {}  # seq -> keys of a superseded kind
        self._latest: dict[Hashable, int] = {}  # key -> seq of the event holding its latest
        self._resync: set[str] = set()

    def __len__(self) -> int:
        return len(self._events)

    def __bool__(self) -> bool:
        return bool(self._events)

    def __iter__(self) -> Iterator[Event]:
        """Drain in order (for tests and shutdown)."""
        while self:
            yield self.get()

    def put(self, event: Event) -> None:
        """Buffer ``event``, making room first if the buffer is full."""
        if len(self._events) >= self._limit:
            self._make_room()
            # Latest quotes and the library's events may exceed maxlen: make room again only
            # after another quarter, so that every put stays O(1) amortised.
            self._limit = max(self.maxlen, len(self._events) + self.maxlen // 4)
        seq = self._seq
        self._seq = seq + 1
        self._order.append(seq)
        self._events[seq] = event
        keys = _superseding_keys(event)
        if keys is not None:
            self._keys[seq] = keys
            for key in keys:
                self._latest[key] = seq

    def extend(self, events: Iterator[Event] | list[Event] | tuple[Event, ...]) -> None:
        for event in events:
            self.put(event)

    def get(self) -> Event:
        """The oldest buffered event. Raises ``IndexError`` when empty."""
        events = self._events
        order = self._order
        while True:
            seq = order.popleft()  # IndexError when empty
            event = events.pop(seq, None)
            if event is not None:
                break
        keys = self._keys.pop(seq, None)
        if keys is not None:
            latest = self._latest
            for key in keys:
                if latest.get(key) == seq:
                    del latest[key]
        return event

    def take_resync(self) -> frozenset[str]:
        """The kinds dropped since the last call, for which the owner must ask the server for
        a fresh snapshot (see :data:`RESYNC_ENDPOINTS`); clears them."""
        kinds, self._resync = frozenset(self._resync), set()
        return kinds

    # -- the overflow policy ----------------------------------------------------------------

    def _make_room(self) -> None:
        self._supersede()
        if len(self._events) > self.maxlen * 3 // 4:
            self._drop_backlog()
        self._order = deque(seq for seq in self._order if seq in self._events)

    def _supersede(self) -> None:
        """Remove what a newer buffered event supersedes (quotes, DOM, clock per key)."""
        latest = self._latest
        for seq, keys in list(self._keys.items()):
            current = [key for key in keys if latest.get(key) == seq]
            if len(current) == len(keys):
                continue
            self.dropped += 1
            if not current:
                del self._events[seq]
                del self._keys[seq]
                continue
            event = self._events[seq]
            kept = set(current)
            data: dict[str, Any] = {}
            for name, entries in event.data.items():
                rest = [e for e in entries if (name, e.get("contractId")) in kept]
                if rest:
                    data[name] = rest
            self._events[seq] = Event(event.kind, data)
            self._keys[seq] = tuple(current)

    def _drop_backlog(self) -> None:
        """Drop every event that is neither the latest of its key nor the library's own, and
        mark the gap with an ``overflow`` event."""
        dropped: dict[str, int] = {}
        earlier: dict[str, int] = {}  # what unread overflow markers reported: merged into one
        for seq, event in list(self._events.items()):
            if event.kind == EVENT_OVERFLOW and isinstance(event.data, Overflow):
                del self._events[seq]
                for kind, count in event.data.dropped.items():
                    earlier[kind] = earlier.get(kind, 0) + count
                continue
            if seq in self._keys or event.kind in _NEVER_DROPPED:
                continue
            del self._events[seq]
            kind = _drop_kind(event)
            dropped[kind] = dropped.get(kind, 0) + 1
        if not dropped and not earlier:
            return  # only latest quotes and the library's events: they may exceed maxlen
        self.dropped += sum(dropped.values())
        self.overflows += 1
        resync = tuple(sorted(kind for kind in dropped if kind in RESYNC_ENDPOINTS))
        self._resync.update(resync)
        for kind, count in earlier.items():
            dropped[kind] = dropped.get(kind, 0) + count
        resync = tuple(sorted(kind for kind in dropped if kind in RESYNC_ENDPOINTS))
        marker = self._seq
        self._seq = marker + 1
        self._order.append(marker)
        self._events[marker] = Event(EVENT_OVERFLOW, Overflow(dropped, resync))
