"""The exception tree of the edge agent and the store it shares with the kiosk."""

from __future__ import annotations

from firmware.errors import StationError


class StorageError(StationError):
    """The station database could not be opened or a write could not be made durable."""


class DeliveryError(StationError):
    """The broker refused or lost something the agent sent."""


class LinkError(DeliveryError):
    """The link to the broker cannot be opened as configured (clear text refused, TLS files)."""


class CommandError(StationError):
    """A command from the gateway was rejected; the message says why."""
