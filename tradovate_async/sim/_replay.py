"""The simulator's market replay: one replay session per user, a clock that runs at a speed in
percent of real time, and ``clock`` events.

From the protocol reference §4.10 (the OpenAPI "Market Replay" tag and Tradovate's education
pages): ``replay/checkReplaySession {startTimestamp}`` answers ``{checkStatus: OK | Ineligible |
StartTimestampAdjusted, startTimestamp?}``; ``replay/initializeClock {startTimestamp, speed
(0-400), initialBalance}`` answers ``{ok: true}`` and (re)starts the user's session;
``replay/changeSpeed {speed}`` answers ``{ok: true}``; the socket then receives ``clock``
events whose ``d`` is a JSON *string* ``{"t": <ISO time>, "s": <speed>}``. Choices of the
simulator: a start in the future is ``Ineligible``; a start that is not on a whole minute is
``StartTimestampAdjusted`` to the minute before; the clock is the simulator's wall clock, so a
test that injects a clock controls replay time exactly.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable
from typing import Any

from ._market import iso_time
from ._md import parse_time

__all__ = ["ReplayClocks"]

_MAX_SPEED = 400


@dataclasses.dataclass(slots=True)
class _Session:
    start: float
    speed: float
    anchor: float  # wall time at which replay time was ``start``
    initial_balance: float

    def time(self, now: float) -> float:
        return self.start + (now - self.anchor) * self.speed / 100.0


class ReplayClocks:
    """Replay sessions by user; thread-safe."""

    def __init__(self, wall: Callable[[], float]) -> None:
        self._wall = wall
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}

    def time(self, username: str | None) -> float | None:
        """The user's replay time now, or None before ``initializeClock``."""
        with self._lock:
            session = self._sessions.get(username or "")
            return session.time(self._wall()) if session is not None else None

    def speed(self, username: str | None) -> float | None:
        with self._lock:
            session = self._sessions.get(username or "")
            return session.speed if session is not None else None

    def clock_event(self, username: str | None) -> str | None:
        """An ``a[...]`` frame with the user's ``clock`` event, or None without a session."""
        with self._lock:
            session = self._sessions.get(username or "")
            if session is None:
                return None
            data = json.dumps(
                {"t": iso_time(session.time(self._wall())), "s": session.speed},
                separators=(",", ":"),
            )
        return "a" + json.dumps([{"e": "clock", "d": data}], separators=(",", ":"))

    def request(self, username: str, endpoint: str, body: Any) -> tuple[int, Any]:
        """``(status, payload)`` for ``replay/*``."""
        if not isinstance(body, dict):
            return 400, "Request body must be a JSON object"
        if endpoint == "replay/checkreplaysession":
            start = parse_time(body.get("startTimestamp"))
            if start is None:
                return 400, "startTimestamp is required"
            if start > self._wall():
                return 200, {"checkStatus": "Ineligible"}
            if start % 60:
                adjusted = start - start % 60
                return 200, {
                    "checkStatus": "StartTimestampAdjusted",
                    "startTimestamp": iso_time(adjusted),
                }
            return 200, {"checkStatus": "OK"}
        if endpoint == "replay/initializeclock":
            start = parse_time(body.get("startTimestamp"))
            speed = body.get("speed", 100)
            balance = body.get("initialBalance", 50_000)
            if start is None or start > self._wall():
                return 200, {"ok": False, "errorText": "Invalid startTimestamp"}
            if not _valid_speed(speed):
                return 200, {"ok": False, "errorText": "speed must be 0-400"}
            with self._lock:
                self._sessions[username] = _Session(
                    start, float(speed), self._wall(), float(balance)
                )
            return 200, {"ok": True}
        if endpoint == "replay/changespeed":
            speed = body.get("speed")
            if not _valid_speed(speed):
                return 200, {"ok": False, "errorText": "speed must be 0-400"}
            with self._lock:
                session = self._sessions.get(username)
                if session is None:
                    return 200, {"ok": False, "errorText": "No replay session"}
                now = self._wall()
                session.start = session.time(now)
                session.anchor = now
                session.speed = float(speed)  # type: ignore[arg-type] # checked above
            return 200, {"ok": True}
        return 404, f"Not found: {endpoint}"


def _valid_speed(speed: Any) -> bool:
    return (
        not isinstance(speed, bool) and isinstance(speed, int | float) and 0 <= speed <= _MAX_SPEED
    )
