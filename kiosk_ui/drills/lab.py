"""The lab's side of a drill: results come back and the recall list reaches the station.

A drill has no township gateway of its own, so ``DrillLab`` plays its part with the gateway's
own code: the station's events (its outbox) go into a gateway store in the drill's directory
(``edge_agent.gateway``'s SQLite store, through the gateway's intake checks), a result file is
imported there (``lab_import``: the same matching, facts and recall rules), and the numbered
changes of the recall list are applied to the station as ``recall_update`` chunks by the
function its edge agent applies them with (``edge_agent.recall_list.apply``). The drill steps
(``kiosk_ui.drills.scenario``):

- ``{"results": "tube,result\\nTB...,positive\\n"}``: a LIS file's text comes back;
- ``{"recall": {recall_update args}}``: a recall command arrives, as the gateway sends it;
- ``{"recall_version": N}``: wait (up to ``RECALL_WAIT_S``) until the station holds version
  N: the recall reached it (through its agent, when the gateway is a real one).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jsonschema

from edge_agent import commands, recall_list
from edge_agent.db import open_db
from edge_agent.errors import CommandError
from edge_agent.gateway import recall
from edge_agent.gateway.intake import Intake, Rejected
from edge_agent.gateway.lab_import import ImportReport, LabFileError, import_results
from edge_agent.gateway.results import ResultFileError, parse_results
from edge_agent.gateway.sqlite import SqliteStore
from kiosk_ui.errors import SimulateError

RECALL_WAIT_S = 20.0


class DrillLab:
    """A gateway store fed with one station's events, and the recall list delivered to it."""

    def __init__(self, station_db: Path, directory: Path, township: str, station: str) -> None:
        self.township = township
        self.station = station
        self.db = open_db(station_db)
        recall_list.install(self.db)
        self.store = SqliteStore(directory / "drill-gateway.db")
        self.intake = Intake()
        self._fed = 0

    def close(self) -> None:
        self.store.close()
        self.db.conn.close()

    def feed(self) -> int:
        """The station's new events into the drill's gateway store; how many."""
        rows = self.db.conn.execute(
            "SELECT seq, payload FROM outbox WHERE seq > ? ORDER BY seq", (self._fed,)
        ).fetchall()
        topic = f"sampling/{self.township}/{self.station}/events"
        try:
            events = [self.intake.event(topic, str(p).encode()) for _s, p in rows]
        except Rejected as exc:
            raise SimulateError(f"the station wrote an event the gateway refuses: {exc}") from None
        if events:
            self.store.store(events, time.time())
            self._fed = int(rows[-1][0])
        return len(events)

    def results(self, text: str) -> ImportReport:
        """Import a result file's text; deliver what it changed on the recall list."""
        self.feed()
        try:
            parsed = parse_results(text.encode())
        except ResultFileError as exc:
            raise SimulateError(f"the drill's result file: {exc}") from None
        try:
            report = import_results(self.store, parsed, source="drill")
        except LabFileError as exc:
            raise SimulateError(str(exc)) from None
        if report.errors:
            raise SimulateError("; ".join(str(e) for e in report.errors))
        self.deliver()
        return report

    def deliver(self) -> int:
        """Send the station every change it lacks, in chunks; its version afterwards."""
        held = recall_list.version(self.db.conn)
        changes = recall.changes_since(self.store, self.township, held)
        for command in recall.commands(self.township, changes):
            self.apply(command["args"])
        return recall_list.version(self.db.conn)

    def apply(self, args: dict[str, Any]) -> dict[str, Any]:
        """One ``recall_update`` as the station's agent takes it: its schema, then applied."""
        problems = sorted(
            jsonschema.Draft202012Validator(commands.schema("recall_update")).iter_errors(args),
            key=lambda e: list(e.absolute_path),
        )
        if problems:
            raise SimulateError(f"the drill's recall command: {problems[0].message}")
        try:
            return recall_list.apply(self.db, self.township, args, time.time())
        except CommandError as exc:
            raise SimulateError(f"the station refused the recall command: {exc}") from None

    def wait_version(self, version: int, timeout: float = RECALL_WAIT_S) -> int:
        """Wait until the station holds ``version``; the version it holds at the end."""
        deadline = time.monotonic() + timeout
        while True:
            held = recall_list.version(self.db.conn)
            if held >= version or time.monotonic() >= deadline:
                return held
            time.sleep(0.1)
