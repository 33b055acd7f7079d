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
library's own events. ``put`` and ``get`` are O(1) amortised: superseding and dropping run only
when the buffer is full, then free at least a quarter of it, or the next run waits until a
quarter more has come.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Hashable, Iterable, Iterator, Mapping
from typing import Final

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
_NOTHING: Final[frozenset[str]] = frozenset()
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
    """The (list, contract) keys an event holds a version of, or ``None`` if it is not
    superseded by later events."""
    kind = event.kind
    if kind == "clock":
        return (("clock",),)
    data = event.data
    if kind != "md" or type(data) is not dict or not data:
        return None
    keys: list[Hashable] = []
    for name, entries in data.items():
        if name not in _SUPERSEDED_LISTS or type(entries) is not list:
            return None
        for entry in entries:
            contract = entry.get("contractId") if type(entry) is dict else None
            if contract is None or type(contract) not in (int, str):
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
    ``dropped`` counts dropped events (superseded quotes and DOM included). Both are a deque
    operation and a comparison: the policy runs only when the buffer is full.
    """

    __slots__ = ("_limit", "_resync", "dropped", "maxlen", "overflows", "queue")

    def __init__(self, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be >= 1")
        self.maxlen = maxlen
        self._limit = maxlen  # the size at which room is made next
        self.dropped = 0
        self.overflows = 0
        #: The events, oldest first. The same deque for the buffer's life (making room edits
        #: it in place), so the consumer's loop may hold it and ``popleft`` from it directly.
        self.queue: deque[Event] = deque()
        self._resync: set[str] = set()

    def __len__(self) -> int:
        return len(self.queue)

    def __bool__(self) -> bool:
        return bool(self.queue)

    def __iter__(self) -> Iterator[Event]:
        """Drain in order (for tests and shutdown)."""
        while self.queue:
            yield self.queue.popleft()

    def put(self, event: Event) -> None:
        """Buffer ``event``, making room first if the buffer is full."""
        queue = self.queue
        if len(queue) >= self._limit:
            self._make_room()
            # Latest quotes and the library's events may exceed maxlen: make room again only
            # after another quarter, so that every put stays O(1) amortised.
            self._limit = max(self.maxlen, len(queue) + self.maxlen // 4)
        queue.append(event)

    def put_all(self, events: list[Event]) -> bool:
        """Buffer ``events`` in order, as ``put`` does each (one deque operation when they
        fit: a frame of quotes is buffered at once). Returns whether room had to be made
        (then ``dropped`` and the kinds to resynchronise may have changed)."""
        queue = self.queue
        if len(queue) + len(events) < self._limit:
            queue.extend(events)
            return False
        for event in events:
            self.put(event)
        return True

    def extend(self, events: Iterable[Event]) -> None:
        for event in events:
            self.put(event)

    def get(self) -> Event:
        """The oldest buffered event. Raises ``IndexError`` when empty."""
        return self.queue.popleft()

    def take_resync(self) -> frozenset[str]:
        """The kinds dropped since the last call, for which the owner must ask the server for
        a fresh snapshot (see :data:`RESYNC_ENDPOINTS`); clears them."""
        if not self._resync:
            return _NOTHING
        kinds, self._resync = frozenset(self._resync), set()
        return kinds

    # -- the overflow policy ----------------------------------------------------------------

    def _make_room(self) -> None:
        kept = self._supersede(list(self.queue))
        if len(kept) > self.maxlen * 3 // 4:
            kept = self._drop_backlog(kept)
        self.queue.clear()
        self.queue.extend(kept)

    def _supersede(self, events: list[Event]) -> list[Event]:
        """``events`` without what a newer one supersedes (quotes, DOM, clock per key)."""
        seen: set[Hashable] = set()
        kept: list[Event] = []
        for event in reversed(events):
            keys = _superseding_keys(event)
            if keys is None:
                kept.append(event)
                continue
            current = [key for key in keys if key not in seen]
            seen.update(keys)
            if len(current) == len(keys):
                kept.append(event)
                continue
            self.dropped += 1
            if current:
                wanted = set(current)
                data = {
                    name: rest
                    for name, entries in event.data.items()
                    if (rest := [e for e in entries if (name, e["contractId"]) in wanted])
                }
                kept.append(Event(event.kind, data))
        kept.reverse()
        return kept

    def _drop_backlog(self, events: list[Event]) -> list[Event]:
        """Drop every event that is neither the latest of its key nor the library's own, and
        mark the gap with one ``overflow`` event (unread earlier markers merge into it; of
        several unread ``resynced`` events only the newest is kept).

        The marker goes where the gap begins, or, when a kept ``resynced`` event is followed
        by dropped events, right after it: that snapshot covers what was dropped before it
        (it arrived later) but not what was dropped after it, so a consumer that rebuilt from
        it must learn that it has a gap again."""
        dropped: dict[str, int] = {}
        earlier: dict[str, int] = {}
        kept: list[Event] = []
        gap_at: int | None = None
        last_resynced = max(
            (i for i, e in enumerate(events) if e.kind == EVENT_RESYNCED), default=-1
        )
        resynced_at = -1  # where the kept ``resynced`` event is in ``kept``
        for index, event in enumerate(events):
            if event.kind == EVENT_OVERFLOW and isinstance(event.data, Overflow):
                for kind, count in event.data.dropped.items():
                    earlier[kind] = earlier.get(kind, 0) + count
            elif event.kind == EVENT_RESYNCED and index != last_resynced:
                pass  # superseded by the newer snapshot
            elif event.kind in _NEVER_DROPPED or _superseding_keys(event) is not None:
                if index == last_resynced:
                    resynced_at = len(kept)
                kept.append(event)
                continue
            else:
                kind = _drop_kind(event)
                dropped[kind] = dropped.get(kind, 0) + 1
            if gap_at is None or gap_at <= resynced_at < len(kept):
                gap_at = len(kept)  # the first gap after the kept snapshot
        if gap_at is None:
            return events  # only latest quotes and the library's events: they may exceed maxlen
        self.dropped += sum(dropped.values())
        self.overflows += 1
        for kind, count in earlier.items():
            dropped[kind] = dropped.get(kind, 0) + count
        resync = tuple(sorted(kind for kind in dropped if kind in RESYNC_ENDPOINTS))
        self._resync.update(resync)
        kept.insert(gap_at, Event(EVENT_OVERFLOW, Overflow(dropped, resync)))
        return kept
