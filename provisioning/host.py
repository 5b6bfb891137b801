"""What a deploy works through and what it reports: the ``Executor`` that reaches one station
(provisioning/executor.py runs it over pyinfra; the plan tests use a facts-only one) and the
``HostReport`` of one run, printed as JSON by ``station provision``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from provisioning import plan


class Executor(Protocol):
    dry: bool

    def fact(self, script: str) -> list[str]:
        """Run a read-only shell script on the station; its output lines."""
        ...

    def apply(self, name: str, planner: Callable[[], list[plan.Step]]) -> list[plan.Step]:
        """Run the steps ``planner`` returns (or only list them in a dry run)."""
        ...

    def query(self, command: str) -> tuple[int, str, str]:
        """Run a read-only command; (exit status, stdout, stderr)."""
        ...

    def wait_for_reboot(self, marker: str, delay_s: float, timeout_s: float) -> None:
        """Reconnect after a reboot, until ``marker`` (a file in /run) has gone."""
        ...


@dataclass
class HostReport:
    station: str
    address: str
    action: str
    dry: bool
    ok: bool = True
    status: str = "unchanged"  # unchanged | changed | failed | unreachable | rolled-back
    started_at: str = ""
    duration_s: float = 0.0
    changes: list[dict[str, Any]] = field(default_factory=list)
    operations: list[dict[str, Any]] = field(default_factory=list)
    diffs: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    selftest: dict[str, Any] | None = None
    services: dict[str, str] = field(default_factory=dict)
    release_before: str | None = None
    release_after: str | None = None
    rolled_back: bool = False
    rebooted: bool = False

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def fail(self, message: str, status: str = "failed") -> None:
        self.ok = False
        self.status = status
        self.errors.append(message)
