"""The station: the one write path for check-ins and tubes, and its read models.

The kiosk screens, the drills, the CLI and the tests all go through ``Station``. Each method
that changes something runs the rules and writes the fact together with its events in ONE
transaction (``BEGIN IMMEDIATE`` ... ``COMMIT`` with ``synchronous=FULL``); it returns only
after the commit, so whatever the caller shows or lights up is already durable. A write that
cannot be made durable raises ``StorageError`` and leaves the file as it was; so does a read
that fails. A request a sampler or resident can fix (a used tube barcode, a health code on
the tube scanner, ...) raises ``RuleViolation`` with a ``code`` and a message in zh and en,
and writes nothing.

``Station`` is a façade over its desks, which share one ledger (``kiosk_ui.core.ledger``: the
database, its lock and clock):

- ``station.checkins`` (``kiosk_ui.core.checkins.CheckinDesk``): verify, assess, check in;
- ``station.tubes`` (``kiosk_ui.core.tubes.TubeDesk``): scan, seal, void, remove, dispatch;
- ``station.views`` (``kiosk_ui.core.views.StationViews``): tubes, queues, counters, alerts.

Its methods of the same names delegate to them, so callers need only the station.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from edge_agent import outbox
from edge_agent.db import Database, open_db
from firmware.config import StationConfig
from kiosk_ui.core import rules, schema
from kiosk_ui.core.barcodes import BarcodeKinds, ScanKind
from kiosk_ui.core.checkins import CheckinDesk, CheckinResult, Verifier
from kiosk_ui.core.ledger import Event, Ledger
from kiosk_ui.core.rules import TemperatureAssessment, Thresholds, TubeMode, VerdictLike
from kiosk_ui.core.store import Tube, Waiting
from kiosk_ui.core.tubes import DispatchResult, ScanResult, TubeDesk, TubeResult
from kiosk_ui.core.views import Counters, StationViews

__all__ = ["Station"]

_ALERT_KIND = re.compile(r"[a-z][a-z0-9_]{0,63}")


class Station:
    """The station's state and its one write path. Thread-safe: calls are serialised.

    Build it with ``Station.open(config, verifier)``; close it (or use ``with``) at the end.
    """

    def __init__(
        self,
        config: StationConfig,
        db: Database,
        verifier: Verifier | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.source = config.source
        self.db = db
        self.clock = clock
        self.ledger = Ledger(db, clock, config.source)
        self.ledger.load_floor()
        self.kinds = BarcodeKinds.from_patterns(
            config.sampling.tube_pattern, config.sampling.box_pattern
        )
        self.checkins = CheckinDesk(self.ledger, config.sampling, self.kinds, verifier)
        self.tubes = TubeDesk(self.ledger, self.kinds, self.checkins.thresholds_in)
        self.views = StationViews(self.ledger, self.ledger.now)

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
            schema.install(db)
        except BaseException:
            db.conn.close()
            raise
        return cls(config, db, verifier, clock)

    def close(self) -> None:
        self.ledger.close()

    def __enter__(self) -> Station:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- check-ins (CheckinDesk) ----------------------------------------------------------

    def thresholds(self) -> Thresholds:
        return self.checkins.thresholds()

    def classify(self, text: str) -> ScanKind:
        """What a text is: a tube or box barcode, a resident code, or unknown."""
        return self.kinds.classify(text)

    def verify(self, text: str) -> VerdictLike:
        return self.checkins.verify(text)

    def needs_temperature(self, verdict: VerdictLike) -> bool:
        """Whether to measure: not for rejected or red codes (decided without it)."""
        return rules.needs_temperature(verdict)

    def assess(self, readings: Sequence[float]) -> TemperatureAssessment:
        return self.checkins.assess(readings)

    def check_in(self, verdict: VerdictLike, readings: Sequence[float] = ()) -> CheckinResult:
        return self.checkins.check_in(verdict, readings)

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
        return self.checkins.check_in_manual(
            sub, color, staff=staff, readings=readings, name=name, cat=cat
        )

    # -- tubes (TubeDesk) -----------------------------------------------------------------

    def scan(self, text: str, sampler: str, mode: TubeMode | str = TubeMode.POOL) -> ScanResult:
        return self.tubes.scan(text, sampler, mode)

    def seal(self, sampler: str, tube: str | None = None) -> TubeResult:
        return self.tubes.seal(sampler, tube)

    def void(self, reason: str, sampler: str, tube: str | None = None) -> TubeResult:
        return self.tubes.void(reason, sampler, tube)

    def remove(
        self, resident: str, reason: str, sampler: str, tube: str | None = None
    ) -> TubeResult | None:
        return self.tubes.remove(resident, reason, sampler, tube)

    def dispatch(
        self, box: str, sampler: str, tubes: Sequence[str] | None = None
    ) -> DispatchResult:
        return self.tubes.dispatch(box, sampler, tubes)

    # -- read models (StationViews) -------------------------------------------------------

    def open_tube(self, mode: TubeMode | str = TubeMode.POOL) -> Tube | None:
        return self.views.open_tube(mode)

    def tube(self, tube: str) -> Tube | None:
        return self.views.tube(tube)

    def sealed_tubes(self) -> list[Tube]:
        return self.views.sealed_tubes()

    def waiting(self, mode: TubeMode | str = TubeMode.POOL) -> list[Waiting]:
        return self.views.waiting(mode)

    def counters(self) -> Counters:
        return self.views.counters()

    def standing_alerts(self) -> dict[str, Any]:
        return self.views.standing_alerts()

    def member_names(self, members: Sequence[str]) -> list[str]:
        return self.views.member_names(members)

    def recent_alerts(self, limit: int = 3) -> list[tuple[str, str]]:
        return self.views.recent_alerts(limit)

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
        if not _ALERT_KIND.fullmatch(kind):
            raise ValueError(f"alert kind {kind!r}: lower-case letters, digits and _ only")
        with self.ledger.write() as tx:
            return outbox.standing_alert(
                tx.conn,
                source=self.source,
                kind=kind,
                stands=stands,
                detail=_detail(detail, kind),
                device=device,
                at=tx.now,
            )


def _detail(text: str, kind: str) -> str:
    """A fault's own words, one line, not too long for a gateway's list; never empty."""
    line = " ".join(str(text).split())
    return (line[:197] + "...") if len(line) > 200 else (line or kind)
