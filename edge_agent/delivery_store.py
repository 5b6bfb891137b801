"""The outbox side of delivery: the rows the delivery core asks for, and the marks it decides.

``edge_agent.delivery`` decides and this module reads and writes the outbox for it. A mark
that cannot be written (a full disk) stays in the core: the events stay undelivered in the
file, so they may be sent again, never lost; the write is tried again after a backoff.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from edge_agent import outbox
from edge_agent.db import Database, write_transaction
from edge_agent.delivery import Delivery
from edge_agent.errors import CommandError, StorageError

log = logging.getLogger(__name__)


class DeliveryStore:
    """Reads and writes the outbox for one ``Delivery``, on the agent's thread."""

    def __init__(self, db: Database, delivery: Delivery, clock: Callable[[], float]) -> None:
        self.db = db
        self.delivery = delivery
        self.clock = clock
        self.data_version = -1  # PRAGMA data_version when the outbox was last read

    def refill(self) -> bool:
        """Feed the core the next rows after what it has handed out; False when there are
        none. Polled cheaply: the outbox is read again only when another connection wrote
        to the file (``PRAGMA data_version``) or the core expects more."""
        d = self.delivery
        version = int(self.db.conn.execute("PRAGMA data_version").fetchone()[0])
        if not d.maybe_more and version == self.data_version:
            return False
        self.data_version = version
        batch = d.limits.batch
        rows = outbox.pending(self.db, d.next_after, batch)
        d.feed(rows, more=len(rows) == batch)
        return bool(rows)

    def flush(self, force: bool = False) -> None:
        """Write the marks the core says are due."""
        due = self.delivery.marks_due(self.clock(), force)
        if due is None:
            return
        if due.through and not self.record_ack(due.through):
            return
        if not due.seqs:
            return
        try:
            if self.delivery.limits.e2e:
                outbox.mark_published(self.db, list(due.seqs))
            else:
                outbox.mark_delivered(self.db, list(due.seqs))
        except StorageError as exc:
            self._failed(f"cannot mark {len(due.seqs)} events", exc)
            return
        self._recorded(self.delivery.recorded(due.seqs))

    def record_ack(self, through: int) -> bool:
        """Mark every event through ``through`` delivered (the gateway's ack)."""
        try:
            n = outbox.mark_delivered_through(self.db, through)
        except StorageError as exc:
            self._failed(f"cannot mark events delivered through {through}", exc)
            return False
        self._recorded(self.delivery.recorded_through(through, n))
        return True

    def reopen_from(self, seq: int) -> dict[str, Any]:
        """``resend_from``: mark the events from ``seq`` on undelivered and send them again."""
        last = outbox.last_seq(self.db)
        first = outbox.first_stored_seq(self.db)
        if seq > last:
            raise CommandError(f"args.seq: {seq} is beyond the last event ({last})")
        if first is None or seq < first:
            raise CommandError(
                f"args.seq: events before seq {first} were purged after retention; "
                f"resend_from must be at least {first}"
            )
        self.flush(force=True)
        if self.delivery.unrecorded():
            # Written later, the marks still waiting for room would undo the resend.
            raise CommandError(
                "not stored: the station cannot record its deliveries now "
                "(is its disk full?); send the command again later"
            )
        try:
            with write_transaction(self.db) as conn:
                n = outbox.reopen_from(conn, seq)
        except StorageError as exc:
            raise CommandError(f"not stored: {exc}") from exc
        self.delivery.resend_from(seq)
        return {"resending": n, "from": seq}

    def _failed(self, what: str, exc: StorageError) -> None:
        # Not at every turn of the loop: a full disk stays full for a while.
        delay = self.delivery.record_failed(self.clock())
        log.error("%s: %s; next try in %.0f s", what, exc, delay)

    @staticmethod
    def _recorded(failures: int) -> None:
        if failures:
            log.info("deliveries recorded again after %d failed attempts", failures)
