"""A string that does not show itself.

Passwords, API secrets and tokens travel through the library as :class:`Secret`. Its ``repr``
and ``str`` are masked, it refuses to be pickled, and the value comes out only through
:meth:`Secret.reveal`, so a stray ``print``, f-string or log call cannot leak it.
"""

from __future__ import annotations

import hmac
import re
import weakref
from collections.abc import Iterable, Iterator
from typing import Any, Final, NoReturn

from ._exports import publish

__all__ = ["Secret", "SecretScrubber", "scrub_known"]

_MASK = "********"


class Secret:
    """A masked secret string. ``reveal()`` gives the value; ``prefix()`` its first 8 characters."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        self._value = value

    def reveal(self) -> str:
        """The secret value. Call this only where the value must go on the wire."""
        return self._value

    def prefix(self, length: int = 8) -> str:
        """The first characters (at most 8), for display such as ``eyJhbGci…``."""
        return self._value[: min(length, 8)]

    def __bool__(self) -> bool:
        return bool(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return f"Secret('{_MASK}')"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, format_spec: str) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("Secret values are not picklable")

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __copy__(self) -> Secret:
        return self


# -- scrubbing known secret values from text, in every encoding they take on the wire ----------

# One encoded character of each kind. A text is decoded one kind and one level at a time, since
# an escape and a later encoding of it must be undone in the reverse order they were made.
_ESCAPE: Final = re.compile(
    r"\\(?:u(?P<u>[0-9a-fA-F]{4})|x(?P<x>[0-9a-fA-F]{2})|U(?P<U>[0-9a-fA-F]{8})"
    r"|(?P<short>[nrtbf\"'\\/]))"
)
_URL: Final = re.compile(r"(?P<url>(?:%[0-9a-fA-F]{2})+)")
_HTML: Final = re.compile(
    r"&(?:\#(?P<dec>[0-9]{1,7})|\#[xX](?P<hex>[0-9a-fA-F]{1,6})|(?P<name>amp|lt|gt|quot|apos));"
)
#: Each kind of encoding, with the character without which a text cannot hold it.
_DECODERS: Final = (("\\", _ESCAPE), ("%", _URL), ("&", _HTML))
_SHORT: Final = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}
_NAMED: Final = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}
_SURROGATE_PAIR: Final = re.compile("[\ud800-\udbff][\udc00-\udfff]")
_MAX_DEPTH: Final = 4
_MAX_LAYERS: Final = 64

Span = tuple[int, int]


def _unit_chars(match: re.Match[str]) -> list[tuple[str, int]] | None:
    """The characters one encoded unit stands for, each with its length in the unit's text."""
    groups = match.groupdict()
    try:
        if groups.get("url") is not None:
            data = bytes.fromhex(groups["url"].replace("%", ""))
            text = data.decode("utf-8")
            return [(char, 3 * len(char.encode("utf-8"))) for char in text]
        for name, base in (("u", 16), ("x", 16), ("U", 16), ("dec", 10), ("hex", 16)):
            if groups.get(name) is not None:
                return [(chr(int(groups[name], base)), len(match.group()))]
    except (ValueError, UnicodeDecodeError, OverflowError):
        return None
    if groups.get("short") is not None:
        return [(_SHORT.get(groups["short"], groups["short"]), 2)]
    return [(_NAMED[groups["name"]], len(match.group()))]


def _decode_once(
    text: str, spans: list[Span], unit: re.Pattern[str]
) -> tuple[str, list[Span]] | None:
    """``text`` with one level of one kind of encoding undone, and each character's span in the
    original text (``spans`` maps ``text`` to it); ``None`` if nothing was decoded."""
    chars: list[str] = []
    out_spans: list[Span] = []
    position = 0
    for match in unit.finditer(text):
        decoded = _unit_chars(match)
        if decoded is None:
            continue
        chars.extend(text[position : match.start()])
        out_spans.extend(spans[position : match.start()])
        offset = match.start()
        for char, length in decoded:
            out_spans.append((spans[offset][0], spans[offset + length - 1][1]))
            chars.append(char)
            offset += length
        position = match.end()
    if position == 0:
        return None
    chars.extend(text[position:])
    out_spans.extend(spans[position:])
    return _join_surrogates(chars, out_spans)


def _join_surrogates(chars: list[str], spans: list[Span]) -> tuple[str, list[Span]]:
    """Pairs of ``\\uD83D\\uDE00`` halves become the astral character they encode."""
    text = "".join(chars)
    if _SURROGATE_PAIR.search(text) is None:  # the common case: nothing to join
        return text, spans
    out: list[str] = []
    out_spans: list[Span] = []
    i = 0
    while i < len(chars):
        char = chars[i]
        if (
            "\ud800" <= char <= "\udbff"
            and i + 1 < len(chars)
            and "\udc00" <= chars[i + 1] <= "\udfff"
        ):
            code = 0x10000 + ((ord(char) - 0xD800) << 10) + (ord(chars[i + 1]) - 0xDC00)
            out.append(chr(code))
            out_spans.append((spans[i][0], spans[i + 1][1]))
            i += 2
            continue
        out.append(char)
        out_spans.append(spans[i])
        i += 1
    return "".join(out), out_spans


def _occurrences(text: str, values: list[str]) -> Iterator[tuple[int, int, str]]:
    """Where each value occurs in ``text`` as it stands: start, end and the value."""
    for value in values:
        for variant in {value, value.replace(" ", "+")}:  # a form writes ' ' as '+'
            start = text.find(variant)
            while start >= 0:
                end = start + len(variant)
                yield start, end, value
                start = text.find(variant, end)


def _secret_spans(text: str, values: list[str]) -> list[tuple[Span, str]]:
    """Where each value occurs in ``text``, written plainly or under a stack of up to four
    encodings (JSON/Python escapes and ``\\uXXXX``, URL encoding, HTML references), in any
    order: every sequence of single-kind decodings is tried, as long as it changes the text."""
    if not any(trigger in text for trigger, _ in _DECODERS):  # the common case: nothing encoded
        return [((start, end), value) for start, end, value in _occurrences(text, values)]
    found: list[tuple[Span, str]] = []
    layers = [(text, [(i, i + 1) for i in range(len(text))])]
    seen = {text}
    for depth in range(_MAX_DEPTH + 1):
        deeper: list[tuple[str, list[Span]]] = []
        for layer, spans in layers:
            for start, end, value in _occurrences(layer, values):
                found.append(((spans[start][0], spans[end - 1][1]), value))
            if depth == _MAX_DEPTH:
                continue
            for trigger, unit in _DECODERS:
                if trigger not in layer or len(seen) >= _MAX_LAYERS:
                    continue
                decoded = _decode_once(layer, spans, unit)
                if decoded is not None and decoded[0] not in seen:
                    seen.add(decoded[0])
                    deeper.append(decoded)
        if not deeper:
            break
        layers = deeper
    return found


class SecretScrubber:
    """Removes known secret values from text that came back from a server, in every form.

    A server that echoes a login body JSON-escapes a password with ``"`` or ``\\``; an HTML
    error page escapes ``<`` and ``&``; a proxy URL-encodes; a server may ``\\u``-escape every
    character, escapes included; a log prints a ``repr``. The text is decoded layer by layer
    (keeping where each character came from), each layer is searched for the values, and what
    matched is masked in the original text. Passwords and API secrets are replaced whole; tokens
    keep their first 8 characters, the prefix the library shows anyway. Values shorter than 4
    characters are not scrubbed (they would mask ordinary words). Every live scrubber is also
    consulted by the library's log redaction (:func:`scrub_known`).
    """

    def __init__(self, secrets: Iterable[str], tokens: Iterable[str] = ()) -> None:
        masks = {t: t[:8] + "…" for t in tokens if len(t) >= 4}
        masks.update({s: "********" for s in secrets if len(s) >= 4})
        self._masks = masks
        self._values = sorted(masks, key=len, reverse=True)
        _LIVE.add(self)

    def __repr__(self) -> str:
        return f"SecretScrubber(values={len(self._values)})"

    def __call__(self, text: str) -> str:
        if not self._values:
            return text
        found = _secret_spans(text, self._values)
        if not found:
            return text
        # Longest first: a token that contains another value masks as itself.
        found.sort(key=lambda item: (item[0][0], -(item[0][1] - item[0][0])))
        pieces: list[str] = []
        position = 0
        for (start, end), value in found:
            if start < position:
                continue  # inside a span already masked
            pieces += [text[position:start], self._masks[value]]
            position = end
        pieces.append(text[position:])
        return "".join(pieces)


_LIVE: Final[weakref.WeakSet[SecretScrubber]] = weakref.WeakSet()


def scrub_known(text: str) -> str:
    """``text`` with the values of every live :class:`SecretScrubber` removed (all sessions
    of the process), for log records that did not pass through a session's own scrubber."""
    for scrubber in list(_LIVE):
        text = scrubber(text)
    return text


publish(globals())  # its public classes show tradovate_async.X (see _exports)
