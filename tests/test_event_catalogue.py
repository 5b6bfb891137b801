"""The event catalogue (``edge_agent.events``) and the published schemas name the same types."""

from __future__ import annotations

from edge_agent import outbox
from edge_agent.events import EventType
from tests.support.contract import ENVELOPE, EVENTS_DIR


def test_every_event_type_has_a_schema_and_every_schema_an_event_type() -> None:
    schemas = {p.name.removesuffix(".schema.json") for p in EVENTS_DIR.glob("*.schema.json")}
    catalogue = {t.value for t in EventType}
    assert len(catalogue) == len(EventType) == 11
    assert catalogue - schemas == set(), "event types without a schema in docs/events"
    assert schemas - {ENVELOPE} - catalogue == set(), "schemas of no event type"
    assert ENVELOPE in schemas


def test_an_event_type_is_stored_and_sent_as_plain_text() -> None:
    event, row = outbox.make_event(
        source="urn:sampling:T01:K03", type=EventType.TUBE_OPENED, data={}, seq=1, at=0.0
    )
    assert type(event["type"]) is str and event["type"] == "sampling.tube.opened"
    assert type(row[2]) is str and '"type":"sampling.tube.opened"' in row[4]
