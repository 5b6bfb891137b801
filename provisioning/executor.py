"""The one module that touches pyinfra: an executor of our plans on one station over SSH.

It is imported only by the runner process (provisioning/runner.py), after gevent's
monkeypatching; the rest of the station software never loads it. Host keys are pinned: a
station whose key is not in the inventory's known_hosts file is refused.
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Callable
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

from pyinfra.api.command import FileUploadCommand, StringCommand
from pyinfra.api.config import Config
from pyinfra.api.exceptions import ConnectError, NestedOperationError
from pyinfra.api.inventory import Inventory
from pyinfra.api.operation import add_op, operation
from pyinfra.api.state import State, StateStage

from provisioning.deploy import Deploy
from provisioning.errors import DeployStepFailed
from provisioning.host import HostReport
from provisioning.inventory import Station, load_inventory
from provisioning.plan import Shell, Step

log = logging.getLogger(__name__)


class PyinfraExecutor:
    """Runs our steps as pyinfra operations on one host, each executed as soon as it is added."""

    def __init__(self, station: Station, known_hosts: Path, dry: bool) -> None:
        self.dry = dry
        self.station = station
        name = station.id
        data: dict[str, object] = {
            "ssh_hostname": station.address,
            "ssh_port": station.port,
            "ssh_user": station.user,
            "ssh_key": str(station.key),
            "ssh_known_hosts_file": str(known_hosts),
            "ssh_strict_host_key_checking": "yes",
            "ssh_config_file": "/dev/null",
            "ssh_allow_agent": False,
            "ssh_look_for_keys": False,
        }
        if station.local:
            # An SD card mounted on this machine: pyinfra's local connector, no SSH.
            name, data = "@local", {}
        inventory = Inventory(([(name, data)], {}))  # type: ignore[no-untyped-call]
        config = Config(  # type: ignore[no-untyped-call]
            CONNECT_TIMEOUT=station.connect_timeout_s, PARALLEL=1, SHELL="sh"
        )
        # A dry run only prepares operations (each yields its commands from the facts);
        # a real run executes each operation as it is added, so later steps see its effects.
        self.state = State(inventory, config, check_for_changes=dry)
        self.host = inventory.get_host(name)
        self.sudo = {"_sudo": True} if station.use_sudo else {}

    def connect(self) -> None:
        self.state.set_stage(StateStage.Connect)
        try:
            self.host.connect(show_errors=False, raise_exceptions=True)
        except ConnectError as exc:
            raise ConnectionError(_explain_connect_error(str(exc.args[0]))) from None
        self.state.activate_host(self.host)
        if self.sudo:
            self._check_sudo()
        self.state.set_stage(StateStage.Prepare)
        if not self.dry:
            self.state.set_stage(StateStage.Execute)
            self.state.is_executing = True

    def _check_sudo(self) -> None:
        """Refuse early, with the reason, when sudo would ask for a password (or is missing):
        pyinfra would otherwise prompt for one, which no runner process can answer."""
        # sudo's own words behind a prefix: pyinfra prompts whenever a line of output is
        # exactly "sudo: a password is required".
        ok, out = self.host.run_shell_command(
            StringCommand('said=$(sudo -n true 2>&1) || { printf "sudo> %s\\n" "$said"; exit 1; }')
        )
        if ok:
            return
        said = " ".join(line.removeprefix("sudo> ") for line in out.stdout_lines).strip()
        said = said or " ".join(out.stderr_lines).strip() or "no output"
        user = self.station.user
        raise DeployStepFailed(
            "sudo",
            f"the SSH user {user} cannot run commands with sudo without a password ({said}); "
            f"give {user} passwordless sudo on the station (NOPASSWD in /etc/sudoers.d, see "
            "docs/provisioning.md) or log in as root",
        )

    def disconnect(self) -> None:
        if self.host.connected:
            self.host.disconnect()

    def fact(self, script: str) -> list[str]:
        ok, out = self.host.run_shell_command(StringCommand(script), **self.sudo)
        if not ok:
            raise DeployStepFailed("read facts", "\n".join(out.stderr_lines)[-2000:] or "failed")
        return list(out.stdout_lines)

    def query(self, command: str) -> tuple[int, str, str]:
        _, out = self.host.run_shell_command(
            StringCommand(f'{command}; echo "__status=$?"'), **self.sudo
        )
        lines = list(out.stdout_lines)
        status = 1
        if lines and lines[-1].startswith("__status="):
            status = int(lines.pop()[len("__status=") :])
        return status, "\n".join(lines), "\n".join(out.stderr_lines)

    def apply(self, name: str, planner: Callable[[], list[Step]]) -> list[Step]:
        record: list[Step] = []

        @operation()
        def steps() -> Any:
            record[:] = planner()
            for step in _coalesce(record):
                if isinstance(step, Shell):
                    yield StringCommand(step.command)
                elif step.content is not None:
                    yield FileUploadCommand(BytesIO(step.content), step.dest)
                else:
                    yield FileUploadCommand(str(step.source), step.dest)

        try:
            add_op(self.state, steps, name=name, host=self.host, **self.sudo)
        except NestedOperationError:
            meta = self.state.get_op_data_for_host(
                self.host, self.host.op_hash_order[-1]
            ).operation_meta
            detail = ""
            try:
                detail = meta.stderr or meta.stdout
            except RuntimeError:
                detail = ""
            raise DeployStepFailed(name, detail[-2000:] or "a command failed") from None
        return list(record)

    def wait_for_reboot(self, marker: str, delay_s: float, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        self.host.disconnect()
        time.sleep(delay_s)
        while True:
            try:
                self.host.connect(show_errors=False, raise_exceptions=True)
                ok, out = self.host.run_shell_command(
                    StringCommand(
                        f"test -e {shlex.quote(marker)} && echo pending || echo rebooted"
                    ),
                    **self.sudo,
                )
                if ok and out.stdout_lines == ["rebooted"]:
                    return
                self.host.disconnect()
            except (ConnectError, OSError):
                pass
            if time.monotonic() > deadline:
                raise ConnectionError(f"the station did not come back within {timeout_s:.0f} s")
            time.sleep(min(2.0, max(0.1, delay_s)))


def _coalesce(steps: list[Step]) -> list[Step]:
    """Adjacent shell steps as one command (one round trip), stopping at the first failure."""
    out: list[Step] = []
    for step in steps:
        last = out[-1] if out else None
        if isinstance(step, Shell) and isinstance(last, Shell):
            first = last.command if last.command.startswith("{ ") else f"{{ {last.command}; }}"
            out[-1] = Shell(f"{first} && {{ {step.command}; }}")
        else:
            out.append(step)
    return out


def _explain_connect_error(message: str) -> str:
    if "No host key" in message:
        return (
            f"refused: the station's host key is not pinned in known_hosts ({message}); "
            "add it from a trusted source (see docs/provisioning.md)"
        )
    if "does not match" in message or "BadHostKey" in message:
        return (
            f"refused: the station's host key does not match the pinned one ({message}); "
            "a different machine, or a re-flashed card: check before trusting it"
        )
    return message


def run(job: dict[str, Any]) -> dict[str, Any]:
    inventory = load_inventory(job["inventory"])
    station = next(s for s in inventory.stations if s.id == job["station"])
    report = HostReport(
        station=station.id,
        address=f"{station.address}:{station.port}",
        action=job["action"],
        dry=bool(job.get("dry")),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    t0 = time.monotonic()
    ex = PyinfraExecutor(station, inventory.fleet.known_hosts, report.dry)
    try:
        ex.connect()
        deploy = Deploy(ex, inventory, station, report, diff=bool(job.get("diff")))
        if job["action"] == "rollback":
            deploy.rollback()
        else:
            deploy.apply()
        if report.ok and report.changes:
            report.status = "changed"
    except ConnectionError as exc:
        report.fail(str(exc), status="unreachable")
    except DeployStepFailed as exc:
        report.fail(str(exc))
    except Exception as exc:  # the report must say what broke, whatever it was
        log.exception("deploy of %s failed", station.id)
        report.fail(f"{type(exc).__name__}: {exc}")
    finally:
        try:
            ex.disconnect()
        except Exception:  # the connection may already be gone
            log.debug("disconnect failed", exc_info=True)
    report.duration_s = round(time.monotonic() - t0, 3)
    return report.to_json()
