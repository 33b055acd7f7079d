"""Penalty tickets (``p-ticket``) and how far a client may wait them out: a neutral core.

Both the token endpoint and every other endpoint (REST or WebSocket) may answer with a penalty
instead of a result: wait ``p-time`` seconds, then resend with the ticket. This module holds the
value and the policy; it imports nothing but the errors, so the sans-I/O cores (token answers,
the socket protocol) share it without pulling in settings or I/O.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

from ._errors import PenaltyLimitError
from ._exports import publish

__all__ = ["Penalty", "PenaltyPolicy"]

_MAX_RETRY_AFTER = 86_400.0


@dataclasses.dataclass(frozen=True, slots=True)
class Penalty:
    """A time penalty (``p-ticket``): wait ``wait_seconds``, then resend with ``ticket``.

    The penalised request was not executed (the documentation says so), which is why resending
    it — even an order — with its ticket is safe. ``captcha`` penalties cannot be served by a
    program (``_responses.penalty_in`` raises :class:`CaptchaRequiredError` instead; WebSocket
    answers carry the flag).
    """

    ticket: str
    wait_seconds: float
    captcha: bool = False

    def __repr__(self) -> str:  # the ticket is opaque and IP-bound; keep it out of logs
        return f"Penalty(wait_seconds={self.wait_seconds}, captcha={self.captcha})"


@dataclasses.dataclass(frozen=True, slots=True)
class PenaltyPolicy:
    """How many penalty rounds, and how long a wait (seconds), one call may sit out.

    The same policy object serves logins, renewals, REST calls and socket requests (the
    ``penalties=`` option of the session and the socket). Beyond either bound the call raises
    :class:`PenaltyLimitError` whose ``retry_after`` is the wait the server asked for.
    """

    max_rounds: int = 3
    max_wait: float = 120.0

    def __post_init__(self) -> None:
        if self.max_rounds < 0 or not self.max_wait >= 0:
            raise ValueError("penalty bounds must be >= 0")

    def wait_for(self, penalty: Penalty, rounds_done: int) -> float:
        """Seconds to wait before resending, or raise :class:`PenaltyLimitError`."""
        if rounds_done >= self.max_rounds:
            raise PenaltyLimitError(
                f"still penalised after {rounds_done} round(s); giving up "
                f"(max_rounds={self.max_rounds})",
                retry_after=_retry_after(penalty.wait_seconds),
            )
        if penalty.wait_seconds > self.max_wait:
            raise PenaltyLimitError(
                f"penalty asks for {penalty.wait_seconds:.0f} s, more than "
                f"max_wait={self.max_wait:.0f} s",
                retry_after=_retry_after(penalty.wait_seconds),
            )
        return penalty.wait_seconds


def _retry_after(seconds: float) -> dt.timedelta | None:
    if not seconds > 0:
        return None
    return dt.timedelta(
        seconds=min(seconds, _MAX_RETRY_AFTER) if math.isfinite(seconds) else _MAX_RETRY_AFTER
    )


publish(globals())  # its public classes show tradovate_async.X (see _exports)
