"""The check-in desk: a resident's code (or staff's word) and temperature in, a decision out.

``CheckinDesk.check_in`` runs the decision table (``kiosk_ui.core.rules``) on the facts it
reads in its own write transaction and records the outcome with its events, all or nothing
(``kiosk_ui.core.ledger``): the check-in row and ``sampling.checkin.recorded``; the resident's
place in the open tube of their queue (``sampling.tube.member_added``) or in the queue itself
(amber); and ``sampling.alert.raised`` for a red code or a confirmed fever.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from pydantic import ValidationError

from edge_agent.events import EventType
from firmware.config import SamplingSection
from firmware.errors import StationError
from kiosk_ui.core import barcodes, codes, messages, rules, store
from kiosk_ui.core.barcodes import BarcodeKinds, ScanKind
from kiosk_ui.core.ledger import Event, Ledger, Tx
from kiosk_ui.core.rules import (
    ClaimsLike,
    Decision,
    Lane,
    Outcome,
    StatedClaims,
    StatedVerdict,
    TemperatureAssessment,
    Thresholds,
    TubeMode,
    VerdictLike,
)
from kiosk_ui.core.store import Room, Waiting

log = logging.getLogger(__name__)

CATEGORIES = ("elderly", "child", "pregnant", "disabled")


class Verifier(Protocol):
    """``kiosk_ui.core.codes.CodeVerifier``: text in, verdict out, at a given time."""

    def verify(self, text: str, now: float) -> VerdictLike: ...


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


class _Resident(NamedTuple):
    """Who checks in, as recorded: None throughout for a rejected code."""

    sub: str | None
    name: str | None  # masked
    color: str | None
    cat: list[str]

    @classmethod
    def of(cls, claims: ClaimsLike | None) -> _Resident:
        if claims is None:
            return cls(None, None, None, [])
        return cls(
            claims.sub, mask_name(claims.name), str(claims.color), [str(c) for c in claims.cat]
        )


class _Visit(NamedTuple):
    """One check-in being recorded: who, how, what was measured and decided, where to."""

    who: _Resident
    via: str
    staff: str | None
    temperature_c: float | None
    readings: list[float]
    outcome: Outcome
    mode: TubeMode | None
    room: Room | None  # the open tube of the resident's queue with room, if any
    position: int | None  # theirs in that tube
    waits: bool  # no room: they wait in the queue of ``mode``


def mask_name(name: str | None) -> str | None:
    """The name as stored and shown (``codes.mask_name``); None when the code has none."""
    return codes.mask_name(name) if name else None


class CheckinDesk:
    """Verifies codes, assesses readings and records check-ins (one at a time: the ledger's
    lock serialises them with every other write)."""

    def __init__(
        self,
        ledger: Ledger,
        sampling: SamplingSection,
        kinds: BarcodeKinds,
        verifier: Verifier | None = None,
    ) -> None:
        self.ledger = ledger
        self.sampling = sampling
        self.kinds = kinds
        self.verifier = verifier
        self._cached_thresholds: tuple[str, Thresholds] | None = None
        # The last day whose first check-in is known committed in ``checkin_days``.
        self._day_noted: str | None = None

    # -- rules in force -------------------------------------------------------------------

    def thresholds(self) -> Thresholds:
        """The sampling settings in force now: the file, overridden by gateway commands."""
        with self.ledger.read() as conn:
            return self.thresholds_in(conn)

    def thresholds_in(self, conn: sqlite3.Connection) -> Thresholds:
        """As ``thresholds``, read on ``conn`` inside a transaction the caller holds."""
        return self._thresholds_for(store.settings(conn))

    def _thresholds_for(self, settings: str) -> Thresholds:
        """Thresholds for the ``settings_override`` rows ``settings`` (``store.SETTINGS_ROWS``).

        The rows are decoded and validated only when they changed since the last call.
        """
        cached = self._cached_thresholds
        if cached is not None and cached[0] == settings:
            return cached[1]
        overrides = {str(k): json.loads(v) for k, v in json.loads(settings)}
        try:
            t = Thresholds.from_settings(self.sampling, overrides)
        except ValidationError as exc:
            log.error("ignoring inconsistent settings overrides %s: %s", overrides, exc)
            t = Thresholds.from_settings(self.sampling)
        self._cached_thresholds = (settings, t)
        return t

    def verify(self, text: str) -> VerdictLike:
        """Verify a text the camera read, at the station's clock.

        A tube or box barcode held up to the camera raises RuleViolation
        (``tube_barcode_on_camera`` / ``box_barcode_on_camera``) instead of becoming a
        rejected check-in: it is a sampler's slip, not a resident.
        """
        kind = self.kinds.classify(text)
        if kind in (ScanKind.TUBE, ScanKind.BOX):
            raise barcodes.tube_on_camera(kind)
        if self.verifier is None:
            raise StationError("this station was opened without a code verifier")
        return self.verifier.verify(text, self.ledger.clock())

    def assess(self, readings: Sequence[float]) -> TemperatureAssessment:
        """The readings so far under the thresholds in force: take another, or done."""
        return rules.assess_temperature(readings, self.thresholds())

    # -- check-in -------------------------------------------------------------------------

    def check_in(self, verdict: VerdictLike, readings: Sequence[float] = ()) -> CheckinResult:
        """Decide and record one resident's check-in; joins or queues them for a tube.

        ``readings`` are the thermometer's readings so far (offset applied). They are not
        needed (and ignored) when ``rules.needs_temperature(verdict)`` is false; otherwise
        too few raise RuleViolation ``temperature_needed`` and nothing is written.
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
            raise messages.violation(messages.BAD_RESIDENT_ID)
        if color not in tuple(rules.Color):
            raise messages.violation(messages.BAD_COLOR)
        bad = [c for c in cat if c not in CATEGORIES]
        if bad:
            raise messages.violation(messages.BAD_CATEGORY, group=bad[0])
        verdict = StatedVerdict(StatedClaims(sub, color, name, tuple(cat)))
        staff = messages.required_text(staff, "staff")
        return self._check_in(verdict, readings, via="manual", staff=staff)

    def _check_in(
        self, verdict: VerdictLike, readings: Sequence[float], via: str, staff: str | None
    ) -> CheckinResult:
        claims = verdict.claims if verdict.valid else None
        sub = claims.sub if claims is not None else None
        # The room of the tube a pooled or single decision would use, read with the facts.
        likely = rules.likely_mode(str(claims.color)) if claims is not None else None
        with self.ledger.write() as tx:
            facts = store.checkin_facts(tx.conn, sub, likely)
            tx.count_from(facts.last_seq)
            t = self._thresholds_for(facts.settings)
            assessment: TemperatureAssessment | None = None
            if rules.needs_temperature(verdict):
                assessment = rules.assess_temperature(readings, t)
            sampled = (
                sub is not None
                and assessment is not None
                and facts.sampled_since(tx.now - t.resample_window_s)
            )
            outcome = rules.decide(verdict, assessment, sampled, facts.recall)
            mode = rules.queue_mode(outcome.decision)
            earlier = (
                store.waiting_entry(tx.conn, sub)
                if sub is not None and facts.waiting_mode is not None
                else None
            )
            if earlier is not None and mode is not None and earlier.mode == mode:
                return _repeat(earlier, outcome, claims, assessment)
            if earlier is not None:
                store.dequeue(tx.conn, earlier.resident)
                store.note_queue(tx.conn)
            room: Room | None = None
            if mode is not None and sub is not None:
                room = facts.room if mode == likely else store.room(tx.conn, mode)
            visit = _Visit(
                who=_Resident.of(claims),
                via=via,
                staff=staff,
                temperature_c=assessment.temperature_c if assessment is not None else None,
                readings=list(assessment.readings[: assessment.used]) if assessment else [],
                outcome=outcome,
                mode=mode,
                room=room,
                position=room.members + 1 if room is not None else None,
                waits=mode is not None and sub is not None and room is None,
            )
            day = store.local_day(tx.now)
            result = self._record(tx, visit, day)
        self._day_noted = day  # committed
        return result

    def _record(self, tx: Tx, visit: _Visit, day: str) -> CheckinResult:
        """Write the check-in, its seat (tube or queue) and its alert, with their events."""
        who, outcome = visit.who, visit.outcome
        first = tx.emit(EventType.CHECKIN_RECORDED, _recorded(visit))
        checkin_id = store.insert_checkin(
            tx.conn,
            day=day,
            at=tx.now,
            via=visit.via,
            resident=who.sub,
            name=who.name,
            color=who.color,
            cat=who.cat,
            readings=visit.readings,
            temperature_c=visit.temperature_c,
            decision=outcome.decision.value,
            lane=outcome.lane.value,
            reason=outcome.reason,
            staff=visit.staff,
            event_seq=first["seq"],
        )
        if day != self._day_noted:
            store.note_day(tx.conn, day, checkin_id)
        place = _seat(tx, visit, checkin_id)
        if outcome.alert_kind is not None:
            tx.emit(EventType.ALERT_RAISED, _alert(visit, outcome.alert_kind))
        room = visit.room
        return CheckinResult(
            checkin_id=checkin_id,
            resident=who.sub,
            name=who.name,
            color=who.color,
            decision=outcome.decision,
            lane=outcome.lane,
            reason=outcome.reason,
            temperature_c=visit.temperature_c,
            tube=room.tube if room is not None else None,
            position=visit.position,
            capacity=room.capacity if room is not None else None,
            waiting=visit.waits,
            queue_place=place,
            repeated=False,
            alert=outcome.alert_kind,
            events=tuple(tx.events),
        )


def _recorded(visit: _Visit) -> dict[str, Any]:
    """The data of ``sampling.checkin.recorded``."""
    room, outcome = visit.room, visit.outcome
    pooled = outcome.decision is Decision.POOL
    data: dict[str, Any] = {
        "resident": visit.who.sub,
        "color": visit.who.color,
        "temperature_c": visit.temperature_c,
        "decision": outcome.decision.value,
        "reason": outcome.reason,
        "lane": outcome.lane.value,
        # The contract: tube and position only for pooled residents; a single-sample
        # binding is told by its sampling.tube.member_added.
        "tube": room.tube if room is not None and pooled else None,
        "position": visit.position if pooled else None,
        "waiting": visit.waits,
        "cat": visit.who.cat,
        "readings": visit.readings,
        "via": visit.via,
    }
    if visit.staff is not None:
        data["staff"] = visit.staff
    return data


def _seat(tx: Tx, visit: _Visit, checkin_id: int) -> int | None:
    """The resident joins the open tube with room, or waits; returns the queue place."""
    sub, room = visit.who.sub, visit.room
    if sub is None:
        return None
    if room is not None:
        store.add_member(tx.conn, room.tube, sub, checkin_id, tx.now, position=visit.position)
        tx.emit(
            EventType.MEMBER_ADDED,
            {"tube": room.tube, "resident": sub, "position": visit.position},
        )
        return None
    if visit.mode is None:
        return None
    lane = visit.outcome.lane.value
    place = store.enqueue(
        tx.conn, visit.mode, resident=sub, checkin=checkin_id, lane=lane, at=tx.now
    )
    store.note_queue(tx.conn)
    return place


def _alert(visit: _Visit, kind: str) -> dict[str, Any]:
    """The data of the ``sampling.alert.raised`` of a red code or a confirmed fever."""
    temp = visit.temperature_c
    detail = (
        "health code is red"
        if kind == rules.RED_CODE
        else f"temperature {temp:.1f} C at or above the fever threshold twice"
    )
    return {
        "kind": kind,
        "resident": visit.who.sub,
        "detail": detail,
        "temperature_c": temp,
        "lane": visit.outcome.lane.value,
    }


def _repeat(
    w: Waiting,
    outcome: Outcome,
    claims: ClaimsLike | None,
    assessment: TemperatureAssessment | None,
) -> CheckinResult:
    """A waiting resident showed the code again: their place, nothing written."""
    return CheckinResult(
        checkin_id=w.checkin,
        resident=w.resident,
        name=mask_name(claims.name) if claims is not None else None,
        color=str(claims.color) if claims is not None else None,
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
