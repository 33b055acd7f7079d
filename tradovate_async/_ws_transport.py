"""A websockets client connection that hands complete messages to the socket directly.

``websockets`` parses frames in ``data_received`` and queues each message for ``recv()``: a
future per wake-up, an assembler and a reader task that takes them one at a time. For a market
data stream that bookkeeping costs more than decoding the quote. :class:`DirectConnection`
keeps the parsing (and with it the limits, the UTF-8 rules of the protocol, control frames and
the closing handshake) and takes over only the hand-off: each complete message goes to a sink
(the socket's sans-I/O core) from the protocol callback itself.

Fairness and memory stay bounded as with a reader task. At most :data:`SLICE` messages are fed
per turn of the event loop, fewer once :data:`HANDOFF_EVENTS` events wait for the consumer; the
rest of a socket read waits, undecoded, while reading from the
socket is paused, and the next turn comes after every task that was ready (the consumer of the
events among them). So a burst never turns into a long run of decoded objects nobody has taken,
and a consumer that does not consume cannot stall heartbeats or answers: the sink never waits.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Final, TypeAlias

from websockets.asyncio.client import ClientConnection
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State

from ._secret import scrub_known

__all__ = ["HANDOFF_EVENTS", "SLICE", "DirectConnection", "Message"]

#: A message as the protocol parsed it.
Message: TypeAlias = bytes | bytearray | memoryview

#: Messages fed to the sink per turn of the event loop (see the module docstring).
SLICE = 32
#: Events left waiting for the consumer after which it gets its turn, whatever the count of
#: messages: at 10 events a message, 32 messages would hold 320 decoded events at once, and the
#: garbage collector would keep walking them.
HANDOFF_EVENTS = 10

logger = logging.getLogger(__name__)

#: First header byte of a final text or binary frame with no extension bits.
_FINAL_DATA: Final = frozenset({0x81, 0x82})
_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONT = Opcode.CONT


def _frame_extent(
    buf: bytes | bytearray | memoryview, pos: int, end_of_data: int
) -> tuple[int, int] | None:
    """Where the payload of the frame at ``pos`` starts and where the frame ends (a masking
    key counted: a server must not mask, and websockets' parser says so), or ``None`` while
    its header is incomplete."""
    if end_of_data - pos < 2:
        return None
    head2 = buf[pos + 1]
    length, start = head2 & 0x7F, pos + 2
    if length == 126:
        if end_of_data < pos + 4:
            return None
        length, start = (buf[pos + 2] << 8) | buf[pos + 3], pos + 4
    elif length == 127:
        if end_of_data < pos + 10:
            return None
        length, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
    if head2 & 0x80:
        start += 4
    return start, start + length


class DirectConnection(ClientConnection):
    """A :class:`~websockets.asyncio.client.ClientConnection` whose data messages go to
    :meth:`attach`'s sink instead of ``recv()``. Messages that arrive before ``attach`` (the
    server's ``o`` can come in the same read as the handshake answer) wait for it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sink: Callable[[Message], int] | None = None
        self._pending: deque[Message] = deque()
        self._fragments: list[Message] | None = None
        self._partial = bytearray()
        # websockets' own limit, checked here too. Splitting frames needs two internals of
        # websockets (this limit and its reader's buffer): without them (another version),
        # every frame goes through websockets' parser, as with recv().
        limit = getattr(self.protocol, "max_message_size", -1)
        self._max_message = 1 << 62 if limit is None else limit
        self._can_split = limit != -1 and hasattr(self.protocol.reader, "buffer")
        self._scheduled = False
        self._reading_paused = False
        self.sink_failed = False

    def attach(self, sink: Callable[[Message], int]) -> None:
        """Deliver every message, those already received first, to ``sink``, which returns
        how many events it left waiting for the consumer."""
        self._sink = sink
        self._feed()

    @property
    def pending_messages(self) -> int:
        """Messages received and not yet handed to the sink."""
        return len(self._pending)

    def process_event(self, event: Response | Frame) -> None:  # type: ignore[override]
        if type(event) is not Frame or self.response is None:
            super().process_event(event)
            return
        opcode = event.opcode
        if opcode is _TEXT or opcode is _BINARY:
            if event.fin:
                self._pending.append(event.data)
            else:
                self._fragments = [event.data]
        elif opcode is _CONT and self._fragments is not None:
            # The protocol bounds the whole message by max_size, fragments included.
            self._fragments.append(event.data)
            if event.fin:
                self._pending.append(b"".join(self._fragments))
                self._fragments = None
        else:
            super().process_event(event)  # ping, pong, close: websockets' own handling

    def data_received(self, data: bytes) -> None:
        view: bytes | memoryview = data
        partial = self._partial
        if partial:
            extent = _frame_extent(partial, 0, len(partial))
            more = None if extent is None else extent[1] - len(partial)
            if more is None or more >= len(data):
                # Appending is amortised O(1): a large message arriving in many reads is
                # copied about once, not once per read.
                partial += data
                used = self._split_frames(partial)
                if used < 0:
                    self._partial = bytearray()
                elif used:
                    del partial[:used]
                self._fed()
                return
            # Only the rest of the waiting frame joins it; the rest of the read is split where
            # it lies (copying each whole read into the bytearray was a copy of every byte).
            partial += memoryview(data)[:more]
            used = self._split_frames(partial)
            self._partial = bytearray()
            view = memoryview(data)[more:]
            if used < 0:  # websockets has that frame, so it takes what follows too
                super().data_received(bytes(view))
                self._fed()
                return
        if self._at_frame_boundary():
            used = self._split_frames(view)
            if 0 <= used < len(view):
                self._partial = bytearray(view[used:])
        else:
            super().data_received(bytes(view))
        self._fed()

    def _fed(self) -> None:
        if not self._scheduled:
            self._feed()

    def _at_frame_boundary(self) -> bool:
        """Whether the next byte starts a frame that this class may read itself: the
        connection is open, websockets holds no part of a frame, no message is fragmented."""
        protocol = self.protocol
        return (
            self._can_split
            and self.response is not None
            and protocol.state is State.OPEN
            and not protocol.reader.buffer
            and self._fragments is None
        )

    def _split_frames(self, buf: bytes | bytearray | memoryview) -> int:
        """Cut complete, final, unmasked text and binary frames out of ``buf`` (the common
        case: one header read, one slice). Every other frame (control frames, fragments,
        compressed or invalid ones) goes whole to websockets' parser, which answers it as
        usual. Returns how many bytes were used (the rest is an incomplete frame, for
        ``_partial``), or -1 when websockets took everything from some frame on."""
        pending, end_of_data, limit = self._pending, len(buf), self._max_message
        # A message is a view of the read it came in, not a copy (decoded from where the read
        # left it); a bytearray of waiting bytes is copied from, as it will be resized.
        view = None if type(buf) is bytearray else memoryview(buf)
        pos = 0
        while end_of_data - pos >= 2:
            head1, head2 = buf[pos], buf[pos + 1]
            if (head1 == 0x81 or head1 == 0x82) and head2 <= 126:  # final, unmasked data
                if head2 < 126:
                    start = pos + 2
                    end = start + head2
                elif pos + 4 <= end_of_data:
                    start = pos + 4
                    end = start + ((buf[pos + 2] << 8) | buf[pos + 3])
                else:
                    break  # the header is cut: wait for the rest
                if end <= end_of_data and end - start <= limit:
                    pending.append(view[start:end] if view is not None else bytes(buf[start:end]))
                    pos = end
                    continue
            # Any other frame, an incomplete one, or one over the limit.
            extent = _frame_extent(buf, pos, end_of_data)
            if extent is None:
                break  # the header is cut: wait for the rest
            start, end = extent
            length = end - start
            if end > end_of_data:
                if length <= limit and length < 1 << 62:
                    break  # wait for the rest
            elif head1 in _FINAL_DATA and head2 < 0x80 and length <= limit:
                pending.append(view[start:end] if view is not None else bytes(buf[start:end]))
                pos = end
                continue
            elif length <= limit:
                super().data_received(bytes(buf[pos:end]))  # one whole frame for websockets
                pos = end
                if self._at_frame_boundary():
                    continue
            # Too large, a protocol error, or the closing handshake: websockets has the rest.
            super().data_received(bytes(buf[pos:]))
            return -1
        return pos

    def loss_reason(self) -> str:
        """Why the connection ended, in words for logs and ``disconnected`` events (a close
        reason from the server is scrubbed of known secrets)."""
        protocol = self.protocol
        if self.sink_failed:
            return "reader error"
        if (rcvd := protocol.close_rcvd) is not None:
            return f"closed {rcvd.code} {scrub_known(rcvd.reason)!r}"
        if (sent := protocol.close_sent) is not None:
            return f"failed by this side {sent.code} {sent.reason!r}"  # e.g. 1009: too big
        if isinstance(self.connection_exc, OSError):
            return f"transport error: {type(self.connection_exc).__name__}"
        return "connection closed without a close frame"

    def finish(self) -> None:
        """The connection is closed: hand over what is still waiting, all of it now."""
        pending = self._pending
        while pending and not self.sink_failed:
            self._deliver(pending.popleft())

    def pull(self) -> bool:
        """Feed the sink one slice now, from the consumer's task: ``False`` when nothing waits.

        A consumer that has taken every event asks for the next slice itself instead of
        waiting for the next turn of the event loop (a wake-up, a select, a task step: more
        than the slice's own work). It can only take what was read already, and reading
        resumes once that is gone, so the loop's turn still comes after at most one read."""
        if not self._pending or self._sink is None or self.sink_failed:
            return False
        self._feed_slice()
        if not self._pending and self._reading_paused:
            self._resume()
        return True

    def _feed_slice(self) -> None:
        pending, sink = self._pending, self._sink
        assert sink is not None
        waiting = 0
        try:
            for _ in range(min(SLICE, len(pending))):
                waiting += sink(pending.popleft())
                if waiting >= HANDOFF_EVENTS:
                    return
        except Exception:
            self._drop_after_sink_error()

    def _resume(self) -> None:
        self._reading_paused = False
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def _feed(self) -> None:
        self._scheduled = False
        if self._sink is None:
            return
        self._feed_slice()
        if self.sink_failed:
            return
        pending = self._pending
        if pending:
            if not self._reading_paused and self.transport is not None:
                self._reading_paused = True
                self.transport.pause_reading()
            self._scheduled = True
            self.loop.call_soon(self._feed)
        elif self._reading_paused:
            self._resume()

    def _deliver(self, message: Message) -> int:
        sink = self._sink
        assert sink is not None
        try:
            return sink(message)
        except Exception:
            self._drop_after_sink_error()
            return 0

    def _drop_after_sink_error(self) -> None:
        # A bug here must not silence the socket: drop the connection, so it is rebuilt.
        logger.exception("the socket failed to take a message; dropping the connection")
        self.sink_failed = True
        self._pending.clear()
        self.transport.abort()
