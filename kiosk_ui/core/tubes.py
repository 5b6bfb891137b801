"""The tube desk: what samplers do with tubes and boxes.

Tube lifecycle (docs/rules.md)::

    (scan tube barcode) -> open --seal--> sealed --dispatch(box)--> dispatched
                            |               |
                            +----void-------+--> voided   (members must check in again)

Pooled residents join the open pooled tube in check-in order. When there is none, or it is
full, they wait in a durable queue (``waiting``, amber light) and join the next tube the
sampler scans, in order. The open tube takes from the head of the queue whenever it has room,
so nobody who checked in later overtakes anybody waiting. Yellow-code residents do the same
with single-sample tubes (capacity 1) at the single desk.

Each action is one write transaction with its events (``kiosk_ui.core.ledger``); a request
the sampler can fix raises ``RuleViolation`` (texts in ``kiosk_ui.core.messages``) and
writes nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edge_agent.events import EventType
from kiosk_ui.core import barcodes, messages, store
from kiosk_ui.core.barcodes import BarcodeKinds, ScanKind
from kiosk_ui.core.ledger import Event, Ledger, Tx
from kiosk_ui.core.messages import violation
from kiosk_ui.core.rules import Thresholds, TubeMode
from kiosk_ui.core.store import Tube
from kiosk_ui.errors import RuleViolation


@dataclass(frozen=True, slots=True)
class Joined:
    """A waiting resident who joined a tube when it got room."""

    resident: str
    tube: str
    position: int
    lane: str


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What a scanned barcode did: a tube opened (and who joined it), or a box selected."""

    kind: ScanKind
    text: str
    tube: Tube | None = None
    joined: tuple[Joined, ...] = ()
    box: str | None = None
    ready: tuple[str, ...] = ()  # for a box: the sealed tubes a dispatch would take
    events: tuple[Event, ...] = ()


@dataclass(frozen=True, slots=True)
class TubeResult:
    """The tube after a seal, void or remove, and who joined it from the queue."""

    tube: Tube
    joined: tuple[Joined, ...] = ()
    events: tuple[Event, ...] = ()


@dataclass(frozen=True, slots=True)
class DispatchResult:
    box: str
    tubes: tuple[str, ...]
    events: tuple[Event, ...]


class TubeDesk:
    """Opens, seals, voids and dispatches tubes; moves residents in and out of them."""

    def __init__(
        self,
        ledger: Ledger,
        kinds: BarcodeKinds,
        thresholds_in: Callable[[sqlite3.Connection], Thresholds],
    ) -> None:
        self.ledger = ledger
        self.kinds = kinds
        self._thresholds_in = thresholds_in

    def scan(self, text: str, sampler: str, mode: TubeMode | str = TubeMode.POOL) -> ScanResult:
        """The sampler's scanner read ``text``.

        A tube barcode opens a tube (pooled, or single-sample when ``mode`` is ``single``)
        and the waiting residents join it in order. A box barcode selects a box: nothing is
        written, the result lists the sealed tubes a ``dispatch`` would take. A resident
        code, an unknown text, a barcode already used, or a tube while one of the same mode
        is still open raise RuleViolation.
        """
        mode = TubeMode(mode)
        sampler = messages.required_text(sampler, "sampler")
        code = barcodes.clean(text)
        kind = self.kinds.classify(code)
        if kind is ScanKind.RESIDENT_CODE:
            raise barcodes.resident_code_on_scanner()
        if kind is ScanKind.UNKNOWN:
            raise barcodes.unknown_barcode(code)
        if kind is ScanKind.BOX:
            with self.ledger.read() as conn:
                if store.box_used(conn, code):
                    raise violation(messages.BOX_USED, box=code)
                ready = tuple(t.tube for t in store.tubes_in_state(conn, "sealed"))
            return ScanResult(kind, code, box=code, ready=ready)
        with self.ledger.write() as tx:
            existing = store.get_tube(tx.conn, code)
            if existing is not None:
                raise violation(messages.TUBE_USED, tube=code, state=existing.state)
            current = store.open_tube(tx.conn, mode)
            if current is not None:
                raise _still_open(current)
            capacity = self._thresholds_in(tx.conn).pool_size if mode is TubeMode.POOL else 1
            store.insert_tube(
                tx.conn, code, mode=mode, capacity=capacity, sampler=sampler, at=tx.now
            )
            tx.emit(
                EventType.TUBE_OPENED,
                {"tube": code, "mode": mode.value, "capacity": capacity, "sampler": sampler},
            )
            joined = _fill(tx, mode)
            store.note_queue(tx.conn)
            tube = _reread(tx.conn, code)
        return ScanResult(kind, code, tube, joined, events=tuple(tx.events))

    def seal(self, sampler: str, tube: str | None = None) -> TubeResult:
        """Seal the open pooled tube (or ``tube``), full or not: its group never changes."""
        sampler = messages.required_text(sampler, "sampler")
        with self.ledger.write() as tx:
            current = _target(tx.conn, tube)
            if current.count == 0:
                raise violation(messages.TUBE_EMPTY, tube=current.tube)
            store.seal_tube(tx.conn, current.tube, sampler=sampler, at=tx.now)
            tx.emit(
                EventType.TUBE_SEALED,
                {
                    "tube": current.tube,
                    "mode": current.mode.value,
                    "members": list(current.members),
                    "sampler": sampler,
                    "capacity": current.capacity,
                },
            )
            after = _reread(tx.conn, current.tube)
        return TubeResult(after, events=tuple(tx.events))

    def void(self, reason: str, sampler: str, tube: str | None = None) -> TubeResult:
        """Void the open pooled tube (or ``tube``, open or sealed, not yet dispatched).

        Its members are free to check in again: the already-sampled block lifts.
        """
        reason = messages.required_text(reason, "reason")
        sampler = messages.required_text(sampler, "sampler")
        with self.ledger.write() as tx:
            current = _target(tx.conn, None) if tube is None else _voidable(tx.conn, tube)
            store.void_tube(tx.conn, current.tube, sampler=sampler, reason=reason, at=tx.now)
            tx.emit(
                EventType.TUBE_VOIDED,
                {
                    "tube": current.tube,
                    "members": list(current.members),
                    "reason": reason,
                    "sampler": sampler,
                    "mode": current.mode.value,
                    "was": current.state,
                },
            )
            after = _reread(tx.conn, current.tube)
        return TubeResult(after, events=tuple(tx.events))

    def remove(
        self, resident: str, reason: str, sampler: str, tube: str | None = None
    ) -> TubeResult | None:
        """Take ``resident`` out of an open tube (positions close up) or out of the queue.

        Returns the tube afterwards, or None when the resident was only waiting. Waiting
        residents then fill the room in order. A sealed group never changes: removing
        from a sealed tube raises RuleViolation ``tube_sealed`` (void the tube instead).
        """
        resident = resident.strip()
        reason = messages.required_text(reason, "reason")
        sampler = messages.required_text(sampler, "sampler")
        with self.ledger.write() as tx:
            candidates = (
                [store.get_tube(tx.conn, barcodes.clean(tube))]
                if tube is not None
                else [store.open_tube(tx.conn, m) for m in TubeMode]
            )
            holding = next((c for c in candidates if c is not None and resident in c.members), None)
            if holding is None:
                _withdraw(tx, resident, reason=reason, sampler=sampler)
                return None
            if holding.state != "open":
                raise violation(messages.TUBE_SEALED, tube=holding.tube)
            joined = _take_out(tx, holding, resident, reason=reason, sampler=sampler)
            after = _reread(tx.conn, holding.tube)
        return TubeResult(after, joined, tuple(tx.events))

    def dispatch(
        self, box: str, sampler: str, tubes: Sequence[str] | None = None
    ) -> DispatchResult:
        """Put sealed tubes (all of them when ``tubes`` is None) in ``box`` and send it."""
        sampler = messages.required_text(sampler, "sampler")
        code = barcodes.clean(box)
        kind = self.kinds.classify(code)
        if kind is ScanKind.RESIDENT_CODE:
            raise barcodes.resident_code_on_scanner()
        if kind is not ScanKind.BOX:
            raise violation(messages.NOT_A_BOX, code=barcodes.short(code))
        with self.ledger.write() as tx:
            if store.box_used(tx.conn, code):
                raise violation(messages.BOX_USED, box=code)
            chosen = _sealed_tubes(tx.conn, tubes)
            store.dispatch_box(tx.conn, code, chosen, sampler=sampler, at=tx.now)
            tx.emit(EventType.BOX_DISPATCHED, {"box": code, "tubes": chosen, "sampler": sampler})
        return DispatchResult(code, tuple(chosen), tuple(tx.events))


def _fill(tx: Tx, mode: TubeMode) -> tuple[Joined, ...]:
    """Waiting residents join the open tube of ``mode`` in order while it has room."""
    current = store.open_tube(tx.conn, mode)
    if current is None:
        return ()
    joined: list[Joined] = []
    room = current.capacity - current.count
    for w in store.waiting_list(tx.conn, mode)[: max(room, 0)]:
        store.dequeue(tx.conn, w.resident)
        pos = store.add_member(tx.conn, current.tube, w.resident, w.checkin, tx.now)
        joined.append(Joined(w.resident, current.tube, pos, w.lane))
        tx.emit(
            EventType.MEMBER_ADDED,
            {
                "tube": current.tube,
                "resident": w.resident,
                "position": pos,
                "from_queue": True,
                "checkin_seq": store.checkin_event_seq(tx.conn, w.checkin),
            },
        )
    return tuple(joined)


def _withdraw(tx: Tx, resident: str, *, reason: str, sampler: str) -> None:
    """``resident`` leaves the queue (``sampling.checkin.withdrawn``)."""
    w = store.waiting_entry(tx.conn, resident)
    if w is None:
        raise _not_in_tube(tx.conn, resident)
    store.dequeue(tx.conn, resident)
    store.note_queue(tx.conn)
    tx.emit(
        EventType.CHECKIN_WITHDRAWN,
        {"resident": resident, "mode": w.mode.value, "reason": reason, "sampler": sampler},
    )


def _take_out(
    tx: Tx, holding: Tube, resident: str, *, reason: str, sampler: str
) -> tuple[Joined, ...]:
    """``resident`` leaves the open tube ``holding``; the queue fills the room."""
    old = store.remove_member(tx.conn, holding.tube, resident, reason, tx.now)
    rest = store.members(tx.conn, holding.tube)
    tx.emit(
        EventType.MEMBER_REMOVED,
        {
            "tube": holding.tube,
            "resident": resident,
            "reason": reason,
            "sampler": sampler,
            "position": old,
            "members": list(rest),
        },
    )
    joined = _fill(tx, holding.mode)
    store.note_queue(tx.conn)
    return joined


def _sealed_tubes(conn: sqlite3.Connection, tubes: Sequence[str] | None) -> list[str]:
    """The tubes a dispatch takes: every sealed one, or those named (each must be sealed)."""
    if tubes is None:
        chosen = [t.tube for t in store.tubes_in_state(conn, "sealed")]
    else:
        chosen = []
        for name in tubes:
            t = store.get_tube(conn, barcodes.clean(name))
            if t is None:
                raise violation(messages.UNKNOWN_TUBE, tube=barcodes.short(name))
            if t.state != "sealed":
                raise violation(messages.TUBE_NOT_DISPATCHABLE, tube=t.tube, state=t.state)
            if t.tube not in chosen:
                chosen.append(t.tube)
    if not chosen:
        raise violation(messages.NOTHING_TO_DISPATCH)
    return chosen


def _target(conn: sqlite3.Connection, tube: str | None) -> Tube:
    """The open pooled tube, or ``tube``, which must be open."""
    if tube is None:
        current = store.open_tube(conn, TubeMode.POOL)
        if current is None:
            raise violation(messages.NO_OPEN_TUBE)
        return current
    found = store.get_tube(conn, barcodes.clean(tube))
    if found is None:
        raise violation(messages.UNKNOWN_TUBE, tube=barcodes.short(tube))
    if found.state != "open":
        raise _closed(found)
    return found


def _voidable(conn: sqlite3.Connection, tube: str) -> Tube:
    found = store.get_tube(conn, barcodes.clean(tube))
    if found is None:
        raise violation(messages.UNKNOWN_TUBE, tube=barcodes.short(tube))
    if found.state not in ("open", "sealed"):
        raise violation(messages.TUBE_NOT_VOIDABLE, tube=found.tube, state=found.state)
    return found


def _not_in_tube(conn: sqlite3.Connection, resident: str) -> RuleViolation:
    last = store.last_tube_of(conn, resident)
    if last is not None and last.state == "sealed":
        return violation(messages.TUBE_SEALED, tube=last.tube)
    return violation(messages.NOT_IN_OPEN_TUBE)


def _still_open(t: Tube) -> RuleViolation:
    text = messages.TUBE_FULL if t.full else messages.TUBE_STILL_OPEN
    return violation(text, **_counted(t))


def _closed(t: Tube) -> RuleViolation:
    if t.state == "sealed":
        return violation(messages.TUBE_SEALED, tube=t.tube)
    return violation(messages.TUBE_CLOSED, tube=t.tube, state=t.state)


def _counted(t: Tube) -> dict[str, Any]:
    return {"tube": t.tube, "count": t.count, "capacity": t.capacity}


def _reread(conn: sqlite3.Connection, tube: str) -> Tube:
    found = store.get_tube(conn, tube)
    assert found is not None  # written in this transaction
    return found
