"""The Tradovate socket as a state machine, without I/O (like the protocol objects of
``websockets`` and ``h11``).

:class:`SocketConnection` owns every rule of a self-healing socket: the phases (connecting,
authorizing, open, reconnecting, closed), the heartbeat cadence, server silence, request ids
and deadlines, penalties, the replay of subscriptions after a reconnect, reconnect backoff,
quota waits and what happens to events nobody has read yet. It is driven by inputs that carry
the time — a token obtained, the transport opened or closed, a frame received, a request from
the user, ``tick(now)`` — and leaves its outputs where the I/O layer picks them up:

* :attr:`~SocketConnection.outgoing`: frames to send, in order;
* :attr:`~SocketConnection.actions`: :class:`FetchToken`, :class:`OpenTransport`,
  :class:`CloseTransport` — the slow things only the I/O layer can do;
* :attr:`~SocketConnection.events`: the buffer of events to deliver (one place buffers them);
* :attr:`~SocketConnection.completed`: user requests resolved or failed;
* :meth:`~SocketConnection.next_deadline`: when to call :meth:`~SocketConnection.tick` next.

It never reads a clock and never awaits, so every timing rule is tested with plain numbers.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import random
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeAlias

from ._errors import (
    ConnectFailedError,
    ProtocolError,
    RateLimitedError,
    SessionClosedError,
    TokenRejectedError,
    TradovateError,
)
from ._event_buffer import EVENT_RESYNCED, RESYNC_ENDPOINTS, EventBuffer
from ._logging import redact
from ._options import Backoff
from ._penalty import PenaltyPolicy
from ._schedule import is_permanent
from ._secret import scrub_known
from ._ws_calls import Call, CallTable, replay_calls, replay_results
from ._ws_codec import (
    HEARTBEAT_TEXT,
    AuthOutcome,
    CloseFrame,
    Event,
    MessagesFrame,
    OpenFrame,
    ReconnectBackoff,
    Response,
    WireText,
    decode_frame,
    decode_plain_events,
    encode_authorize,
    encode_json_auth,
    error_text,
    interpret_auth_response,
)
from ._ws_types import (
    EVENT_DISCONNECTED,
    EVENT_RECONNECTED,
    AuthFrame,
    Disconnected,
    Reconnected,
    ReplayResult,
    SocketKind,
    Subscription,
    WebSocketStats,
)

__all__ = [
    "Action",
    "CloseTransport",
    "FetchToken",
    "OpenTransport",
    "Phase",
    "SocketConnection",
    "SocketSettings",
]

logger = logging.getLogger(__name__)

#: Authorize refusals tolerated in one connect attempt before the socket gives up.
MAX_REFUSALS = 3


class Phase(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"  # token, TCP, TLS, upgrade, waiting for "o"
    AUTHORIZING = "authorizing"  # authorize sent, waiting for its answer
    OPEN = "open"  # authorized; ready once the subscriptions are replayed
    RECONNECTING = "reconnecting"  # waiting for the next attempt
    CLOSED = "closed"


@dataclasses.dataclass(frozen=True, slots=True)
class FetchToken:
    """Get the source's current token (``refused=None``), or report ``refused`` to it and get
    the token that replaces it; answer with :meth:`SocketConnection.token_received`."""

    refused: object | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class OpenTransport:
    """Open TCP + TLS + the WebSocket upgrade; answer with ``transport_opened`` or
    ``connect_failed``, then feed every frame to ``receive``."""


@dataclasses.dataclass(frozen=True, slots=True)
class CloseTransport:
    """Drop the transport: with a closing handshake (``graceful``) when the server is talking
    to us, else at once. Nothing more is fed from it."""

    graceful: bool
    code: int = 1000


Action: TypeAlias = FetchToken | OpenTransport | CloseTransport


@dataclasses.dataclass(frozen=True, slots=True)
class SocketSettings:
    """The rules of one socket (the I/O layer builds it from the public options)."""

    kind: SocketKind = "trading"
    auth_frame: AuthFrame = "authorize"
    heartbeat_interval: float = 2.5
    silence_timeout: float = 10.0
    request_timeout: float = 10.0
    connect_timeout: float = 10.0
    event_buffer: int = 10_000
    reconnect_backoff: Backoff = Backoff(0.1, 30.0)
    stable_after: float = 5.0
    quota_wait: float = 60.0
    penalties: PenaltyPolicy = PenaltyPolicy()


def shutdown_reason(event: Event, name: str) -> str:
    """The ``reasonCode`` of a ``shutdown`` event (logged: the server is ending the session)."""
    data = event.data if isinstance(event.data, Mapping) else {}
    code = data.get("reasonCode")
    reason = code if isinstance(code, str) else "unknown"
    text = data.get("reason")
    shown = f": {scrub_known(str(text))}" if text else ""  # server text: may echo a token
    logger.warning("%s: server shutdown notice (%s%s)", name, reason, shown)
    return reason


def warn_on_overflow(buffer: EventBuffer, warned: int) -> int:
    """Log when the buffer holds undroppable events beyond its bound, each time it doubles;
    returns the size last warned about."""
    size, limit = len(buffer), buffer.maxlen
    if size > limit and size >= 2 * max(limit, warned):
        logger.warning(
            "event buffer holds %d events (limit %d) that may not be dropped: "
            "is anything consuming ws.events()?",
            size,
            limit,
        )
        return size
    return warned


class Liveness:
    """Heartbeat, silence and send stalls of the open connection (times in seconds).

    The client sends ``[]`` every ``interval`` on a fixed schedule whatever the traffic, without
    a burst to catch up after the event loop was blocked. No frame from the server for
    ``silence`` counts as a dead connection; so does a frame that could not be written for as
    long (a peer that stopped reading).
    """

    __slots__ = ("heartbeat_at", "interval", "last_rx", "silence", "unsent")

    def __init__(self, interval: float, silence: float) -> None:
        self.interval = interval
        self.silence = silence
        self.heartbeat_at = 0.0
        self.last_rx = 0.0
        self.unsent: deque[float] = deque()

    def start(self, now: float) -> None:
        """A connection was authorized at ``now``: the first beat is due one interval later."""
        self.heartbeat_at = now + self.interval
        self.last_rx = now
        self.unsent.clear()

    def sent(self) -> None:
        """The oldest unsent frame was written."""
        if self.unsent:
            self.unsent.popleft()

    def verdict(self, now: float) -> str | None:
        """Why the connection is dead at ``now`` (``None``: alive)."""
        quiet = now - self.last_rx
        if quiet >= self.silence:
            return f"server silent for {quiet:.1f} s"
        if self.unsent and now - self.unsent[0] >= self.silence:
            return "send stalled"
        return None

    def beat_due(self, now: float) -> bool:
        """Whether a heartbeat is due; if so the schedule moves on by one interval."""
        if now < self.heartbeat_at:
            return False
        self.heartbeat_at += self.interval
        if self.heartbeat_at <= now:  # the loop was blocked: no burst to catch up
            self.heartbeat_at = now + self.interval
        return True

    def deadlines(self) -> tuple[float, ...]:
        silent = self.last_rx + self.silence
        if self.unsent:
            return (self.heartbeat_at, silent, self.unsent[0] + self.silence)
        return (self.heartbeat_at, silent)


class Reconnects:
    """When to try again after a loss or a failed attempt, and how a recovery is counted."""

    __slots__ = ("attempts", "backoff", "lost_at", "retry_at")

    def __init__(self, settings: SocketSettings, rng: random.Random | None) -> None:
        policy = settings.reconnect_backoff
        self.backoff = ReconnectBackoff(
            initial=policy.initial,
            maximum=policy.maximum,
            factor=policy.factor,
            stable_after=settings.stable_after,
            quota_delay=settings.quota_wait,
            rng=rng,
        )
        self.attempts = 0
        self.lost_at: float | None = None
        self.retry_at: float | None = None

    def lost(self, now: float, name: str, lost: Disconnected) -> None:
        """A ready connection was lost at ``now``."""
        shutdown = lost.shutdown_reason
        after = f" after shutdown {shutdown}" if shutdown else ""
        logger.warning("%s lost (%s)%s; reconnecting", name, lost.reason, after)
        self.backoff.disconnected(now, quota=lost.quota)
        self.lost_at = now
        self.attempts = 0

    def schedule(self, now: float) -> float:
        """Plan the next attempt; returns its delay."""
        delay = self.backoff.next_delay()
        self.attempts += 1
        if delay >= 1.0:
            logger.info("reconnect attempt %d in %.1f s", self.attempts, delay)
        self.retry_at = now + delay
        return delay

    def connected(
        self, now: float, name: str, generation: int, replayed: tuple[ReplayResult, ...]
    ) -> Reconnected | None:
        """A connection is ready: what the ``reconnected`` event says (``None`` for the first)."""
        self.backoff.connected(now)
        self.retry_at = None
        if self.lost_at is None:
            logger.info("%s connected", name)
            return None
        recovery = now - self.lost_at
        logger.info(
            "%s reconnected in %.3f s (attempt %d, %d subscription(s) replayed, %d failed)",
            name,
            recovery,
            self.attempts,
            len(replayed),
            sum(1 for r in replayed if r.error is not None),
        )
        return Reconnected(generation, recovery, self.attempts, replayed)


class Handshake:
    """One connect attempt: its token, the authorize request and the connect deadline.

    ``refusals`` counts 401/403 answers to authorize within the attempt (the source is asked
    again after each; :data:`MAX_REFUSALS` ends the socket).
    """

    __slots__ = ("auth_id", "deadline", "raw", "refusals", "token")

    def __init__(self) -> None:
        self.token: object | None = None
        self.raw = ""
        self.auth_id: int | None = None
        self.deadline: float | None = None
        self.refusals = 0

    def got_token(self, token: object, raw: str, deadline: float) -> None:
        self.token, self.raw, self.deadline = token, raw, deadline

    def authorize(self, json_auth: bool, request_id: int) -> str:
        """The authorize frame (``request_id`` is unused by the JSON variant)."""
        self.auth_id = None if json_auth else request_id
        return encode_json_auth(self.raw) if json_auth else encode_authorize(request_id, self.raw)

    def refusal(self, outcome: AuthOutcome, answer: Response, name: str) -> TradovateError | None:
        """The error that ends the attempt for an authorize answered with ``outcome`` (not
        ``ACCEPTED``), or ``None`` when the token source should be asked again: a 401/403
        before the :data:`MAX_REFUSALS`-th."""
        text, status = error_text(answer.data), answer.status
        if outcome is AuthOutcome.REJECTED:
            self.refusals += 1
            if self.refusals < MAX_REFUSALS:
                return None
            why = text or "no reason given"
            return TokenRejectedError(f"the {name} refused the renewed token too ({status}: {why})")
        if outcome is AuthOutcome.RATE_LIMITED:
            return RateLimitedError(
                f"{name}: authorize rate limited", status=429, body_excerpt=text
            )
        return ConnectFailedError(f"{name}: authorize failed ({status}: {text})")


#: Sees a server event before the buffer; ``True``: it handled it (``TradovateWebSocket.set_taps``).
EventTap: TypeAlias = Callable[[Event], bool]
#: Sees a message of an open connection before it is decoded; ``True``: it handled it.
FrameTap: TypeAlias = Callable[[WireText], bool]

_RESYNC_WARNING: Final = (
    "%s: the consumer fell behind; %s events dropped (an 'overflow' event marks the gap); "
    "asking for %d fresh snapshot(s)"
)


class SocketConnection:
    """The state of one socket object over all its connections (see the module docstring)."""

    def __init__(self, settings: SocketSettings, *, rng: random.Random | None = None) -> None:
        self.settings = settings
        self._name = f"{settings.kind} socket"
        self._reconnects = Reconnects(settings, rng)
        self.stats = WebSocketStats()
        self.calls = CallTable(settings.penalties, self.stats, settings.request_timeout)
        self.events = EventBuffer(settings.event_buffer)
        self.subscriptions: dict[Subscription, Any] = {}
        self.phase, self.ready, self.generation = Phase.IDLE, False, 0
        self.failure: TradovateError | None = None
        self.outgoing: list[str] = []
        self.actions: list[Action] = []
        self.completed: list[Call] = []
        #: The phase or readiness changed; events were buffered (the I/O layer clears both).
        self.changed = self.events_added = False
        self.event_tap: EventTap | None = None
        self.frame_tap: FrameTap | None = None
        self._handshake = Handshake()
        self._live = Liveness(settings.heartbeat_interval, settings.silence_timeout)
        self._shutdown_reason: str | None = None
        self._replaying: list[Call] = []
        self._overflow_warned = 0
        #: Kinds whose buffered events were dropped and need a fresh snapshot, and the calls
        #: asking for them (see ``_event_buffer``).
        self._resync_kinds: set[str] = set()
        self._resyncing: list[Call] = []

    def __repr__(self) -> str:
        return f"SocketConnection({self.settings.kind}, {self.phase.value}, gen={self.generation})"

    # -- inputs: lifecycle ------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Begin the first connect (a single attempt: its failure is fatal)."""
        if self.phase is not Phase.IDLE:
            raise RuntimeError("the socket was started already")
        self._begin_attempt(now)

    def close(self, now: float) -> None:
        """The user closes: fail every request with :class:`SessionClosedError`, close 1000."""
        if self.phase is Phase.CLOSED:
            return
        if self.phase in (Phase.CONNECTING, Phase.AUTHORIZING, Phase.OPEN):
            self.actions.append(CloseTransport(graceful=True))
        self._set_phase(Phase.CLOSED)
        self.ready = False
        self.calls.fail_all(SessionClosedError, "the WebSocket was closed")
        self._collect(now)

    def token_received(self, token: object, raw: str, now: float) -> None:
        """The token for the next connect (raw: the string the authorize frame carries)."""
        if self.phase is not Phase.CONNECTING:
            return
        self._handshake.got_token(token, raw, now + self.settings.connect_timeout)
        self.changed = True  # a new deadline: the timer must look again
        self.actions.append(OpenTransport())

    def transport_opened(self, now: float) -> None:
        """The transport is open; the server's ``o`` comes next (the connect deadline runs)."""

    def connect_failed(self, error: TradovateError, now: float) -> None:
        """Getting a token or opening the transport failed (the error says how)."""
        if self.phase is Phase.CONNECTING:
            self._connect_failed(error, now, close=False)

    def transport_closed(self, reason: str, now: float) -> None:
        """The transport ended on its own (closed by the peer, reset, a read error)."""
        self._lose(reason, now, graceful=False, close=False)

    def frame_sent(self, now: float) -> None:
        """The oldest outgoing frame has been written (send-stall detection)."""
        self._live.sent()

    # -- inputs: requests -------------------------------------------------------------------

    def submit(self, call: Call, now: float) -> Call:
        """A user request: sent now if a connection is ready, else queued (within its deadline)."""
        if self.failure is not None or self.phase is Phase.CLOSED:
            error = self.failure or SessionClosedError("the WebSocket is closed")
            self.calls.finish(call, error=error)
            self._collect(now)
            return call
        self.calls.add(call, now)
        if self.ready:
            for queued in self.calls.take_queued():
                self._send(self.calls.send(queued), now)
        return call

    # -- inputs: frames and time ------------------------------------------------------------

    def receive(self, text: WireText, now: float) -> int:
        """One message from the server. Returns how many events it left in the buffer for the
        consumer (the I/O layer gives the consumer a turn after a few dozen)."""
        self._live.last_rx = now
        if self.phase is Phase.OPEN:
            if (tap := self.frame_tap) is not None and tap(text):
                return 0
            if self.event_tap is None and (events := decode_plain_events(text)) is not None:
                return self._buffer_events(events, now)
        try:
            frame = decode_frame(text)
        except ProtocolError as exc:
            self.stats.malformed_frames += 1
            logger.warning("ignoring a malformed frame: %s", redact(str(exc)))
            return 0
        phase = self.phase
        if type(frame) is MessagesFrame:
            for why in frame.dropped:
                self.stats.malformed_frames += 1
                logger.warning("ignoring an event: %s", redact(why))
            if phase is Phase.OPEN:
                return self._messages(frame, now)
            if phase is Phase.AUTHORIZING:
                self._auth_messages(frame, now)
        elif type(frame) is CloseFrame:
            why = f"server sent c[{frame.code},{scrub_known(frame.reason)!r}]"
            if phase is Phase.OPEN:
                self._lose(why, now, graceful=True)
            elif phase in (Phase.CONNECTING, Phase.AUTHORIZING):
                self._connect_failed(
                    ConnectFailedError(f"{self._name}: server closed during authorize ({why})"),
                    now,
                )
        elif type(frame) is OpenFrame and phase is Phase.CONNECTING:
            self._set_phase(Phase.AUTHORIZING)
            json_auth = self.settings.auth_frame == "json"
            self._send(self._handshake.authorize(json_auth, self.calls.allocate_id()), now)
        elif phase is Phase.CONNECTING and type(frame) is not OpenFrame:
            error = ProtocolError(f"expected the open frame 'o', got {type(frame).__name__}")
            failure = ConnectFailedError(f"{self._name}: connect failed: {error}")
            self._connect_failed(failure, now)
        return 0

    def tick(self, now: float) -> None:
        """Act on every timer due at ``now``."""
        phase = self.phase
        if phase in (Phase.CONNECTING, Phase.AUTHORIZING):
            deadline = self._handshake.deadline
            if deadline is not None and now >= deadline:
                limit = self.settings.connect_timeout
                error = ConnectFailedError(f"{self._name}: no open/authorize within {limit:g} s")
                self._connect_failed(error, now)
        elif phase is Phase.RECONNECTING:
            retry_at = self._reconnects.retry_at
            if retry_at is not None and now >= retry_at:
                self._begin_attempt(now)
        elif phase is Phase.OPEN:
            self._open_timers(now)
        for call in self.calls.expire(now):
            if call.replay or self.ready:
                self._send(self.calls.send(call), now)
            else:
                self.calls.requeue(call)
        self._collect(now)

    def _open_timers(self, now: float) -> None:
        live = self._live
        dead = live.verdict(now)
        if dead is not None:
            self._lose(dead, now, graceful=False)
        elif live.beat_due(now):
            self._send(HEARTBEAT_TEXT, now)
            self.stats.heartbeats_sent += 1

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`tick` has something to do (``None``: nothing timed)."""
        candidates: list[float] = []
        phase = self.phase
        if phase in (Phase.CONNECTING, Phase.AUTHORIZING) and self._handshake.deadline is not None:
            candidates.append(self._handshake.deadline)
        elif phase is Phase.RECONNECTING and self._reconnects.retry_at is not None:
            candidates.append(self._reconnects.retry_at)
        elif phase is Phase.OPEN:
            candidates += self._live.deadlines()
        calls = self.calls.next_deadline()
        if calls is not None:
            candidates.append(calls)
        return min(candidates, default=None)

    @property
    def silence_deadline(self) -> float | None:
        """When the open connection counts as silent (the I/O layer lets its reader run first)."""
        return self._live.last_rx + self._live.silence if self.phase is Phase.OPEN else None

    # -- internals --------------------------------------------------------------------------

    def _set_phase(self, phase: Phase) -> None:
        self.phase = phase
        self.changed = True

    def _send(self, text: str, now: float) -> None:
        self.outgoing.append(text)
        self._live.unsent.append(now)

    def _deliver(self, *events: Event) -> None:
        """The one place events are buffered (and the overflow policy applied)."""
        for event in events:
            self.events.put(event)
        self._delivered(self.events)

    def _delivered(self, buffer: EventBuffer) -> None:
        self.stats.dropped_events = buffer.dropped
        self.events_added = True
        self._resync_kinds |= buffer.take_resync()
        if len(buffer) > buffer.maxlen:
            self._overflow_warned = warn_on_overflow(buffer, self._overflow_warned)

    def _send_resync(self, now: float) -> None:
        """After a dropped backlog: ask again for the snapshots of the dropped kinds (a fresh
        ``user/syncrequest`` for ``props``); their answers come as a ``resynced`` event."""
        kinds, self._resync_kinds = self._resync_kinds, set()
        # A snapshot already asked for covers every event dropped before its answer arrives
        # (the server sends the answer after the events it has sent).
        asked = {call.endpoint.lower() for call in self._resyncing}
        endpoints = {RESYNC_ENDPOINTS[kind] for kind in kinds} - asked
        subs = [sub for sub in self.subscriptions if sub.endpoint.lower() in endpoints]
        if not subs:
            return
        dropped, count = "/".join(sorted(kinds)), len(subs)
        logger.warning(_RESYNC_WARNING, self._name, dropped, count)
        calls = replay_calls(subs)
        for call in calls:
            self.calls.add(call, now)
            self._send(self.calls.send(call), now)
        self._resyncing += calls

    def _buffer_events(self, events: list[Event], now: float) -> int:
        """A frame of ordinary events (the hot path): buffered at once. Returns how many."""
        self.events_added = True
        if self.events.put_all(events):  # room was made: count, warn, resynchronise
            self._delivered(self.events)
            if self._resync_kinds:
                self._send_resync(now)
        return len(events)

    def _messages(self, frame: MessagesFrame, now: float) -> int:
        """One pass over a frame: events to the buffer, answers to their calls. Returns how
        many events were buffered."""
        buffer = self.events
        tap = self.event_tap
        put = buffer.put
        answered = False
        delivered = 0
        for item in frame.items:
            if type(item) is Event:
                if tap is not None and tap(item):
                    continue
                if item.kind == "shutdown":
                    self._shutdown_reason = shutdown_reason(item, self._name)
                put(item)
                delivered += 1
            else:
                self.calls.answer(item, now)  # type: ignore[arg-type]
                answered = True
                if self._resyncing:  # ``resynced`` where its answer is: newer events follow
                    self._collect(now)
        if answered:
            self._collect(now)
        if delivered:
            self._delivered(buffer)
            if self._resync_kinds and self.phase is Phase.OPEN:
                self._send_resync(now)
        if self._shutdown_reason is not None:
            self._lose(f"server shutdown ({self._shutdown_reason})", now, graceful=True)
        return delivered

    def _auth_messages(self, frame: MessagesFrame, now: float) -> None:
        for item in frame.items:
            if isinstance(item, Event):
                self._deliver(item)
                continue
            outcome = interpret_auth_response(item, self._handshake.auth_id)
            if outcome is None or self.phase is not Phase.AUTHORIZING:
                continue
            if outcome is AuthOutcome.ACCEPTED:
                self._authorized(now)
            elif (error := self._handshake.refusal(outcome, item, self._name)) is not None:
                self._connect_failed(error, now)
            else:  # 401/403: a renewal elsewhere may have retired the token; ask again
                logger.warning(
                    "%s: token refused (%d); asking for a renewed token", self._name, item.status
                )
                self.actions.append(CloseTransport(graceful=True))
                self._set_phase(Phase.CONNECTING)
                self._handshake.deadline = None
                self.actions.append(FetchToken(refused=self._handshake.token))

    def _authorized(self, now: float) -> None:
        self._set_phase(Phase.OPEN)
        self._handshake.deadline = None
        self._live.start(now)
        self._replaying = replay_calls(self.subscriptions)
        for call in self._replaying:
            self.calls.add(call, now)
            self._send(self.calls.send(call), now)
        if not self._replaying:
            self._ready(now, ())

    def _ready(self, now: float, replayed: tuple[ReplayResult, ...]) -> None:
        stats = self.stats
        stats.connects += 1
        self.generation = stats.connects
        self.ready = True
        self.changed = True
        self._shutdown_reason = None
        info = self._reconnects.connected(now, self._name, self.generation, replayed)
        if info is not None:
            stats.reconnects += 1
            stats.last_recovery_seconds = info.recovery_seconds
            self._deliver(Event(EVENT_RECONNECTED, info))
        for call in self.calls.take_queued():
            self._send(self.calls.send(call), now)

    def _collect(self, now: float) -> None:
        """Book finished calls: subscriptions remember their answer, the last replay makes the
        connection ready, user calls go to :attr:`completed`."""
        finished = self.calls.completed
        if not finished:
            return
        self.calls.completed = []
        for call in finished:
            sub = call.subscription
            if sub is not None and call.error is None:
                if not call.replay or sub in self.subscriptions:
                    self.subscriptions[sub] = call.data
            if not call.replay:
                self.completed.append(call)
        replaying = self._replaying
        if replaying and all(c.done for c in replaying) and self.phase is Phase.OPEN:
            self._replaying = []
            self._ready(now, replay_results(replaying))
        resyncing = self._resyncing
        if resyncing and all(c.done for c in resyncing):
            self._resyncing = []
            self._deliver(Event(EVENT_RESYNCED, replay_results(resyncing)))

    def _begin_attempt(self, now: float) -> None:
        self._set_phase(Phase.CONNECTING)
        self._reconnects.retry_at = None
        self._handshake = Handshake()
        self.actions.append(FetchToken())

    def _connect_failed(self, error: TradovateError, now: float, *, close: bool = True) -> None:
        if close:
            self.actions.append(CloseTransport(graceful=isinstance(error, RateLimitedError)))
        self._handshake.deadline = None
        first = self.generation == 0
        fatal = isinstance(error, TokenRejectedError | RateLimitedError | SessionClosedError)
        if first or fatal or is_permanent(error):
            self._fail(error, now)
            return
        self.stats.connect_failures += 1
        logger.warning("reconnect attempt %d failed: %s", self._reconnects.attempts, error)
        self._reconnects.schedule(now)
        self._set_phase(Phase.RECONNECTING)

    def _lose(self, reason: str, now: float, *, graceful: bool, close: bool = True) -> None:
        """The open connection is gone (or the one being set up, which counts as a failure)."""
        phase = self.phase
        if phase in (Phase.CONNECTING, Phase.AUTHORIZING):
            error = ConnectFailedError(f"{self._name}: connection lost during connect ({reason})")
            self._connect_failed(error, now, close=close)
            return
        if phase is not Phase.OPEN:
            return
        if close:
            self.actions.append(CloseTransport(graceful=graceful))
        self._live.unsent.clear()
        was_ready, self.ready = self.ready, False
        self.calls.lose_connection(reason, closing=False)
        self._replaying = []
        self._collect(now)
        if not was_ready:
            error = ConnectFailedError(
                f"{self._name}: connection lost right after authorize ({reason})"
            )
            self._connect_failed(error, now, close=False)
            return
        self.stats.last_disconnect_reason = reason
        shutdown, self._shutdown_reason = self._shutdown_reason, None
        lost = Disconnected(self.generation, reason, shutdown)
        self._reconnects.lost(now, self._name, lost)
        self._deliver(Event(EVENT_DISCONNECTED, lost))
        self._reconnects.schedule(now)
        self._set_phase(Phase.RECONNECTING)

    def _fail(self, error: TradovateError, now: float) -> None:
        """Give up for good: every request and ``events()`` raise ``error`` from now on."""
        if self.generation:
            name, kind = self._name, type(error).__name__
            logger.error("%s gave up: %s: %s (events() and requests raise it)", name, kind, error)
        self.failure = error
        self.ready = False
        self._set_phase(Phase.CLOSED)
        self.calls.fail_with(error)
        self._collect(now)
