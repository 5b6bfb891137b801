"""Our provisioning operations as data: facts in, commands out (no SSH, no pyinfra)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioning import plan, releases
from provisioning.deploy import Deploy
from provisioning.host import HostReport
from provisioning.inventory import CURRENT_LINK, RELEASES_DIR, Inventory, Station
from provisioning.render import (
    BLOCK_BEGIN,
    BLOCK_END,
    ENABLED_UNITS,
    SERVICES,
    SYSTEM_UNITS,
    TIMERS,
    DirSpec,
    FileSpec,
    desired_state,
    service_groups,
)
from tests.support.provision import offline_inventory

ACCOUNTS = plan.Accounts(
    users={"sampling": (998, 997)},
    groups={"sampling": (997, frozenset()), "video": (44, frozenset({"sampling"}))},
)
EMPTY = plan.Accounts(users={}, groups={})


def _commands(steps: list[plan.Step]) -> list[str]:
    return [s.describe() for s in steps]


# -- files and directories -------------------------------------------------------------------


def test_paths_fact_output_is_parsed() -> None:
    lines = [
        "F\t/r/etc/a\t640 0 997\t" + "ab" * 32,
        "D\t/r/etc\t750 0 997",
        "L\t/r/opt/current\treleases/1",
        "O\t/r/dev/x",
    ]
    got = plan.parse_paths(lines)
    assert got == {
        "/r/etc/a": plan.PathState("file", 0o640, 0, 997, "ab" * 32),
        "/r/etc": plan.PathState("dir", 0o750, 0, 997),
        "/r/opt/current": plan.PathState("link", target="releases/1"),
        "/r/dev/x": plan.PathState("other"),
    }
    assert plan.paths_fact_command(["/r/etc/a"]).startswith("for p in /r/etc/a; do")


SPEC = FileSpec(PurePosixPath("/etc/s/station.toml"), 0o640, "root", "sampling", "config",
                content=b"x = 1\n")  # fmt: skip
DIGEST = hashlib.sha256(b"x = 1\n").hexdigest()


def test_a_missing_file_is_uploaded_then_moved_in_place_with_its_modes() -> None:
    steps = plan.plan_file(SPEC, None, ACCOUNTS, "/mnt/sd")
    assert steps == [
        plan.Shell("mkdir -p /mnt/sd/etc/s"),
        plan.Upload("/mnt/sd/etc/s/station.toml.provision-tmp", content=b"x = 1\n"),
        plan.Shell(
            "chown 0:997 /mnt/sd/etc/s/station.toml.provision-tmp && chmod 640 "
            "/mnt/sd/etc/s/station.toml.provision-tmp && mv -f "
            "/mnt/sd/etc/s/station.toml.provision-tmp /mnt/sd/etc/s/station.toml"
        ),
    ]
    assert len(plan.plan_file(SPEC, None, ACCOUNTS, "", parent_exists=True)) == 2


def test_a_file_with_the_right_content_only_gets_its_mode_and_owner_fixed() -> None:
    same = plan.PathState("file", 0o640, 0, 997, DIGEST)
    assert plan.plan_file(SPEC, same, ACCOUNTS, "") == []
    loose = plan.PathState("file", 0o644, 1000, 1000, DIGEST)
    assert _commands(plan.plan_file(SPEC, loose, ACCOUNTS, "")) == [
        "chmod 640 /etc/s/station.toml",
        "chown 0:997 /etc/s/station.toml",
    ]
    changed = plan.PathState("file", 0o640, 0, 997, "00" * 32)
    assert len(plan.plan_file(SPEC, changed, ACCOUNTS, "")) == 3


def test_directories() -> None:
    spec = DirSpec(PurePosixPath("/var/lib/s"), 0o750, "sampling", "sampling")
    assert _commands(plan.plan_directory(spec, None, ACCOUNTS, "")) == [
        "mkdir -p /var/lib/s && chown 998:997 /var/lib/s && chmod 750 /var/lib/s"
    ]
    assert plan.plan_directory(spec, plan.PathState("dir", 0o750, 998, 997), ACCOUNTS, "") == []
    assert _commands(
        plan.plan_directory(spec, plan.PathState("dir", 0o755, 0, 0), ACCOUNTS, "")
    ) == [
        "chmod 750 /var/lib/s",
        "chown 998:997 /var/lib/s",
    ]
    with pytest.raises(ValueError, match="not a directory"):
        plan.plan_directory(spec, plan.PathState("file"), ACCOUNTS, "")


def test_owner_names_are_kept_when_the_account_does_not_exist_yet() -> None:
    # A dry run on a fresh card: the service user is only planned, not created.
    assert "chown 0:sampling" in plan.plan_file(SPEC, None, EMPTY, "")[-1].describe()


def test_file_diff_shows_changed_lines() -> None:
    diff = plan.file_diff("/etc/a", b"a = 1\nb = 2\n", b"a = 1\nb = 3\n")
    assert "-b = 2" in diff and "+b = 3" in diff and "-a = 1" not in diff
    assert plan.file_diff("/etc/a", b"same\n", b"same\n") == ""


# -- packages and accounts -------------------------------------------------------------------


def test_packages() -> None:
    installed = plan.parse_packages(["libzbar0\tinstalled", "fonts-noto-cjk\tconfig-files",
                                     "python3-pip:arm64\tinstalled"])  # fmt: skip
    assert installed == {"libzbar0", "python3-pip"}
    assert plan.plan_packages(["libzbar0", "python3-pip"], installed) == []
    assert _commands(plan.plan_packages(["libzbar0", "fonts-noto-cjk"], installed)) == [
        "DEBIAN_FRONTEND=noninteractive apt-get update -q && DEBIAN_FRONTEND=noninteractive "
        "apt-get install -y -q --no-install-recommends fonts-noto-cjk"
    ]


def test_accounts_are_parsed_from_passwd_and_group() -> None:
    got = plan.parse_accounts(
        ["root:x:0:0:root:/root:/bin/bash", "sampling:x:998:997::/var/lib/s:/usr/sbin/nologin",
         "--groups--", "root:x:0:", "video:x:44:pi,sampling", "sampling:x:997:"]
    )  # fmt: skip
    assert got.users == {"root": (0, 0), "sampling": (998, 997)}
    assert got.groups["video"] == (44, frozenset({"pi", "sampling"}))
    assert got.uid("sampling") == 998 and got.gid("root") == 0


def test_service_user_plans() -> None:
    home = PurePosixPath("/var/lib/s")
    fresh = plan.plan_account("sampling", ["video", "i2c"], EMPTY, "/mnt/sd", home)
    assert _commands(fresh) == [
        "groupadd --root /mnt/sd --system video",
        "groupadd --root /mnt/sd --system i2c",
        "useradd --root /mnt/sd --system --user-group --no-create-home --home-dir /var/lib/s "
        "--shell /usr/sbin/nologin --groups video,i2c sampling",
    ]
    with_i2c = plan.Accounts(ACCOUNTS.users, {**ACCOUNTS.groups, "i2c": (120, frozenset())})
    assert _commands(plan.plan_account("sampling", ["video", "i2c"], with_i2c, "", home)) == [
        "usermod --append --groups i2c sampling"
    ]
    done = plan.Accounts(ACCOUNTS.users, {**ACCOUNTS.groups, "i2c": (120, frozenset({"sampling"}))})
    assert plan.plan_account("sampling", ["video", "i2c"], done, "", home) == []


# -- boot configuration ----------------------------------------------------------------------

FRAGMENT = "dtparam=i2c_arm=on\ncamera_auto_detect=1\n"


def test_boot_block_is_added_once_and_replaced_in_place() -> None:
    original = "arm_64bit=1\n[cm4]\notg_mode=1\n"
    once = plan.edit_boot_config(original, FRAGMENT)
    assert once.startswith(original)
    assert once.endswith(
        f"{BLOCK_BEGIN}\n[all]\ndtparam=i2c_arm=on\ncamera_auto_detect=1\n{BLOCK_END}\n"
    )
    assert plan.edit_boot_config(once, FRAGMENT) == once
    other = plan.edit_boot_config(once, "dtparam=i2c_arm=on\n")
    assert other.count(BLOCK_BEGIN) == 1 and "camera_auto_detect" not in other
    assert other.startswith(original)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"),
               max_size=300))  # fmt: skip
def test_boot_edit_is_idempotent_and_keeps_every_other_line(text: str) -> None:
    once = plan.edit_boot_config(text, FRAGMENT)
    assert plan.edit_boot_config(once, FRAGMENT) == once
    kept = [line for line in text.splitlines() if line.strip()]
    if BLOCK_BEGIN not in text.splitlines():
        assert [line for line in once.splitlines() if line in kept][: len(kept)] == kept


@given(
    st.lists(
        st.sampled_from([BLOCK_BEGIN, BLOCK_END, "[all]", "[cm4]", "dtparam=audio=on", "", "# x"]),
        max_size=12,
    )
)
def test_boot_edit_is_idempotent_whatever_markers_the_file_has(lines: list[str]) -> None:
    once = plan.edit_boot_config("\n".join(lines), FRAGMENT)
    assert plan.edit_boot_config(once, FRAGMENT) == once
    assert once.count(BLOCK_BEGIN) == 1 and once.count(BLOCK_END) == 1
    assert once.endswith(f"camera_auto_detect=1\n{BLOCK_END}\n")


def test_boot_fact_and_plan() -> None:
    body = b"arm_64bit=1\n"
    found = plan.parse_boot(["/r/boot/config.txt", base64.b64encode(body).decode()])
    assert found == ("/r/boot/config.txt", body)
    assert plan.parse_boot([]) is None
    steps = plan.plan_boot("/r/boot/config.txt", body, FRAGMENT)
    assert isinstance(steps[0], plan.Upload) and steps[0].dest == "/r/boot/config.txt.provision-tmp"
    assert steps[1].describe().endswith("mv -f /r/boot/config.txt.provision-tmp /r/boot/config.txt")
    new = plan.edit_boot_config(body.decode(), FRAGMENT).encode()
    assert plan.plan_boot("/r/boot/config.txt", new, FRAGMENT) == []


# -- systemd ---------------------------------------------------------------------------------


def test_units_enable_and_start() -> None:
    enabled = plan.parse_units(["a.service\tenabled", "b.service\tdisabled", "c.service\t"])
    assert _commands(plan.plan_enable(["a.service", "b.service", "c.service"], enabled)) == [
        "systemctl enable b.service c.service"
    ]
    assert _commands(plan.plan_enable(["b.service"], enabled, "/mnt/sd")) == [
        "systemctl --root=/mnt/sd enable b.service"
    ]
    assert plan.plan_enable(["a.service"], enabled) == []
    active = {"a.service": "active", "b.service": "failed"}
    assert _commands(plan.plan_services(["a.service", "b.service"], active, False)) == [
        "systemctl start b.service"
    ]
    assert plan.plan_services(["a.service"], active, False) == []
    assert _commands(plan.plan_services(["a.service"], active, True)) == [
        "systemctl restart a.service"
    ]


# -- releases --------------------------------------------------------------------------------


def _releases(
    *names: str, failed: tuple[str, ...] = (), current: str | None = None
) -> releases.Releases:
    infos = [
        releases.ReleaseInfo(n, f"2026-01-0{i + 1}T00:00:00Z", n in failed)
        for i, n in enumerate(names)
    ]
    return releases.Releases(infos, [], current)


def test_releases_fact_output_is_parsed_oldest_first() -> None:
    got = releases.parse_releases([
        'R\tb\t\t{"installed_at": "2026-01-02T00:00:00Z"}',
        'R\ta\tfailed\t{"installed_at": "2026-01-01T00:00:00Z"}',
        "P\tc",
        "C\treleases/b",
    ])  # fmt: skip
    assert got.names() == ["a", "b"] and got.complete[0].failed is True
    assert got.incomplete == ["c"] and got.current == "b"
    assert releases.parse_releases(["C\t"]).current is None


def test_release_install_builds_its_own_venv_and_marks_completion_last() -> None:
    steps = releases.plan_release_install(
        "1.0-abc", _releases(), prefix="", releases_dir=RELEASES_DIR,
        artifact=Path("/dist/s-1.0-py3-none-any.whl"), sha256="ff", python="/usr/bin/python3",
        pip_options=["--no-deps"], now="2026-01-01T00:00:00Z",
    )  # fmt: skip
    d = "/opt/sampling-station/releases/1.0-abc"
    assert _commands(steps)[:3] == [
        f"rm -rf {d} && mkdir -p {d}",
        f"upload {d}/s-1.0-py3-none-any.whl (a local file)",
        f"/usr/bin/python3 -m venv --system-site-packages --without-pip {d}/venv",
    ]
    assert f"--python {d}/venv/bin/python install" in _commands(steps)[3]
    assert "--no-deps" in _commands(steps)[3]
    assert _commands(steps)[4].endswith(f"> {d}/.release.json")
    assert releases.plan_release_install(
        "1.0-abc", _releases("1.0-abc"), prefix="", releases_dir=RELEASES_DIR,
        artifact=Path("/x.whl"), sha256="ff", python="p", pip_options=[], now="n",
    ) == []  # fmt: skip


def test_current_is_switched_by_renaming_a_new_link() -> None:
    steps = releases.plan_switch("2", "1", prefix="/r", link=CURRENT_LINK)
    assert _commands(steps) == [
        "rm -f /r/opt/sampling-station/releases/2/.failed && ln -sfn releases/2 "
        "/r/opt/sampling-station/current.tmp && mv -T /r/opt/sampling-station/current.tmp "
        "/r/opt/sampling-station/current"
    ]
    assert releases.plan_switch("2", "2", prefix="/r", link=CURRENT_LINK) == []


def test_previous_release_skips_failed_ones() -> None:
    have = _releases("a", "b", "c", "d", failed=("c",), current="d")
    assert releases.previous_release(have, "d") == "b"
    assert releases.previous_release(have, "a") is None
    assert releases.previous_release(_releases(), None) is None


@given(
    n=st.integers(0, 8),
    failed=st.sets(st.integers(0, 7)),
    current=st.integers(0, 7),
    keep=st.integers(2, 5),
)
def test_pruning_keeps_current_previous_and_at_most_keep(
    n: int, failed: set[int], current: int, keep: int
) -> None:
    names = [f"r{i}" for i in range(n)]
    have = _releases(*names, failed=tuple(f"r{i}" for i in failed))
    cur = names[current] if current < n else None
    prev = releases.previous_release(have, cur)
    doomed = releases.releases_to_prune(have, [cur, prev], keep)
    survivors = [x for x in names if x not in doomed]
    assert cur is None or cur in survivors
    assert prev is None or prev in survivors
    assert len(survivors) == min(n, keep)
    good = [x for x in names if int(x[1:]) not in failed]
    # Failed releases go before any good one.
    if any(int(x[1:]) in failed for x in survivors if x not in (cur, prev)):
        assert all(g in survivors for g in good)


def test_prune_and_mark_failed_commands() -> None:
    assert _commands(releases.plan_prune(["a"], ["b"], prefix="", releases_dir=RELEASES_DIR)) == [
        "rm -rf /opt/sampling-station/releases/a /opt/sampling-station/releases/b"
    ]
    assert releases.plan_prune([], [], prefix="", releases_dir=RELEASES_DIR) == []
    assert _commands(releases.plan_mark_failed("a", prefix="", releases_dir=RELEASES_DIR)) == [
        "touch /opt/sampling-station/releases/a/.failed"
    ]


def test_snapshot_sections_round_trip() -> None:
    script = plan.snapshot_command({"a": "echo 1", "b": "echo 2"})
    assert (
        script
        == "echo '@@a@@'; { echo 1; } 2>/dev/null; echo '@@b@@'; { echo 2; } 2>/dev/null; true"
    )
    assert plan.split_sections(["@@a@@", "1", "@@b@@", "2", "3"]) == {"a": ["1"], "b": ["2", "3"]}


# -- the whole deploy as data ----------------------------------------------------------------


class FactsExecutor:
    """Serves one snapshot and records the steps the deploy would run (a dry run)."""

    dry = True

    def __init__(self, sections: dict[str, list[str]]) -> None:
        self.sections = sections
        self.ran: list[tuple[str, list[plan.Step]]] = []

    def fact(self, script: str) -> list[str]:
        out: list[str] = []
        for name, lines in self.sections.items():
            if f"@@{name}@@" in script:
                out += [f"@@{name}@@", *lines]
        return out

    def apply(self, name: str, planner: Callable[[], list[plan.Step]]) -> list[plan.Step]:
        steps = planner()
        if steps:
            self.ran.append((name, steps))
        return steps

    def query(self, command: str) -> tuple[int, str, str]:
        raise AssertionError("a dry run runs no commands")

    def wait_for_reboot(self, marker: str, delay_s: float, timeout_s: float) -> None:
        raise AssertionError("a dry run never reboots")


@pytest.fixture
def inventory(tmp_path: Path) -> Inventory:
    return offline_inventory(
        tmp_path,
        {"id": "K01", "township": "T01", "address": "10.0.0.1", "mode": "live"},
        defaults={"key": "key", "config": {"broker": {"url": "mqtts://gw:8883"}}},
    )


def test_a_fresh_station_gets_every_operation(inventory: Inventory) -> None:
    ex = FactsExecutor({"accounts": ["root:x:0:0::/root:/bin/sh", "--groups--", "root:x:0:"]})
    report = HostReport("K01", "10.0.0.1:22", "apply", dry=True)
    Deploy(ex, inventory, inventory.stations[0], report, now=lambda: "T").apply()
    names = [c["operation"] for c in report.changes]
    release = inventory.fleet.release.release_name()
    files = [f"file {f.path}" for f in desired_state(inventory, inventory.stations[0]).files]
    assert "file /etc/sampling-station/station.toml" in files
    assert "file /etc/systemd/system/sampling-kiosk.service" in files
    assert "file /etc/systemd/system/sampling-purge.service" in files
    assert "file /etc/systemd/system/sampling-purge.timer" in files
    assert names == [
        "packages", "service user", "directories", *files, f"release {release}",
        "switch current", "systemd reload", "enable units", "restart time sync",
        *(["reload udev rules"] if any("/udev/" in f for f in files) else []), "services",
        "timers",
    ]  # fmt: skip
    commands = {c["operation"]: c["commands"] for c in report.changes}
    assert commands["systemd reload"] == ["systemctl daemon-reexec"]  # the watchdog drop-in
    assert commands["services"] == [
        "systemctl restart sampling-agent.service sampling-kiosk.service"
    ]
    assert commands["enable units"] == [
        "systemctl enable sampling-agent.service sampling-kiosk.service sampling-purge.timer "
        "systemd-timesyncd.service systemd-time-wait-sync.service"
    ]
    # The timer is started; the purge service only ever by its timer.
    assert commands["timers"] == ["systemctl restart sampling-purge.timer"]
    systemctl = [c for cs in commands.values() for c in cs if c.startswith("systemctl")]
    assert not [c for c in systemctl if "sampling-purge.service" in c]
    # The files are one operation: directories made, then every upload, then all moved in.
    files_op = next(steps for name, steps in ex.ran if name == "files")
    kinds = [type(s).__name__ for s in files_op]
    uploads = [i for i, k in enumerate(kinds) if k == "Upload"]
    assert len(uploads) == len(files)
    assert uploads == list(range(uploads[0], uploads[0] + len(files)))
    assert [type(s).__name__ for s in files_op[uploads[-1] + 1 :]] == ["Shell"] * len(files)
    assert report.notes == [
        "no /boot/firmware/config.txt or /boot/config.txt: boot configuration skipped"
    ]


def _settled_facts(
    inventory: Inventory, station: Station, **replace: list[str]
) -> dict[str, list[str]]:
    """The facts of a station that already has everything; ``replace`` swaps sections."""
    desired = desired_state(inventory, station)
    groups = service_groups(station)
    accounts = ["root:x:0:0::/root:/bin/sh", "sampling:x:998:997::/var/lib/s:/bin/false",
                "--groups--", "root:x:0:", "sampling:x:997:",
                *(f"{g}:x:{100 + i}:sampling" for i, g in enumerate(groups))]  # fmt: skip
    owner = {"root": 0, "sampling": 998}
    group = {"root": 0, "sampling": 997}
    paths = [f"D\t{d.path}\t{d.mode:o} {owner[d.owner]} {group[d.group]}" for d in desired.dirs]
    for f in desired.files:
        digest = hashlib.sha256(plan.spec_bytes(f)).hexdigest()
        paths.append(f"F\t{f.path}\t{f.mode:o} {owner[f.owner]} {group[f.group]}\t{digest}")
    boot = plan.edit_boot_config("arm_64bit=1\n", desired.boot_fragment).encode()
    name = inventory.fleet.release.release_name()
    facts = {
        "packages": [f"{p}\tinstalled" for p in station.packages],
        "accounts": accounts,
        "paths": paths,
        "boot": ["/boot/firmware/config.txt", base64.b64encode(boot).decode()],
        "releases": [f'R\t{name}\t\t{{"installed_at": "T"}}', f"C\treleases/{name}"],
        "enabled": [f"{u}\tenabled" for u in [*ENABLED_UNITS, *SYSTEM_UNITS]],
        "active": [f"{u}\tactive" for u in [*SERVICES, *TIMERS]],
    }  # fmt: skip
    return facts | replace


def test_a_station_in_the_desired_state_gets_no_commands(inventory: Inventory) -> None:
    station = inventory.stations[0]
    ex = FactsExecutor(_settled_facts(inventory, station))
    report = HostReport("K01", "10.0.0.1:22", "apply", dry=True)
    Deploy(ex, inventory, station, report).apply()
    assert ex.ran == []
    assert report.changes == [] and report.release_before == inventory.fleet.release.release_name()


def test_a_new_purge_time_rewrites_and_restarts_only_the_timer(inventory: Inventory) -> None:
    """The kiosk and the agent keep running when only the purge's time changes."""
    before = inventory.stations[0]
    after = before.model_copy(update={"purge_at": "22:45"})
    ex = FactsExecutor(_settled_facts(inventory, before))
    report = HostReport("K01", "10.0.0.1:22", "apply", dry=True)
    Deploy(ex, inventory, after, report).apply()
    commands = {c["operation"]: c["commands"] for c in report.changes}
    timer = "/etc/systemd/system/sampling-purge.timer"
    assert list(commands) == [f"file {timer}", "systemd reload", "timers"]
    assert commands["systemd reload"] == ["systemctl daemon-reload"]
    assert commands["timers"] == ["systemctl restart sampling-purge.timer"]
    assert "+OnCalendar=*-*-* 22:45:00" in report.diffs[timer]


def test_a_stopped_purge_timer_is_started_again(inventory: Inventory) -> None:
    station = inventory.stations[0]
    active = [f"{u}\tactive" for u in SERVICES] + [f"{u}\tinactive" for u in TIMERS]
    ex = FactsExecutor(_settled_facts(inventory, station, active=active))
    report = HostReport("K01", "10.0.0.1:22", "apply", dry=True)
    Deploy(ex, inventory, station, report).apply()
    assert report.changes == [
        {"operation": "timers", "commands": ["systemctl start sampling-purge.timer"]}
    ]
