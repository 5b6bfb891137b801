"""The deploy of one station, as a sequence of our operations over an ``Executor``.

This module decides *what* a station gets and in which order; the pyinfra-backed executor in
provisioning/runner.py decides *how* it reaches the station. Every step is a plan from
provisioning/plan.py, so a station already in the desired state yields no commands at all.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from provisioning import plan
from provisioning.host import Executor, HostReport
from provisioning.inventory import (
    CONFIG_PATH,
    CURRENT_LINK,
    RELEASES_DIR,
    STATE_DIR,
    Inventory,
    Station,
    sha256_file,
)
from provisioning.releases import (
    Releases,
    parse_releases,
    plan_mark_failed,
    plan_prune,
    plan_release_install,
    plan_switch,
    previous_release,
    releases_fact_command,
    releases_to_prune,
)
from provisioning.render import (
    BOOT_CONFIGS,
    ENABLED_UNITS,
    PURGE_TIMER,
    SERVICES,
    SYSTEM_UNITS,
    TIMERS,
    TIMESYNC_DROPIN,
    UDEV_DIR,
    UNIT_DIR,
    UNITS,
    WATCHDOG_DROPIN,
    Desired,
    FileSpec,
    desired_state,
    service_groups,
)

log = logging.getLogger(__name__)

REBOOT_MARKER = "/run/sampling-station/reboot-pending"


@dataclass(frozen=True)
class Snapshot:
    """What the deploy knows about a station before it changes anything."""

    packages: set[str]
    accounts: plan.Accounts
    paths: dict[str, plan.PathState]
    boot: tuple[str, bytes] | None
    releases: Releases
    enabled: dict[str, str]
    active: dict[str, str]


class Deploy:
    """One run (apply or rollback) against one station."""

    def __init__(
        self,
        ex: Executor,
        inventory: Inventory,
        station: Station,
        report: HostReport,
        *,
        diff: bool = False,
        now: Callable[[], str] | None = None,
    ) -> None:
        self.ex = ex
        self.inv = inventory
        self.st = station
        self.report = report
        self.show_diff = diff or ex.dry
        self.prefix = station.prefix
        self.image = station.effective_mode == "image"
        self.release_changed = False
        self.facts_releases = Releases([], [], None)
        self.now = now or (lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))

    # -- helpers -----------------------------------------------------------------------------

    def step(self, name: str, planner: Callable[[], list[plan.Step]]) -> bool:
        t0 = time.monotonic()
        steps = self.ex.apply(name, planner)
        took = round(time.monotonic() - t0, 3)
        self.report.operations.append({"name": name, "changed": bool(steps), "duration_s": took})
        if steps:
            self.report.changes.append(
                {"operation": name, "commands": [s.describe() for s in steps]}
            )
        return bool(steps)

    def group(self, name: str, parts: list[tuple[str, Callable[[], list[plan.Step]]]]) -> set[str]:
        """Several operations run as one (fewer round trips), each reported on its own.

        Each part's commands keep their order; across parts, the commands before an upload
        run first, then the uploads, then the commands after them, so adjacent commands
        become one round trip. Returns the names of the parts that changed something.
        """
        planned: dict[str, list[plan.Step]] = {}

        def combined() -> list[plan.Step]:
            planned.clear()
            phased: list[tuple[int, plan.Step]] = []
            for sub, planner in parts:
                steps = planner()
                if steps:
                    planned[sub] = steps
                seen_upload = not any(isinstance(s, plan.Upload) for s in steps)
                for s in steps:
                    if isinstance(s, plan.Upload):
                        seen_upload = True
                        phased.append((1, s))
                    else:
                        phased.append((2 if seen_upload else 0, s))
            return [s for _, s in sorted(phased, key=lambda p: p[0])]

        t0 = time.monotonic()
        steps = self.ex.apply(name, combined)
        took = round(time.monotonic() - t0, 3)
        self.report.operations.append(
            {"name": name, "changed": bool(steps), "duration_s": took, "parts": list(planned)}
        )
        for sub, sub_steps in planned.items():
            self.report.changes.append(
                {"operation": sub, "commands": [s.describe() for s in sub_steps]}
            )
        return set(planned)

    def accounts(self) -> plan.Accounts:
        return plan.parse_accounts(self.ex.fact(plan.accounts_fact_command(self.prefix)))

    def releases(self) -> Releases:
        script = releases_fact_command(self.prefix, RELEASES_DIR, CURRENT_LINK)
        return parse_releases(self.ex.fact(script))

    def _remote_bytes(self, path: str) -> bytes | None:
        lines = self.ex.fact(f"if [ -f {shlex.quote(path)} ]; then base64 -w0 < "
                             f"{shlex.quote(path)}; echo; else echo MISSING; fi")  # fmt: skip
        text = "".join(line.strip() for line in lines)
        return None if text == "MISSING" else base64.b64decode(text)

    # -- facts -------------------------------------------------------------------------------

    def snapshot(self, desired: Desired) -> Snapshot:
        """Every fact the deploy needs, read in one round trip."""
        p = self.prefix
        paths = [plan.rooted(p, d.path) for d in desired.dirs]
        paths += [plan.rooted(p, f.path) for f in desired.files]
        paths += sorted({plan.rooted(p, f.path.parent) for f in desired.files} - set(paths))
        enable = [*ENABLED_UNITS, *SYSTEM_UNITS]
        running = [*SERVICES, *TIMERS]
        sections = {
            "packages": plan.packages_fact_command(self.st.packages) if self.st.packages else "",
            "accounts": plan.accounts_fact_command(p),
            "paths": plan.paths_fact_command(paths),
            "boot": plan.boot_fact_command(p, BOOT_CONFIGS),
            "releases": releases_fact_command(p, RELEASES_DIR, CURRENT_LINK),
            "enabled": plan.units_fact_command(enable, "is-enabled", p if self.image else ""),
            "active": "" if self.image else plan.units_fact_command(running, "is-active"),
        }
        raw = plan.split_sections(
            self.ex.fact(plan.snapshot_command({k: v for k, v in sections.items() if v}))
        )
        return Snapshot(
            packages=plan.parse_packages(raw.get("packages", [])),
            accounts=plan.parse_accounts(raw.get("accounts", [])),
            paths=plan.parse_paths(raw.get("paths", [])),
            boot=plan.parse_boot(raw.get("boot", [])),
            releases=parse_releases(raw.get("releases", [])),
            enabled=plan.parse_units(raw.get("enabled", [])),
            active=plan.parse_units(raw.get("active", [])),
        )

    # -- apply -------------------------------------------------------------------------------

    def apply(self) -> None:
        desired = desired_state(self.inv, self.st)
        facts = self.snapshot(desired)
        self.facts_releases = facts.releases
        self.report.release_before = facts.releases.current
        if not self.image and self.st.packages:
            wanted = list(self.st.packages)
            self.step("packages", lambda: plan.plan_packages(wanted, facts.packages))
        accounts = self._account(facts)
        changed_files = self._files(facts, desired, accounts)
        boot_changed = self._boot(facts.boot, desired.boot_fragment)
        switched = False
        if self.image:
            self.report.notes.append(
                "image mode: releases, services and the health check run on the first live run"
            )
        else:
            switched = self._release(facts.releases)
        self._systemd(facts, changed_files, switched)
        if self.ex.dry:
            if boot_changed and not self.image:
                self.report.notes.append("would reboot: the boot configuration changes")
            return
        if boot_changed and not self.image:
            self._reboot()
        if not self.image:
            self._health_and_rollback(switched)

    def _account(self, facts: Snapshot) -> plan.Accounts:
        """The service user and its groups; the accounts as they are afterwards."""

        def account() -> list[plan.Step]:
            groups = service_groups(self.st)
            return plan.plan_account(
                self.st.service_user, groups, facts.accounts, self.prefix, STATE_DIR
            )

        if self.step("service user", account) and not self.ex.dry:
            return self.accounts()
        return facts.accounts

    def _files(self, facts: Snapshot, desired: Desired, accounts: plan.Accounts) -> set[str]:
        """The directories, then every file; the paths of the files that changed."""
        prefix = self.prefix

        def dirs() -> list[plan.Step]:
            out: list[plan.Step] = []
            for d in desired.dirs:
                have = facts.paths.get(plan.rooted(prefix, d.path))
                out += plan.plan_directory(d, have, accounts, prefix)
            return out

        self.step("directories", dirs)
        created_dirs = set() if self.ex.dry else {plan.rooted(prefix, d.path) for d in desired.dirs}
        parts: list[tuple[str, Callable[[], list[plan.Step]]]] = []
        for spec in desired.files:
            dest = plan.rooted(prefix, spec.path)

            def file_plan(spec: FileSpec = spec, dest: str = dest) -> list[plan.Step]:
                parent = plan.rooted(prefix, spec.path.parent)
                parent_exists = parent in facts.paths or parent in created_dirs
                return plan.plan_file(spec, facts.paths.get(dest), accounts, prefix, parent_exists)

            parts.append((f"file {spec.path}", file_plan))
        # Diffs are taken before the files are written, from what the station has now.
        diffs = self._diffs(desired.files, facts.paths) if self.show_diff else {}
        changed = self.group("files", parts)
        changed_files = {str(f.path) for f in desired.files if f"file {f.path}" in changed}
        self.report.diffs.update({p: d for p, d in diffs.items() if p in changed_files})
        return changed_files

    def _diffs(self, files: list[FileSpec], have: dict[str, plan.PathState]) -> dict[str, str]:
        out: dict[str, str] = {}
        for spec in files:
            dest = plan.rooted(self.prefix, spec.path)
            state = have.get(dest)
            new = plan.spec_bytes(spec)
            if state is not None and state.sha256 == hashlib.sha256(new).hexdigest():
                continue
            if spec.secret:
                out[str(spec.path)] = "(secret: content not shown)"
                continue
            old = self._remote_bytes(dest) if state is not None else None
            out[str(spec.path)] = plan.file_diff(str(spec.path), old, new)
        return out

    def _boot(self, found: tuple[str, bytes] | None, fragment: str) -> bool:
        if found is None:
            self.report.notes.append(
                "no /boot/firmware/config.txt or /boot/config.txt: boot configuration skipped"
            )
            return False
        path, current = found
        shown = path.removeprefix(self.prefix)
        changed = self.step(f"boot config {shown}", lambda: plan.plan_boot(path, current, fragment))
        if changed and self.show_diff:
            new = plan.edit_boot_config(current.decode("utf-8", "replace"), fragment).encode()
            self.report.diffs[shown] = plan.file_diff(shown, current, new)
        return changed

    def _release(self, have: Releases) -> bool:
        rel = self.inv.fleet.release
        name = rel.release_name()

        def install() -> list[plan.Step]:
            return plan_release_install(
                name,
                have,
                prefix=self.prefix,
                releases_dir=RELEASES_DIR,
                artifact=rel.artifact,
                sha256=sha256_file(rel.artifact),
                python=rel.python,
                pip_options=rel.pip_options,
                now=self.now(),
            )

        def switch() -> list[plan.Step]:
            return plan_switch(name, have.current, prefix=self.prefix, link=CURRENT_LINK)

        installed = self.step(f"release {name}", install)
        switched = self.step("switch current", switch)
        self.release_changed = installed or switched
        self.report.release_after = name
        return switched

    def _systemd(self, facts: Snapshot, changed_files: set[str], switched: bool) -> None:
        prefix = self.prefix
        unit_files = {str(UNIT_DIR / u) for u in UNITS}
        service_files = {str(UNIT_DIR / u) for u in SERVICES}
        enable = [*ENABLED_UNITS, *SYSTEM_UNITS]
        if self.image:
            self.step("enable units", lambda: plan.plan_enable(enable, facts.enabled, prefix))
            return

        def reexec() -> list[plan.Step]:
            if str(WATCHDOG_DROPIN) in changed_files:  # system.conf is read on re-execution
                return [plan.Shell("systemctl daemon-reexec")]
            if changed_files & unit_files:
                return [plan.Shell("systemctl daemon-reload")]
            return []

        def timesync() -> list[plan.Step]:
            if str(TIMESYNC_DROPIN) not in changed_files:
                return []
            return [plan.Shell("systemctl restart systemd-timesyncd.service")]

        def udev() -> list[plan.Step]:
            if not any(f.startswith(str(UDEV_DIR)) for f in changed_files):
                return []
            return [plan.Shell("udevadm control --reload-rules && udevadm trigger")]

        # The services read the station files and run the release: restart after a change.
        # The purge reads them afresh at each run; only its timer restarts, when it changed.
        restart = switched or any(
            not f.startswith(("/etc/systemd/", "/etc/modules")) or f in service_files
            for f in changed_files
        )
        timer_changed = str(UNIT_DIR / PURGE_TIMER) in changed_files
        self.group(
            "systemd",
            [
                ("systemd reload", reexec),
                ("enable units", lambda: plan.plan_enable(enable, facts.enabled)),
                ("restart time sync", timesync),
                ("reload udev rules", udev),
                ("services", lambda: plan.plan_services(SERVICES, facts.active, restart)),
                ("timers", lambda: plan.plan_services(TIMERS, facts.active, timer_changed)),
            ],
        )

    def _reboot(self) -> None:
        marker = plan.rooted(self.prefix, REBOOT_MARKER)
        q = shlex.quote
        command = (
            f"mkdir -p {q(str(PurePosixPath(marker).parent))} && touch {q(marker)} && "
            "( sleep 1 && reboot ) </dev/null >/dev/null 2>&1 &"
        )
        self.step("reboot", lambda: [plan.Shell(command)])
        self.ex.wait_for_reboot(marker, self.st.reboot_delay_s, self.st.reboot_timeout_s)
        self.report.rebooted = True

    # -- health ------------------------------------------------------------------------------

    def health(self) -> bool:
        """Services active and `station selftest --json` passing, from the current release."""
        if self.st.health_settle_s:
            time.sleep(self.st.health_settle_s)
        station_bin = plan.rooted(self.prefix, CURRENT_LINK / "venv" / "bin" / "station")
        config = plan.rooted(self.prefix, CONFIG_PATH)
        # As the service user, so the self-test never leaves root-owned files (the database,
        # its WAL) behind. A station under a `root` prefix has its accounts only in that
        # tree, unknown to the running system, so there it runs as the SSH user.
        as_user = "" if self.prefix else f"runuser -u {shlex.quote(self.st.service_user)} -- "
        code, out, err = self.ex.query(
            plan.units_fact_command(SERVICES, "is-active") + "; echo '@@selftest@@'; "
            f"{as_user}timeout {int(self.st.selftest_timeout_s)} {shlex.quote(station_bin)} "
            f"selftest --json --config {shlex.quote(config)}"
        )
        units, _, out = out.partition("@@selftest@@")
        self.report.services = plan.parse_units(units.splitlines())
        try:
            parsed = json.loads(out)
            result: dict[str, Any] = parsed if isinstance(parsed, dict) else {"result": parsed}
        except ValueError:
            result = {"output": out[-2000:], "stderr": err[-2000:]}
        result["exit_status"] = code
        passed = code == 0 and result.get("ok", True) is not False
        result["passed"] = passed
        self.report.selftest = result
        inactive = [u for u, s in self.report.services.items() if s != "active"]
        if inactive:
            self.report.notes.append("not active: " + ", ".join(inactive))
        return passed and not inactive

    def _restart_services(self) -> None:
        self.step("services", lambda: plan.plan_services(SERVICES, {}, True))

    def _health_and_rollback(self, switched: bool) -> None:
        if self.health():
            self._prune()
            return
        failed = self.report.release_after
        if not switched:
            self.report.fail(f"health check failed on release {failed}")
            return
        previous = previous_release(self.releases(), failed)
        if previous is None:
            self.report.fail(f"health check failed on release {failed}; no earlier release")
            return

        def back() -> list[plan.Step]:
            assert previous is not None and failed is not None
            return [
                *plan_mark_failed(failed, prefix=self.prefix, releases_dir=RELEASES_DIR),
                *plan_switch(previous, failed, prefix=self.prefix, link=CURRENT_LINK),
            ]

        self.step(f"roll back to {previous}", back)
        self._restart_services()
        self.report.release_after = previous
        self.report.rolled_back = True
        healthy = self.health()
        self.report.fail(
            f"health check failed on release {failed}; rolled back to {previous}"
            + ("" if healthy else " (which is not healthy either)"),
            status="rolled-back",
        )

    def _prune(self) -> None:
        have = self.releases() if self.release_changed else self.facts_releases
        keep = self.inv.fleet.release.keep
        doomed = releases_to_prune(have, [have.current, previous_release(have, have.current)], keep)
        self.step("prune releases", lambda: plan_prune(
            doomed, have.incomplete, prefix=self.prefix, releases_dir=RELEASES_DIR))  # fmt: skip

    # -- rollback by hand --------------------------------------------------------------------

    def rollback(self) -> None:
        if self.image:
            self.report.fail("rollback needs a running station (this one is an image)")
            return
        have = self.releases()
        self.report.release_before = have.current
        previous = previous_release(have, have.current)
        if previous is None:
            self.report.fail(f"no release before {have.current} to roll back to")
            return
        current = have.current

        def back() -> list[plan.Step]:
            assert previous is not None
            mark = (
                plan_mark_failed(current, prefix=self.prefix, releases_dir=RELEASES_DIR)
                if current
                else []
            )
            return [*mark, *plan_switch(previous, current, prefix=self.prefix,
                                             link=CURRENT_LINK)]  # fmt: skip

        self.step(f"roll back to {previous}", back)
        self._restart_services()
        self.report.release_after = previous
        if not self.health():
            self.report.fail(f"rolled back to {previous}, but its health check fails")
