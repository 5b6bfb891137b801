"""What the station shows without changing anything: tubes, queues, today's figures, alerts.

Read only: every method reads under the station's lock (``Ledger.read``), so it never sees a
write half-done, and a database that fails raises ``StorageError`` like a failed write.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge_agent import outbox
from edge_agent.events import EventType
from kiosk_ui.core import barcodes, reports, store
from kiosk_ui.core.ledger import Ledger
from kiosk_ui.core.rules import TubeMode
from kiosk_ui.core.store import Tube, Waiting


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


class StationViews:
    """The station's read models."""

    def __init__(self, ledger: Ledger, clock: Callable[[], float]) -> None:
        self.ledger = ledger
        self.clock = clock

    def open_tube(self, mode: TubeMode | str = TubeMode.POOL) -> Tube | None:
        with self.ledger.read() as conn:
            return store.open_tube(conn, TubeMode(mode))

    def tube(self, tube: str) -> Tube | None:
        with self.ledger.read() as conn:
            return store.get_tube(conn, barcodes.clean(tube))

    def sealed_tubes(self) -> list[Tube]:
        """Sealed tubes not yet dispatched, oldest seal first."""
        with self.ledger.read() as conn:
            return store.tubes_in_state(conn, "sealed")

    def waiting(self, mode: TubeMode | str = TubeMode.POOL) -> list[Waiting]:
        """Residents waiting for a tube of ``mode``, in the order they join."""
        with self.ledger.read() as conn:
            return store.waiting_list(conn, TubeMode(mode))

    def counters(self) -> Counters:
        with self.ledger.read() as conn:
            day = store.local_day(self.clock())
            counts = reports.day_counts(conn, day)
            open_ = store.open_tube(conn, TubeMode.POOL)
            return Counters(
                day=day,
                checkins=sum(counts.by_decision.values()),
                by_decision=counts.by_decision,
                by_lane=counts.by_lane,
                waiting_pool=len(store.waiting_list(conn, TubeMode.POOL)),
                waiting_single=len(store.waiting_list(conn, TubeMode.SINGLE)),
                open_pool_members=open_.count if open_ else None,
                tubes_sealed=counts.tubes_sealed,
                tubes_voided=counts.tubes_voided,
                residents_sealed=counts.residents_sealed,
                boxes_dispatched=counts.boxes_dispatched,
                outbox_pending=outbox.undelivered_count(conn),
            )

    def standing_alerts(self) -> dict[str, Any]:
        """Alerts that stand now, by ``agent_state`` key without ``alert.``."""
        with self.ledger.read():
            return outbox.standing_alerts(self.ledger.db)

    def member_names(self, members: Sequence[str]) -> list[str]:
        """The masked names of a tube's members as their check-ins recorded them."""
        with self.ledger.read() as conn:
            return reports.member_names(conn, members)

    def recent_alerts(self, limit: int = 3) -> list[tuple[str, str]]:
        """The station's latest alerts (kind, local time) from its own events."""
        with self.ledger.read() as conn:
            events = outbox.latest(conn, EventType.ALERT_RAISED, limit)
        out: list[tuple[str, str]] = []
        for event in events:
            at = datetime.fromisoformat(event["time"].replace("Z", "+00:00")).astimezone()
            out.append((str(event["data"].get("kind")), at.strftime("%H:%M")))
        return out
