"""The station: the one write path for check-ins and tubes.

The kiosk screens, the drills, the CLI and the tests all go through ``Station``. Each method
that changes something runs the rules and writes the fact together with its events in ONE
transaction (``BEGIN IMMEDIATE`` ... ``COMMIT`` with ``synchronous=FULL``); it returns only
after the commit, so whatever the caller shows or lights up is already durable. A write that
cannot be made durable raises ``StorageError`` and leaves the file as it was. A request a
sampler or resident can fix (a used tube barcode, a health code on the tube scanner, ...)
raises ``RuleViolation`` with a ``code`` and a message in zh and en, and writes nothing.

Tube lifecycle (docs/rules.md)::

    (scan tube barcode) -> open --seal--> sealed --dispatch(box)--> dispatched
                            |               |
                            +----void-------+--> voided   (members must check in again)

Pooled residents join the open pooled tube in check-in order. When there is none, or it is
full, they wait in a durable queue (``waiting``, amber light) and join the next tube the
sampler scans, in order. The open tube takes from the head of the queue whenever it has room,
so nobody who checked in later overtakes anybody waiting. Yellow-code residents do the same
with single-sample tubes (capacity 1) at the single desk.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any, NamedTuple, Protocol

import sqlite_utils
from pydantic import ValidationError

from edge_agent import outbox
from edge_agent.db import open_db, write_transaction
from edge_agent.errors import StorageError
from firmware.config import StationConfig
from firmware.errors import StationError
from kiosk_ui.core import barcodes, codes, rules, store
from kiosk_ui.core.barcodes import BarcodeKinds, ScanKind
from kiosk_ui.core.rules import (
    Decision,
    Lane,
    Outcome,
    RuleViolation,
    TemperatureAssessment,
    Thresholds,
    VerdictLike,
)
from kiosk_ui.core.store import Tube, Waiting

log = logging.getLogger(__name__)

__all__ = [
    "CheckinResult",
    "Counters",
    "Decision",
    "DispatchResult",
    "Lane",
    "RuleViolation",
    "ScanKind",
    "ScanResult",
    "Station",
    "StationError",
    "StorageError",
    "Tube",
    "TubeMode",
    "TubeResult",
    "Waiting",
]

# Event types (docs/events.md).
CHECKIN_RECORDED = "sampling.checkin.recorded"
CHECKIN_WITHDRAWN = "sampling.checkin.withdrawn"
TUBE_OPENED = "sampling.tube.opened"
MEMBER_ADDED = "sampling.tube.member_added"
MEMBER_REMOVED = "sampling.tube.member_removed"
TUBE_SEALED = "sampling.tube.sealed"
TUBE_VOIDED = "sampling.tube.voided"
BOX_DISPATCHED = "sampling.box.dispatched"
ALERT_RAISED = outbox.ALERT_RAISED

MAX_TEXT = 200


class TubeMode(StrEnum):
    POOL = "pool"
    SINGLE = "single"


class Verifier(Protocol):
    """``kiosk_ui.core.codes.CodeVerifier``: text in, verdict out, at a given time."""

    def verify(self, text: str, now: float) -> Any: ...


Event = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Joined:
    """A waiting resident who joined a tube when it got room."""

    resident: str
    tube: str
    position: int
    lane: str


class CheckinResult(NamedTuple):
    """The outcome of one check-in, after it is committed.

    ``waiting`` is true when the resident goes to the queue (amber): decision ``pool`` (or
    ``single``) but no open tube with room; ``queue_place`` is then the 1-based place.
    ``repeated`` is true when the resident was already waiting and showed the code again:
    nothing new was written (``events`` is empty) and the result repeats their place.
    """

    checkin_id: int | None
    resident: str | None
    name: str | None
    color: str | None
    decision: Decision
    lane: Lane
    reason: str | None
    temperature_c: float | None
    tube: str | None
    position: int | None
    capacity: int | None
    waiting: bool
    queue_place: int | None
    repeated: bool
    alert: str | None
    events: tuple[Event, ...]


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


@dataclass(frozen=True, slots=True)
class Counters:
    """Today's figures (the station's local calendar day) for the sampler panel."""

    day: str
    checkins: int
    by_decision: dict[str, int]
    by_lane: dict[str, int]
    waiting_pool: int
    waiting_single: int
    open_pool_members: int | None
    tubes_sealed: int
    tubes_voided: int
    residents_sealed: int
    boxes_dispatched: int
    outbox_pending: int


@dataclass(frozen=True, slots=True)
class _ManualClaims:
    sub: str
    color: str
    name: str | None
    cat: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _ManualVerdict:
    claims: _ManualClaims
    valid: bool = True
    reason: str | None = None


@dataclass
class _Tx:
    events: list[Event] = field(default_factory=list)
    joined: list[Joined] = field(default_factory=list)
    # The seq of the newest event, once known in this transaction (the write lock is held,
    # so events are numbered on from it without reading it again).
    last_seq: int | None = None
    # Outbox rows of events made but not yet stored, when they are stored together at the
    # end of the transaction's work (one statement for all); None: each as it is made.
    unstored: list[tuple[Any, ...]] | None = None


def mask_name(name: str | None) -> str | None:
    """The name as stored and shown (``codes.mask_name``); None when the code has none."""
    return codes.mask_name(name) if name else None


class Station:
    """The station's state and its one write path. Thread-safe: calls are serialised.

    Build it with ``Station.open(config, verifier)``; close it (or use ``with``) at the end.
    """

    def __init__(
        self,
        config: StationConfig,
        db: sqlite_utils.Database,
        verifier: Verifier | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.source = config.source
        self.db = db
        self.verifier = verifier
        self.clock = clock
        self.kinds = BarcodeKinds.from_patterns(
            config.sampling.tube_pattern, config.sampling.box_pattern
        )
        self._lock = threading.RLock()
        self._cached_thresholds: tuple[str, Thresholds] | None = None
        # The last day whose first check-in is known committed in ``checkin_days``.
        self._day_noted: str | None = None

    # -- life -----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        config: StationConfig,
        verifier: Verifier | None = None,
        clock: Callable[[], float] = time.time,
    ) -> Station:
        """Open (creating and migrating if needed) the station database of ``config``."""
        db = open_db(config.storage.path)
        try:
            store.install(db)
        except BaseException:
            db.conn.close()
            raise
        return cls(config, db, verifier, clock)

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()

    def __enter__(self) -> Station:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- rules in force -------------------------------------------------------------------

    def thresholds(self) -> Thresholds:
        """The sampling settings in force now: the file, overridden by gateway commands."""
        with self._lock:
            return self._thresholds(self.db.conn)

    def _thresholds(self, conn: Any) -> Thresholds:
        return self._thresholds_for(str(conn.execute(store.SETTINGS_ROWS).fetchone()[0]))

    def _thresholds_for(self, settings: str) -> Thresholds:
        """Thresholds for the ``settings_override`` rows ``settings`` (``store.SETTINGS_ROWS``).

        The rows are decoded and validated only when they changed since the last call.
        """
        cached = self._cached_thresholds
        if cached is not None and cached[0] == settings:
            return cached[1]
        overrides = {str(k): json.loads(v) for k, v in json.loads(settings)}
        try:
            t = Thresholds.from_settings(self.config.sampling, overrides)
        except ValidationError as exc:
            log.error("ignoring inconsistent settings overrides %s: %s", overrides, exc)
            t = Thresholds.from_settings(self.config.sampling)
        self._cached_thresholds = (settings, t)
        return t

    def classify(self, text: str) -> ScanKind:
        """What a text is: a tube or box barcode, a resident code, or unknown."""
        return self.kinds.classify(text)

    def verify(self, text: str) -> Any:
        """Verify a text the camera read, at the station's clock.

        A tube or box barcode held up to the camera raises RuleViolation
        (``tube_barcode_on_camera`` / ``box_barcode_on_camera``) instead of becoming a
        rejected check-in: it is a sampler's slip, not a resident.
        """
        kind = self.classify(text)
        if kind in (ScanKind.TUBE, ScanKind.BOX):
            raise barcodes.tube_on_camera(kind)
        if self.verifier is None:
            raise StationError("this station was opened without a code verifier")
        return self.verifier.verify(text, self.clock())

    def needs_temperature(self, verdict: VerdictLike) -> bool:
        """Whether to measure: not for rejected or red codes (decided without it)."""
        return rules.needs_temperature(verdict)

    def assess(self, readings: Sequence[float]) -> TemperatureAssessment:
        """The readings so far under the thresholds in force: take another, or done."""
        return rules.assess_temperature(readings, self.thresholds())

    # -- check-in -------------------------------------------------------------------------

    def check_in(self, verdict: VerdictLike, readings: Sequence[float] = ()) -> CheckinResult:
        """Decide and record one resident's check-in; joins or queues them for a tube.

        ``readings`` are the thermometer's readings so far (offset applied). They are not
        needed (and ignored) when ``needs_temperature(verdict)`` is false; otherwise too few
        raise RuleViolation ``temperature_needed`` and nothing is written.
        """
        return self._check_in(verdict, readings, via="code", staff=None)

    def check_in_manual(
        self,
        sub: str,
        color: str,
        *,
        staff: str,
        readings: Sequence[float] = (),
        name: str | None = None,
        cat: Sequence[str] = (),
    ) -> CheckinResult:
        """Check in a resident whom staff identified by hand (no code to scan).

        ``sub`` is the resident's pseudonymous id (e.g. derived from an ID number with the
        station's key); ``color`` is what staff read from the authority's system.
        """
        sub = sub.strip()
        if not 1 <= len(sub) <= 64:
            raise RuleViolation(
                "bad_resident_id",
                "The resident id must have 1 to 64 characters.",
                "居民编号须为1至64个字符。",
            )
        if color not in ("green", "yellow", "red"):
            raise RuleViolation(
                "bad_color",
                "The health code colour must be green, yellow or red.",
                "健康码颜色须为绿、黄或红。",
            )
        bad = [c for c in cat if c not in ("elderly", "child", "pregnant", "disabled")]
        if bad:
            raise RuleViolation(
                "bad_category",
                f"Unknown priority group {bad[0]!r}.",
                f"未知的优先人群 {bad[0]!r}。",
            )
        verdict = _ManualVerdict(_ManualClaims(sub, color, name, tuple(cat)))
        return self._check_in(verdict, readings, via="manual", staff=_text(staff, "staff"))

    def _check_in(
        self, verdict: VerdictLike, readings: Sequence[float], via: str, staff: str | None
    ) -> CheckinResult:
        claims = verdict.claims if verdict.valid else None
        sub = claims.sub if claims is not None else None
        # The queue a pooled or single-sample decision would use: the decision table gives
        # ``pool`` only to green codes and ``single`` only to yellow ones.
        likely = _LIKELY_MODE.get(str(claims.color)) if claims is not None else None
        with self._lock:
            now = self.clock()
            with write_transaction(self.db) as conn:
                facts = store.checkin_facts(conn, sub, likely)
                t = self._thresholds_for(facts.settings)
                assessment: TemperatureAssessment | None = None
                if rules.needs_temperature(verdict):
                    assessment = rules.assess_temperature(readings, t)
                sampled = (
                    sub is not None
                    and assessment is not None
                    and facts.sampled_since(now - t.resample_window_s)
                )
                outcome = rules.decide(verdict, assessment, sampled)
                mode = _queue_mode(outcome)
                earlier = (
                    store.waiting_entry(conn, sub)
                    if sub is not None and facts.waiting_mode is not None
                    else None
                )
                if earlier is not None and mode is not None and earlier.mode == mode:
                    return self._repeat(earlier, outcome, claims, assessment)
                if earlier is not None:
                    store.dequeue(conn, earlier.resident)
                    self._note_queue(conn)
                room: store.Room | None = None
                if mode is not None and sub is not None:
                    room = facts.room if mode == likely else store.room(conn, mode)
                day = store.local_day(now)
                result = self._record(
                    conn,
                    now=now,
                    day=day,
                    verdict=verdict,
                    outcome=outcome,
                    assessment=assessment,
                    room=room,
                    via=via,
                    staff=staff,
                    last_seq=facts.last_seq,
                )
            self._day_noted = day  # committed
            return result

    def _repeat(
        self,
        w: Waiting,
        outcome: Outcome,
        claims: Any,
        assessment: TemperatureAssessment | None,
    ) -> CheckinResult:
        return CheckinResult(
            checkin_id=w.checkin,
            resident=w.resident,
            name=mask_name(claims.name),
            color=str(claims.color),
            decision=outcome.decision,
            lane=Lane(w.lane),
            reason=None,
            temperature_c=assessment.temperature_c if assessment else None,
            tube=None,
            position=None,
            capacity=None,
            waiting=True,
            queue_place=w.place,
            repeated=True,
            alert=None,
            events=(),
        )

    def _record(
        self,
        conn: Any,
        *,
        now: float,
        day: str,
        verdict: VerdictLike,
        outcome: Outcome,
        assessment: TemperatureAssessment | None,
        room: store.Room | None,
        via: str,
        staff: str | None,
        last_seq: int,
    ) -> CheckinResult:
        """Write the check-in; ``room`` is the open tube of its queue with room, if any.

        ``last_seq`` is the newest event's seq, read with the check-in's facts.
        """
        claims = verdict.claims if verdict.valid else None
        sub = claims.sub if claims is not None else None
        color = str(claims.color) if claims is not None else None
        cat = [str(c) for c in claims.cat] if claims is not None else []
        name = mask_name(claims.name) if claims is not None else None
        temp = assessment.temperature_c if assessment is not None else None
        used = list(assessment.readings[: assessment.used]) if assessment is not None else []
        mode = _queue_mode(outcome)
        position = room.members + 1 if room is not None else None
        waits = mode is not None and sub is not None and room is None
        pooled = outcome.decision is Decision.POOL
        data: dict[str, Any] = {
            "resident": sub,
            "color": color,
            "temperature_c": temp,
            "decision": outcome.decision.value,
            "reason": outcome.reason,
            "lane": outcome.lane.value,
            # The contract: tube and position only for pooled residents; a single-sample
            # binding is told by its sampling.tube.member_added.
            "tube": room.tube if room is not None and pooled else None,
            "position": position if pooled else None,
            "waiting": waits,
            "cat": cat,
            "readings": used,
            "via": via,
        }
        if staff is not None:
            data["staff"] = staff
        unstored: list[tuple[Any, ...]] = []
        tx = _Tx(last_seq=last_seq, unstored=unstored)
        first = self._emit(conn, tx, CHECKIN_RECORDED, data, now)
        checkin_id = store.insert_checkin(
            conn,
            day=day,
            at=now,
            via=via,
            resident=sub,
            name=name,
            color=color,
            cat=cat,
            readings=used,
            temperature_c=temp,
            decision=outcome.decision.value,
            lane=outcome.lane.value,
            reason=outcome.reason,
            staff=staff,
            event_seq=first["seq"],
        )
        if day != self._day_noted:
            store.note_day(conn, day, checkin_id)
        place: int | None = None
        if room is not None and sub is not None:
            store.add_member(conn, room.tube, sub, checkin_id, now, position=position)
            self._emit(
                conn,
                tx,
                MEMBER_ADDED,
                {"tube": room.tube, "resident": sub, "position": position},
                now,
            )
        elif waits and mode is not None and sub is not None:
            place = store.enqueue(
                conn, mode, resident=sub, checkin=checkin_id, lane=outcome.lane.value, at=now
            )
            self._note_queue(conn)
        alert = outcome.alert_kind
        if alert is not None:
            detail = (
                "health code is red"
                if alert == rules.RED_CODE
                else f"temperature {temp:.1f} C at or above the fever threshold twice"
            )
            self._emit(
                conn,
                tx,
                ALERT_RAISED,
                {
                    "kind": alert,
                    "resident": sub,
                    "detail": detail,
                    "temperature_c": temp,
                    "lane": outcome.lane.value,
                },
                now,
            )
        outbox.insert_rows(conn, unstored)
        return CheckinResult(
            checkin_id=checkin_id,
            resident=sub,
            name=name,
            color=color,
            decision=outcome.decision,
            lane=outcome.lane,
            reason=outcome.reason,
            temperature_c=temp,
            tube=room.tube if room is not None else None,
            position=position,
            capacity=room.capacity if room is not None else None,
            waiting=waits,
            queue_place=place,
            repeated=False,
            alert=alert,
            events=tuple(tx.events),
        )

    # -- tubes ----------------------------------------------------------------------------

    def scan(self, text: str, sampler: str, mode: TubeMode | str = TubeMode.POOL) -> ScanResult:
        """The sampler's scanner read ``text``.

        A tube barcode opens a tube (pooled, or single-sample when ``mode`` is ``single``)
        and the waiting residents join it in order. A box barcode selects a box: nothing is
        written, the result lists the sealed tubes a ``dispatch`` would take. A resident
        code, an unknown text, a barcode already used, or a tube while one of the same mode
        is still open raise RuleViolation.
        """
        mode = TubeMode(mode)
        sampler = _text(sampler, "sampler")
        code = barcodes.clean(text)
        kind = self.classify(code)
        if kind is ScanKind.RESIDENT_CODE:
            raise barcodes.resident_code_on_scanner()
        if kind is ScanKind.UNKNOWN:
            raise barcodes.unknown_barcode(code)
        with self._lock:
            if kind is ScanKind.BOX:
                conn = self.db.conn
                if store.box_used(conn, code):
                    raise _box_used(code)
                ready = tuple(t.tube for t in store.tubes_in_state(conn, "sealed"))
                return ScanResult(kind, code, box=code, ready=ready)
            now = self.clock()
            with write_transaction(self.db) as conn:
                existing = store.get_tube(conn, code)
                if existing is not None:
                    raise _tube_used(existing)
                current = store.open_tube(conn, mode.value)
                if current is not None:
                    raise _tube_still_open(current)
                capacity = self._thresholds(conn).pool_size if mode is TubeMode.POOL else 1
                store.insert_tube(
                    conn, code, mode=mode.value, capacity=capacity, sampler=sampler, at=now
                )
                tx = _Tx()
                self._emit(
                    conn,
                    tx,
                    TUBE_OPENED,
                    {"tube": code, "mode": mode.value, "capacity": capacity, "sampler": sampler},
                    now,
                )
                self._fill(conn, tx, mode.value, now)
                self._note_queue(conn)
                tube = store.get_tube(conn, code)
        assert tube is not None
        return ScanResult(kind, code, tube, tuple(tx.joined), events=tuple(tx.events))

    def seal(self, sampler: str, tube: str | None = None) -> TubeResult:
        """Seal the open pooled tube (or ``tube``), full or not: its group never changes."""
        sampler = _text(sampler, "sampler")
        with self._lock:
            now = self.clock()
            with write_transaction(self.db) as conn:
                current = self._target(conn, tube)
                if current.count == 0:
                    raise RuleViolation(
                        "tube_empty",
                        f"Tube {current.tube} has nobody in it. Void it instead of sealing.",
                        f"试管 {current.tube} 中还没有人。请作废而不是封管。",
                    )
                conn.execute(
                    "UPDATE tubes SET state = 'sealed', closed_at = ?, closed_day = ?, "
                    "closed_by = ? WHERE tube = ?",
                    (now, store.local_day(now), sampler, current.tube),
                )
                tx = _Tx()
                self._emit(
                    conn,
                    tx,
                    TUBE_SEALED,
                    {
                        "tube": current.tube,
                        "mode": current.mode,
                        "members": list(current.members),
                        "sampler": sampler,
                        "capacity": current.capacity,
                    },
                    now,
                )
                after = store.get_tube(conn, current.tube)
        assert after is not None
        return TubeResult(after, events=tuple(tx.events))

    def void(self, reason: str, sampler: str, tube: str | None = None) -> TubeResult:
        """Void the open pooled tube (or ``tube``, open or sealed, not yet dispatched).

        Its members are free to check in again: the already-sampled block lifts.
        """
        reason = _text(reason, "reason")
        sampler = _text(sampler, "sampler")
        with self._lock:
            now = self.clock()
            with write_transaction(self.db) as conn:
                if tube is None:
                    current = self._target(conn, None)
                else:
                    found = store.get_tube(conn, barcodes.clean(tube))
                    if found is None:
                        raise _no_such_tube(tube)
                    if found.state not in ("open", "sealed"):
                        raise RuleViolation(
                            f"tube_{found.state}",
                            f"Tube {found.tube} is {found.state}; it can no longer be voided.",
                            f"试管 {found.tube} 已{_STATE_ZH[found.state]}，不能再作废。",
                        )
                    current = found
                conn.execute(
                    "UPDATE tubes SET state = 'voided', closed_at = ?, closed_day = ?, "
                    "closed_by = ?, void_reason = ? WHERE tube = ?",
                    (now, store.local_day(now), sampler, reason, current.tube),
                )
                tx = _Tx()
                self._emit(
                    conn,
                    tx,
                    TUBE_VOIDED,
                    {
                        "tube": current.tube,
                        "members": list(current.members),
                        "reason": reason,
                        "sampler": sampler,
                        "mode": current.mode,
                        "was": current.state,
                    },
                    now,
                )
                after = store.get_tube(conn, current.tube)
        assert after is not None
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
        reason = _text(reason, "reason")
        sampler = _text(sampler, "sampler")
        with self._lock:
            now = self.clock()
            with write_transaction(self.db) as conn:
                tx = _Tx()
                candidates = (
                    [store.get_tube(conn, barcodes.clean(tube))]
                    if tube is not None
                    else [store.open_tube(conn, m.value) for m in TubeMode]
                )
                holding = next(
                    (c for c in candidates if c is not None and resident in c.members), None
                )
                if holding is not None and holding.state != "open":
                    raise _sealed(holding)
                if holding is None:
                    w = store.waiting_entry(conn, resident)
                    if w is None:
                        raise self._not_in_tube(conn, resident)
                    store.dequeue(conn, resident)
                    self._note_queue(conn)
                    self._emit(
                        conn,
                        tx,
                        CHECKIN_WITHDRAWN,
                        {
                            "resident": resident,
                            "mode": w.mode,
                            "reason": reason,
                            "sampler": sampler,
                        },
                        now,
                    )
                    return None
                old = store.remove_member(conn, holding.tube, resident, reason, now)
                rest = store.members(conn, holding.tube)
                self._emit(
                    conn,
                    tx,
                    MEMBER_REMOVED,
                    {
                        "tube": holding.tube,
                        "resident": resident,
                        "reason": reason,
                        "sampler": sampler,
                        "position": old,
                        "members": list(rest),
                    },
                    now,
                )
                self._fill(conn, tx, holding.mode, now)
                self._note_queue(conn)
                after = store.get_tube(conn, holding.tube)
        assert after is not None
        return TubeResult(after, tuple(tx.joined), tuple(tx.events))

    def dispatch(
        self, box: str, sampler: str, tubes: Sequence[str] | None = None
    ) -> DispatchResult:
        """Put sealed tubes (all of them when ``tubes`` is None) in ``box`` and send it."""
        sampler = _text(sampler, "sampler")
        code = barcodes.clean(box)
        kind = self.classify(code)
        if kind is ScanKind.RESIDENT_CODE:
            raise barcodes.resident_code_on_scanner()
        if kind is not ScanKind.BOX:
            raise RuleViolation(
                "not_a_box",
                f"{barcodes.short(code)!r} is not a box barcode. Scan the label on the box.",
                f"{barcodes.short(code)!r} 不是转运箱条码。请扫描箱子上的标签。",
            )
        with self._lock:
            now = self.clock()
            with write_transaction(self.db) as conn:
                if store.box_used(conn, code):
                    raise _box_used(code)
                if tubes is None:
                    chosen = [t.tube for t in store.tubes_in_state(conn, "sealed")]
                else:
                    chosen = []
                    for name in tubes:
                        t = store.get_tube(conn, barcodes.clean(name))
                        if t is None:
                            raise _no_such_tube(name)
                        if t.state != "sealed":
                            raise RuleViolation(
                                f"tube_{t.state}",
                                f"Tube {t.tube} is {t.state}; only sealed tubes go in a box.",
                                f"试管 {t.tube} {_STATE_ZH[t.state]}；只有已封管的试管才能装箱。",
                            )
                        if t.tube not in chosen:
                            chosen.append(t.tube)
                if not chosen:
                    raise RuleViolation(
                        "nothing_to_dispatch",
                        "There is no sealed tube to put in the box.",
                        "没有已封管的试管可装箱。",
                    )
                conn.execute(
                    "INSERT INTO boxes(box, dispatched_at, day, sampler) VALUES (?, ?, ?, ?)",
                    (code, now, store.local_day(now), sampler),
                )
                conn.executemany(
                    "UPDATE tubes SET state = 'dispatched', box = ?, dispatched_at = ? "
                    "WHERE tube = ?",
                    [(code, now, t) for t in chosen],
                )
                tx = _Tx()
                self._emit(
                    conn,
                    tx,
                    BOX_DISPATCHED,
                    {"box": code, "tubes": chosen, "sampler": sampler},
                    now,
                )
        return DispatchResult(code, tuple(chosen), tuple(tx.events))

    # -- read models ----------------------------------------------------------------------

    def open_tube(self, mode: TubeMode | str = TubeMode.POOL) -> Tube | None:
        with self._lock:
            return store.open_tube(self.db.conn, TubeMode(mode).value)

    def tube(self, tube: str) -> Tube | None:
        with self._lock:
            return store.get_tube(self.db.conn, barcodes.clean(tube))

    def sealed_tubes(self) -> list[Tube]:
        """Sealed tubes not yet dispatched, oldest seal first."""
        with self._lock:
            return store.tubes_in_state(self.db.conn, "sealed")

    def waiting(self, mode: TubeMode | str = TubeMode.POOL) -> list[Waiting]:
        """Residents waiting for a tube of ``mode``, in the order they join."""
        with self._lock:
            return store.waiting_list(self.db.conn, TubeMode(mode).value)

    def counters(self) -> Counters:
        with self._lock:
            conn = self.db.conn
            day = store.local_day(self.clock())
            by_decision = store.counts_by(
                conn, f"SELECT decision, count(*) {store.DAY_CHECKINS} GROUP BY 1", [day]
            )
            by_lane = store.counts_by(
                conn, f"SELECT lane, count(*) {store.DAY_CHECKINS} GROUP BY 1", [day]
            )
            closed = store.counts_by(
                conn,
                "SELECT CASE WHEN state = 'voided' THEN 'voided' ELSE 'sealed' END, count(*) "
                "FROM tubes WHERE closed_day = ? GROUP BY 1",
                [day],
            )
            residents = int(
                conn.execute(
                    "SELECT count(*) FROM tube_members m JOIN tubes t ON t.tube = m.tube "
                    "WHERE t.closed_day = ? AND t.state IN ('sealed', 'dispatched') "
                    "AND m.position IS NOT NULL",
                    (day,),
                ).fetchone()[0]
            )
            boxes = int(
                conn.execute("SELECT count(*) FROM boxes WHERE day = ?", (day,)).fetchone()[0]
            )
            pending = outbox.undelivered_count(conn)
            open_ = store.open_tube(conn, "pool")
            return Counters(
                day=day,
                checkins=sum(by_decision.values()),
                by_decision=by_decision,
                by_lane=by_lane,
                waiting_pool=len(store.waiting_list(conn, "pool")),
                waiting_single=len(store.waiting_list(conn, "single")),
                open_pool_members=open_.count if open_ else None,
                tubes_sealed=closed.get("sealed", 0),
                tubes_voided=closed.get("voided", 0),
                residents_sealed=residents,
                boxes_dispatched=boxes,
                outbox_pending=pending,
            )

    # -- standing alerts (faults that last) -----------------------------------------------

    def raise_alert(self, kind: str, detail: str, *, device: str | None = None) -> Event | None:
        """Tell the gateway about a fault that lasts (e.g. ``sensor_fault`` of ``device``
        ``thermometer``), once until it is cleared; returns the event, or None when the
        alert already stands."""
        return self._standing(kind, True, detail, device)

    def clear_alert(self, kind: str, detail: str, *, device: str | None = None) -> Event | None:
        """The fault is over: ``sampling.alert.cleared``, or None when nothing stood."""
        return self._standing(kind, False, detail, device)

    def _standing(self, kind: str, stands: bool, detail: str, device: str | None) -> Event | None:
        with self._lock, write_transaction(self.db) as conn:
            return outbox.standing_alert(
                conn,
                source=self.source,
                kind=_alert_kind(kind),
                stands=stands,
                detail=_detail(detail, kind),
                device=device,
                at=self.clock(),
            )

    def standing_alerts(self) -> dict[str, Any]:
        """Alerts that stand now, by ``agent_state`` key without ``alert.``."""
        with self._lock:
            rows = self.db.conn.execute(
                "SELECT key, value FROM agent_state WHERE key LIKE 'alert.%'"
            ).fetchall()
        found = {str(k).removeprefix("alert."): json.loads(v) for k, v in rows}
        return {k: v for k, v in found.items() if v is not None}

    # -- internals ------------------------------------------------------------------------

    def _emit(self, conn: Any, tx: _Tx, type_: str, data: dict[str, Any], at: float) -> Event:
        if tx.last_seq is None:
            tx.last_seq = int(conn.execute(outbox.LAST_SEQ).fetchone()[0])
        tx.last_seq += 1
        event, row = outbox.make_event(
            source=self.source, type=type_, data=data, at=at, seq=tx.last_seq
        )
        if tx.unstored is None:
            outbox.insert_rows(conn, [row])
        else:
            tx.unstored.append(row)
        tx.events.append(event)
        return event

    def _note_queue(self, conn: Any) -> None:
        """Tell the edge agent how many residents wait (it reports it as telemetry)."""
        n = int(conn.execute("SELECT count(*) FROM waiting").fetchone()[0])
        outbox.set_state(conn, outbox.KIOSK_QUEUE_KEY, n)

    def _fill(self, conn: Any, tx: _Tx, mode: str, now: float) -> None:
        """Waiting residents join the open tube of ``mode`` in order while it has room."""
        current = store.open_tube(conn, mode)
        if current is None:
            return
        room = current.capacity - current.count
        for w in store.waiting_list(conn, mode)[: max(room, 0)]:
            store.dequeue(conn, w.resident)
            pos = store.add_member(conn, current.tube, w.resident, w.checkin, now)
            tx.joined.append(Joined(w.resident, current.tube, pos, w.lane))
            self._emit(
                conn,
                tx,
                MEMBER_ADDED,
                {
                    "tube": current.tube,
                    "resident": w.resident,
                    "position": pos,
                    "from_queue": True,
                    "checkin_seq": int(
                        conn.execute(
                            "SELECT event_seq FROM checkins WHERE id = ?", (w.checkin,)
                        ).fetchone()[0]
                    ),
                },
                now,
            )

    def _target(self, conn: Any, tube: str | None) -> Tube:
        if tube is None:
            current = store.open_tube(conn, "pool")
            if current is None:
                raise RuleViolation(
                    "no_open_tube",
                    "No tube is open. Scan a tube barcode first.",
                    "当前没有打开的试管。请先扫描试管条码。",
                )
            return current
        found = store.get_tube(conn, barcodes.clean(tube))
        if found is None:
            raise _no_such_tube(tube)
        if found.state != "open":
            raise _sealed(found) if found.state == "sealed" else _closed(found)
        return found

    def _not_in_tube(self, conn: Any, resident: str) -> RuleViolation:
        row = conn.execute(
            "SELECT t.tube, t.state FROM tube_members m JOIN tubes t ON t.tube = m.tube "
            "WHERE m.resident = ? AND m.position IS NOT NULL ORDER BY m.added_at DESC LIMIT 1",
            (resident,),
        ).fetchone()
        if row is not None and row[1] == "sealed":
            found = store.get_tube(conn, str(row[0]))
            assert found is not None
            return _sealed(found)
        return RuleViolation(
            "not_in_open_tube",
            "That resident is neither in the open tube nor waiting.",
            "该居民既不在当前试管中，也不在等候队列中。",
        )


_WHAT_ZH = {"sampler": "采样员", "reason": "原因", "staff": "工作人员"}
_STATE_ZH = {"open": "打开", "sealed": "封管", "voided": "作废", "dispatched": "装箱送出"}


_LIKELY_MODE = {"green": "pool", "yellow": "single"}


def _queue_mode(outcome: Outcome) -> str | None:
    if outcome.decision is Decision.POOL:
        return "pool"
    if outcome.decision is Decision.SINGLE:
        return "single"
    return None


def _alert_kind(kind: str) -> str:
    if not _ALERT_KIND.fullmatch(kind):
        raise ValueError(f"alert kind {kind!r}: lower-case letters, digits and _ only")
    return kind


_ALERT_KIND = re.compile(r"[a-z][a-z0-9_]{0,63}")


def _detail(text: str, kind: str) -> str:
    """A fault's own words, one line, not too long for a gateway's list; never empty."""
    line = " ".join(str(text).split())
    return (line[:197] + "...") if len(line) > 200 else (line or kind)


def _text(value: str, what: str) -> str:
    v = value.strip() if isinstance(value, str) else ""
    if not v or len(v) > MAX_TEXT:
        raise RuleViolation(
            f"bad_{what}",
            f"A {what} of 1 to {MAX_TEXT} characters is needed.",
            f"需要填写{_WHAT_ZH.get(what, what)}（1至{MAX_TEXT}个字符）。",
        )
    return v


def _tube_used(t: Tube) -> RuleViolation:
    return RuleViolation(
        "tube_already_used",
        f"Tube {t.tube} was already used on this station ({t.state}). Take a new tube.",
        f"试管 {t.tube} 已在本站使用过（{_STATE_ZH[t.state]}）。请换一支新试管。",
    )


def _tube_still_open(t: Tube) -> RuleViolation:
    if t.full:
        return RuleViolation(
            "tube_full",
            f"Tube {t.tube} is full ({t.count}/{t.capacity}). Seal it by touch first.",
            f"试管 {t.tube} 已满（{t.count}/{t.capacity}）。请先点击封管。",
        )
    return RuleViolation(
        "tube_still_open",
        f"Tube {t.tube} is still open ({t.count}/{t.capacity}). Seal or void it first.",
        f"试管 {t.tube} 仍未封管（{t.count}/{t.capacity}）。请先封管或作废。",
    )


def _sealed(t: Tube) -> RuleViolation:
    return RuleViolation(
        "tube_sealed",
        f"Tube {t.tube} is sealed; its group can no longer change. Void the tube if needed.",
        f"试管 {t.tube} 已封管，成员不能再更改。如有需要请作废该试管。",
    )


def _closed(t: Tube) -> RuleViolation:
    return RuleViolation(
        f"tube_{t.state}",
        f"Tube {t.tube} is {t.state}.",
        f"试管 {t.tube} 已{_STATE_ZH[t.state]}。",
    )


def _no_such_tube(tube: str) -> RuleViolation:
    return RuleViolation(
        "unknown_tube",
        f"Tube {barcodes.short(tube)!r} is not known on this station.",
        f"本站没有试管 {barcodes.short(tube)!r}。",
    )


def _box_used(box: str) -> RuleViolation:
    return RuleViolation(
        "box_already_used",
        f"Box {box} was already dispatched from this station. Take a new box.",
        f"转运箱 {box} 已从本站送出。请换一个新箱子。",
    )
