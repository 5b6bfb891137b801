"""The event catalogue: the type of every event a station emits.

The edge agent owns the event contract (docs/events.md), so the names live here, once; the
kiosk (``kiosk_ui.core``), the outbox's standing alerts and the gateway's commands all name
their events through :class:`EventType`. Each type has a JSON Schema,
``docs/events/<type>.schema.json``, and a test holds the two lists equal in both directions.

A new event type: add it here, write its schema (and its message in ``docs/asyncapi.yaml``),
then emit it.
"""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    """Every ``type`` an event of this station can carry (CloudEvents ``type``)."""

    CHECKIN_RECORDED = "sampling.checkin.recorded"
    CHECKIN_WITHDRAWN = "sampling.checkin.withdrawn"
    TUBE_OPENED = "sampling.tube.opened"
    MEMBER_ADDED = "sampling.tube.member_added"
    MEMBER_REMOVED = "sampling.tube.member_removed"
    TUBE_SEALED = "sampling.tube.sealed"
    TUBE_VOIDED = "sampling.tube.voided"
    BOX_DISPATCHED = "sampling.box.dispatched"
    ALERT_RAISED = "sampling.alert.raised"
    ALERT_CLEARED = "sampling.alert.cleared"
    SETTINGS_CHANGED = "sampling.settings.changed"
