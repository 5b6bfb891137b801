"""The delivery core of the edge agent: which events to publish, what is delivered, what to mark.

Sans-I/O: it reads no database, socket or clock. The agent (``edge_agent.agent``) tells it
what happened (a connection, a PUBACK, the gateway's end-to-end ack, a lost link, the time)
and feeds it outbox rows when it asks for them; it answers with decisions (the rows to
publish now, the marks to write, whether to send again from an earlier event). That keeps the
window and ack rules testable as data, with no broker (tests/test_delivery.py).

The rules:

- events go out in ``seq`` order, at most ``window`` without a PUBACK; with end-to-end acks
  also at most ``ack_window`` beyond the last event the gateway acknowledged;
- a PUBACK with a success code marks the event delivered (with end-to-end acks: published;
  it is delivered when the gateway's ``{"through": N}`` covers it). A failure code blocks
  delivery until the next connection, which starts again from that event;
- every connection starts again at the first event not known to be delivered; with
  end-to-end acks so does ``ack_timeout_s`` without progress, and ``resend_from``;
- marks that could not be written (a full disk) stay here and are tried again after a
  backoff (1 s doubling to 8 s); delivery goes on from what is known in memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from edge_agent.outbox import OutboxRow

MARK_EVERY_S = 0.1
MARK_BATCH = 500
MARK_RETRY_MIN_S = 1.0
MARK_RETRY_MAX_S = 8.0


@dataclass(frozen=True, slots=True)
class EventTag:
    """The tag of an event's publish: its outbox ``seq`` (paho's message id restarts on every
    connection, so it never identifies an event)."""

    seq: int


class Puback(Enum):
    """What a PUBACK for an event means."""

    STALE = "stale"  # delivery is blocked since an earlier refusal: nothing follows from it
    ACCEPTED = "accepted"  # the broker has it: it will be marked
    REFUSED = "refused"  # not a delivery: raise an alert, drop the link, retry later


@dataclass(frozen=True, slots=True)
class Marks:
    """Bookkeeping to write to the outbox now."""

    through: int  # every event up to here is delivered (the gateway's ack); 0 for none
    seqs: tuple[int, ...]  # these events were PUBACKed: published (end-to-end) or delivered


@dataclass(frozen=True, slots=True)
class Limits:
    e2e: bool  # broker.end_to_end_ack
    window: int  # broker.inflight_window
    ack_window: int  # broker.ack_window, never below the window
    ack_timeout_s: float
    batch: int  # outbox rows read at a time

    @classmethod
    def of(cls, e2e: bool, window: int, ack_window: int, ack_timeout_s: float) -> Limits:
        return cls(
            e2e, window, max(ack_window, window), ack_timeout_s, min(max(2 * window, 64), 500)
        )


@dataclass(slots=True)
class _MarkState:
    seqs: list[int] = field(default_factory=list)
    unrecorded_ack: int = 0  # the gateway acknowledged through here; not yet in the file
    last: float = 0.0
    failures: int = 0
    retry_at: float = 0.0


class Delivery:
    """The window, the acks and the marks of one agent, across its connections."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.window = limits.window
        self.next_after = 0  # every seq up to here has been handed to this connection
        self.acked_through = 0  # the gateway has every event up to here (end-to-end acks)
        self.buffer: deque[OutboxRow] = deque()
        self.inflight: dict[int, float] = {}
        self.maybe_more = True  # rows after next_after may exist that were not read yet
        self.blocked = False
        self.rewind_to: int | None = None
        self.ack_pending = 0
        self.progress_at = 0.0
        self.delivered_count = 0
        self._marks = _MarkState()

    # --- connections --------------------------------------------------------------------

    def start(self, delivered_through: int) -> None:
        """Before the first connection: what the outbox says is delivered."""
        self.acked_through = delivered_through
        self.next_after = delivered_through if self.limits.e2e else 0

    def connected(self, now: float, delivered_through: int, receive_maximum: int | None) -> bool:
        """A new connection: start again at the first event not known to be delivered.
        Returns whether the previous link ended on a refused event."""
        self.window = self.limits.window
        if receive_maximum is not None:
            # Never more in flight than the broker accepts (MQTT 5 Receive Maximum); the
            # few status, telemetry and reply messages need room too.
            self.window = max(1, min(self.window, receive_maximum - 2))
        was_blocked, self.blocked = self.blocked, False
        self.acked_through = max(self.acked_through, delivered_through)
        self.next_after = self.acked_through if self.limits.e2e else 0
        self.rewind_to = None
        self.buffer.clear()
        self.inflight.clear()
        self.maybe_more = True
        self.progress_at = now
        return was_blocked

    def link_lost(self) -> None:
        """What was in flight is unknown: it is sent again on the next connection."""
        self.inflight.clear()
        self.buffer.clear()

    # --- publishing ---------------------------------------------------------------------

    def next_batch(self, now: float) -> list[OutboxRow]:
        """The events to publish now, in ``seq`` order, taken from the rows fed so far."""
        if self.blocked or not self._rewound():
            return []
        out: list[OutboxRow] = []
        while self.buffer and self._room():
            row = self.buffer.popleft()
            if self.limits.e2e and self.next_after <= self.acked_through:
                self.progress_at = now
            self.inflight[row.seq] = now
            self.next_after = row.seq
            out.append(row)
        return out

    def wants_rows(self) -> bool:
        """Whether to read more outbox rows (those after ``next_after``) and ``feed`` them."""
        return not self.blocked and self.rewind_to is None and not self.buffer and self._room()

    def feed(self, rows: Iterable[OutboxRow], more: bool) -> None:
        """Outbox rows after ``next_after``, oldest first; ``more``: the read hit its limit."""
        self.buffer.extend(rows)
        self.maybe_more = more

    def _room(self) -> bool:
        if len(self.inflight) >= self.window:
            return False
        return not (
            self.limits.e2e and self.next_after - self.acked_through >= self.limits.ack_window
        )

    def _rewound(self) -> bool:
        """Apply a pending rewind once the current pass's PUBACKs are back; False until then."""
        if self.rewind_to is None:
            return True
        if self.inflight:
            return False
        self.next_after = self.rewind_to
        self.rewind_to = None
        self.buffer.clear()
        self.maybe_more = True
        return True

    # --- answers ------------------------------------------------------------------------

    def on_published(self, seq: int, ok: bool) -> Puback:
        """The broker's PUBACK for an event."""
        self.inflight.pop(seq, None)
        if self.blocked:
            return Puback.STALE
        if not ok:
            self.blocked = True
            return Puback.REFUSED
        self._marks.seqs.append(seq)
        return Puback.ACCEPTED

    def on_ack(self, through: int) -> None:
        """The gateway's end-to-end ack (applied by ``take_ack`` once per batch of events)."""
        if through > max(self.acked_through, self.ack_pending):
            self.ack_pending = through

    def take_ack(self) -> int | None:
        """An ack beyond what is known, to check against the outbox and then ``accept_ack``."""
        through, self.ack_pending = self.ack_pending, 0
        return through if through > self.acked_through else None

    def accept_ack(self, through: int, now: float) -> None:
        """The gateway has every event through ``through``: go on from there, even while the
        file cannot say so yet."""
        self.acked_through = through
        self.progress_at = now
        self.next_after = max(self.next_after, through)
        self._marks.unrecorded_ack = through

    def check_ack_timeout(self, now: float) -> bool:
        """With end-to-end acks: True when ``ack_timeout_s`` passed without progress, and
        sending starts again after ``acked_through``."""
        if not self.limits.e2e or self.rewind_to is not None:
            return False
        if self.next_after <= self.acked_through:
            self.progress_at = now
            return False
        if now - self.progress_at <= self.limits.ack_timeout_s:
            return False
        self.rewind_to = self.acked_through
        self.progress_at = now
        return True

    def resend_from(self, seq: int) -> None:
        """The gateway asked for everything from ``seq`` again (the outbox was reopened)."""
        self.acked_through = min(self.acked_through, seq - 1)
        # Back to seq, never forward: events before it not yet sent in this pass (or before
        # a rewind still waiting) must not be skipped.
        here = self.next_after if self.rewind_to is None else self.rewind_to
        self.rewind_to = min(seq - 1, here)

    # --- marks --------------------------------------------------------------------------

    def unrecorded(self) -> bool:
        """Whether some PUBACK or ack is not in the file yet."""
        return bool(self._marks.seqs or self._marks.unrecorded_ack)

    def marks_due(self, now: float, force: bool = False) -> Marks | None:
        """The marks to write now: batched every ``MARK_EVERY_S`` or ``MARK_BATCH`` events,
        at once when nothing is in flight or when ``force``d, never before a retry is due."""
        m = self._marks
        if not self.unrecorded() or (not force and now < m.retry_at):
            return None
        if not (
            force or not self.inflight or len(m.seqs) >= MARK_BATCH or now - m.last >= MARK_EVERY_S
        ):
            return None
        m.last = now
        return Marks(m.unrecorded_ack, tuple(m.seqs))

    def ack_due(self, now: float) -> int:
        """The gateway's ack to write at once (0 for none, or while a retry waits)."""
        return self._marks.unrecorded_ack if now >= self._marks.retry_at else 0

    def recorded_through(self, through: int, changed: int) -> int:
        """The outbox now says every event through ``through`` is delivered (``changed``
        rows). Returns how many tries had failed before."""
        if self._marks.unrecorded_ack == through:
            self._marks.unrecorded_ack = 0
        self.delivered_count += changed
        return self._recorded()

    def recorded(self, seqs: tuple[int, ...]) -> int:
        """The outbox now holds the marks of ``seqs`` (as ``marks_due`` gave them). Returns
        how many tries had failed before."""
        del self._marks.seqs[: len(seqs)]
        if not self.limits.e2e:
            self.delivered_count += len(seqs)
        return self._recorded()

    def record_failed(self, now: float) -> float:
        """A mark was not written; returns the seconds until the next try."""
        m = self._marks
        m.failures += 1
        delay = min(MARK_RETRY_MAX_S, MARK_RETRY_MIN_S * 2.0 ** (m.failures - 1))
        m.retry_at = now + delay
        return delay

    def _recorded(self) -> int:
        failures, self._marks.failures, self._marks.retry_at = self._marks.failures, 0, 0.0
        return failures
