"""Where market data goes: ``md`` events decoded into the models and routed to the streams.

:class:`MdRoutes` holds the streams of each kind and the histograms merged so far. Two taps
of the socket feed it as messages are read (``TradovateWebSocket.set_taps``): a frame of
nothing but ``md`` events is decoded in one pass into the models; an ``md`` event in a mixed
frame is decoded from its own JSON. Neither goes through the socket's buffer: the streams keep
the latest per contract. What does not fit the models takes the generic route (dicts, then
``msgspec.convert``), which names what is wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec

from ._md_models import DomSnapshot, Histogram, Quote
from ._ws_codec import Event, WireText

if TYPE_CHECKING:
    from ._md_streams import LatestStream

__all__ = ["MdRoutes"]

logger = logging.getLogger(__name__)

_CONVERT = msgspec.convert  # bound once: the hot path calls it per event

#: (stream kind, list in an ``md`` event, model) for the generic route.
_MD_LISTS: Final = (
    ("quote", "quotes", Quote),
    ("dom", "doms", DomSnapshot),
    ("histogram", "histograms", Histogram),
)
# The list types, made once: ``list[Quote]`` spelt inline would be a new object per event, and
# msgspec would build its decoding plan again each time.
_LISTS: Final[dict[type[Any], Any]] = {
    model: list[model]  # type: ignore[valid-type]
    for _, _, model in _MD_LISTS
}


class _WireMd(msgspec.Struct, gc=False):
    """The ``d`` of an ``md`` event, decoded straight into the models."""

    quotes: list[Quote] | None = None
    doms: list[DomSnapshot] | None = None
    histograms: list[Histogram] | None = None


class _WireMdEvent(msgspec.Struct, gc=False):
    e: Literal["md"]
    d: _WireMd


_decode_md_frame = msgspec.json.Decoder(list[_WireMdEvent], strict=False).decode


def _typed_md_frame(text: WireText) -> list[_WireMdEvent] | None:
    """``a[...]`` of ``md`` events only, decoded into the models; ``None`` if it is not one."""
    if isinstance(text, str) or text[:1] != b"a":
        return None
    try:
        return _decode_md_frame(memoryview(text)[1:])
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return None


def _typed_md_message(event: Event) -> _WireMd | None:
    """An ``md`` event that came in a frame with other messages (the frame tap takes the rest),
    converted into the models, if it fits."""
    try:
        return msgspec.convert(event.data, _WireMd, strict=False)
    except msgspec.ValidationError:
        return None


class MdRoutes:
    """The streams of each kind, the merged histograms, and the routes that feed them."""

    def __init__(self, kinds: Iterable[str]) -> None:
        self.latest: dict[str, list[LatestStream[Any]]] = {kind: [] for kind in kinds}
        self.histograms: dict[int, Histogram] = {}
        #: ``md`` data that did not fit the models, or a route that failed.
        self.malformed = 0

    def typed_event(self, event: Event) -> bool:
        """The socket's event tap: an ``md`` event decoded into the models and routed as it
        is read (no dicts, no socket buffer: the streams keep the latest per contract).
        ``False`` for other events or a misfit: the dispatcher's generic route says why."""
        if event.kind != "md":
            return False
        message = _typed_md_message(event)
        if message is None:
            return False
        self._route(message)
        return True

    def _route(self, message: _WireMd) -> None:
        try:
            self._route_items("quote", message.quotes or ())
            self._route_items("dom", message.doms or ())
            if message.histograms:
                self._merge_histograms(message.histograms)
        except Exception:
            self.malformed += 1
            logger.exception("market data: handling an md event failed")

    def typed_frame(self, text: WireText) -> bool:
        """The socket's frame tap: a frame of nothing but ``md`` events (a market-data
        socket's usual frame) decoded into the models in one pass; ``False`` for any other."""
        events = _typed_md_frame(text)
        if events is None:
            return False
        for event in events:
            self._route(event.d)
        return True

    def generic(self, data: Any) -> None:
        if not isinstance(data, Mapping):
            return
        for kind, name, model in _MD_LISTS:
            raw = data.get(name)
            if raw and (kind == "histogram" or self.latest[kind]):
                items = self._decode(raw, model)
                if kind == "histogram":
                    self._merge_histograms(items)
                else:
                    self._route_items(kind, items)

    def _decode(self, raw: Any, model: type[Any]) -> list[Any]:
        try:
            return _CONVERT(raw, _LISTS[model], strict=False)  # type: ignore[no-any-return]
        except (msgspec.ValidationError, TypeError) as exc:
            self.malformed += 1
            logger.warning("ignoring malformed market data: %s", exc)
            return []

    def _route_items(self, kind: str, items: Sequence[Any]) -> None:
        streams = self.latest[kind]
        if not streams:
            return
        for item in items:
            cid = item.contract_id
            for stream in streams:
                symbol = stream.contract_ids.get(cid)
                if symbol is not None:
                    if item.symbol is None:
                        item.symbol = symbol
                    stream.put(cid, item)

    def _merge_histograms(self, updates: list[Histogram]) -> None:
        """Merge each update into the contract's histogram (whole ones replace it), then route
        the whole histogram: coalescing can never lose an update."""
        for update in updates:
            held = self.histograms.get(update.contract_id)
            if held is not None and not update.refresh:
                items = dict(held.items)
                items.update(update.items)
                update.items = items
                if update.trade_date is None:
                    update.trade_date = held.trade_date
            self.histograms[update.contract_id] = update
        self._route_items("histogram", updates)
