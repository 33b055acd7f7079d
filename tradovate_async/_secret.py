"""A string that does not show itself.

Passwords, API secrets and tokens travel through the library as :class:`Secret`. Its ``repr``
and ``str`` are masked, it refuses to be pickled, and the value comes out only through
:meth:`Secret.reveal`, so a stray ``print``, f-string or log call cannot leak it.
"""

from __future__ import annotations

import hmac
from typing import Any, NoReturn

__all__ = ["Secret"]

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
