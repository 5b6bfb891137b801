"""The exceptions of provisioning (under the station's one exception tree)."""

from __future__ import annotations

from firmware.errors import ConfigError, StationError


class InventoryError(ConfigError):
    """The inventory file is missing, unreadable or has wrong values for a station."""


class ProvisionError(StationError):
    """A deploy step could not run (the runner process failed, a file is missing, ...)."""


class DeployStepFailed(ProvisionError):
    """A step's command failed on the station; ``detail`` is its error output."""

    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"{step}: {detail}")
        self.step = step
        self.detail = detail
