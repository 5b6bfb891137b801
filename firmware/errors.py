"""The exception tree of the device platform."""

from __future__ import annotations


class StationError(Exception):
    """Base of every error the station software raises on purpose."""


class ConfigError(StationError):
    """The configuration file is missing, unreadable or has wrong values."""

    def __init__(self, origin: str, problems: list[str]) -> None:
        self.origin = origin
        self.problems = problems
        super().__init__(f"{origin}: " + "; ".join(problems))

    def __str__(self) -> str:
        lines = [f"configuration {self.origin} is not valid:"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class DeviceError(StationError):
    """A device did not answer, or answered something the device never sends."""


class SensorError(DeviceError):
    """The thermometer failed: no answer, bad checksum, error flag or implausible value."""


class CameraError(DeviceError):
    """The camera stopped delivering frames or could not be opened."""


class ClockError(DeviceError):
    """The real-time clock did not answer, or its registers hold what no clock holds."""


class PinMapError(ConfigError):
    """A pin map reuses a pin or names one the board does not have."""


class ScannerError(DeviceError):
    """The barcode scanner could not be opened or stopped delivering input."""


class LightsError(DeviceError):
    """The lane lights or the buzzer could not be driven."""


class DecoderError(StationError):
    """An image could not be read, or a QR engine is not available."""


class SimulationError(StationError):
    """A simulated device was asked for something no real device could do."""
