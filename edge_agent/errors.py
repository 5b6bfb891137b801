"""The exception tree of the edge agent and the store it shares with the kiosk."""

from __future__ import annotations

from firmware.errors import StationError


class StorageError(StationError):
    """The station database could not be opened or a write could not be made durable."""


class DeliveryError(StationError):
    """The broker refused or lost something the agent sent."""
