"""`station provision` end to end: real sshd servers on loopback, one filesystem root each.

The stations' system commands are fakes that record their calls (tests/support/provision.py);
everything else is real: SSH with pinned host keys, SFTP uploads, virtualenvs built with pip
from a wheel, symlinks switched on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pwd
import secrets
import shutil
import stat
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kiosk_ui.cli import main
from tests.support.ports import free_port
from tests.support.provision import (
    build_release_wheel,
    calls,
    fakes_dir,
    inventory_text,
    make_root,
    station_sshd,
    sudo_user,
    write_fakes,
)
from tests.support.sshd import Keys, Sshd, generate_keys, running_sshds

pytestmark = pytest.mark.timeout(120)

CURRENT = "opt/sampling-station/current"


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return generate_keys(tmp_path_factory.mktemp("ssh-keys"))


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("dist")
    return {
        "1": build_release_wheel(d / "1", "1.0.0"),
        "2": build_release_wheel(d / "2", "2.0.0"),
        "3": build_release_wheel(d / "3", "3.0.0"),
        "bad": build_release_wheel(d / "bad", "9.0.0", healthy=False),
    }


@dataclass
class Fleet:
    dir: Path
    keys: Keys
    servers: dict[str, Sshd]
    roots: dict[str, Path]
    down: dict[str, tuple[str, int]]
    trust: Path
    secrets: dict[str, Path]
    inventory: Path

    def write(
        self,
        artifact: Path,
        known_hosts: str | None = None,
        extra_station: str = "",
        per_station: dict[str, str] | None = None,
    ) -> None:
        kh = self.dir / "known_hosts"
        kh.write_text(
            known_hosts
            if known_hosts is not None
            else "".join(s.known_hosts_line() + "\n" for s in self.servers.values())
        )
        entries = [(sid, s.address, s.port, self.roots[sid]) for sid, s in self.servers.items()]
        entries += [(sid, a, p, self.dir / sid) for sid, (a, p) in self.down.items()]
        for _, _, _, root in entries:
            root.mkdir(parents=True, exist_ok=True)
        self.inventory.write_text(
            inventory_text(
                known_hosts=kh,
                trust_file=self.trust,
                artifact=artifact,
                keys=self.keys,
                stations=sorted(entries),
                mqtt=self.secrets,
                extra_station=extra_station,
                per_station=per_station,
            )
        )

    def run(
        self, capsys: pytest.CaptureFixture[str], action: str, *options: str
    ) -> tuple[int, str, dict[str, dict[str, object]]]:
        report = self.dir / "report.json"
        report.unlink(missing_ok=True)
        argv = ["provision", action, str(self.inventory), *options, "--report", str(report)]
        code = main(argv)
        out = capsys.readouterr()
        data = json.loads(report.read_text())
        return code, out.out + out.err, {r["station"]: r for r in data["stations"]}


def _fleet(tmp: Path, keys: Keys, boots: dict[str, str], down: list[str]) -> Fleet:
    servers: dict[str, Sshd] = {}
    roots: dict[str, Path] = {}
    for index, (sid, boot) in enumerate(boots.items(), start=2):
        root = tmp / sid / "root"
        make_root(root, boot)
        servers[sid] = station_sshd(tmp / sid, index, keys, root)
        roots[sid] = root
    dead = {
        sid: (f"127.0.0.{200 + i}", free_port(f"127.0.0.{200 + i}")) for i, sid in enumerate(down)
    }
    trust = tmp / "issuers.jwks.json"
    trust.write_text(json.dumps({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]}))
    sec = {
        "password_file": tmp / "secrets" / "password",
        "ca_file": tmp / "secrets" / "ca.crt",
        "cert_file": tmp / "secrets" / "client.crt",
        "key_file": tmp / "secrets" / "client.key",
    }
    sec["password_file"].parent.mkdir()
    sec["password_file"].write_text(f"pw-{secrets.token_hex(12)}\n")
    sec["key_file"].write_text(
        f"-----BEGIN PRIVATE KEY-----\n{secrets.token_hex(32)}\n-----END PRIVATE KEY-----\n"
    )
    sec["ca_file"].write_text("-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n")
    sec["cert_file"].write_text("-----BEGIN CERTIFICATE-----\nME\n-----END CERTIFICATE-----\n")
    return Fleet(tmp, keys, servers, roots, dead, trust, sec, tmp / "fleet.toml")


@dataclass
class Applied:
    fleet: Fleet
    code: int
    output: str
    reports: dict[str, dict[str, object]]


@pytest.fixture(scope="module")
def applied(
    tmp_path_factory: pytest.TempPathFactory, keys: Keys, wheels: dict[str, Path]
) -> Iterator[Applied]:
    """Two live stations (new and old boot layout) and one that is switched off, applied once
    at the highest verbosity with diffs."""
    tmp = tmp_path_factory.mktemp("fleet")
    fleet = _fleet(tmp, keys, {"K01": "firmware", "K02": "legacy"}, down=["K09"])
    with running_sshds(list(fleet.servers.values())):
        fleet.write(wheels["1"])
        report = tmp / "first.json"
        # capsys is per test; this module-wide first run captures its output by hand.
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["-vv", "provision", "apply", str(fleet.inventory), "--diff",
                         "--report", str(report)])  # fmt: skip
        data = json.loads(report.read_text())
        yield Applied(fleet, code, out.getvalue() + err.getvalue(),
                      {r["station"]: r for r in data["stations"]})  # fmt: skip


def _mode(path: Path) -> tuple[str, int, int]:
    st = path.lstat()
    return oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid


def _gid(root: Path, group: str) -> int:
    for line in (root / "etc" / "group").read_text().splitlines():
        parts = line.split(":")
        if parts[0] == group:
            return int(parts[2])
    raise AssertionError(f"no group {group} in {root}")


def test_first_run_installs_everything_with_the_expected_modes(applied: Applied) -> None:
    assert applied.code == 1  # K09 is down
    for sid in ("K01", "K02"):
        r = applied.reports[sid]
        assert r["ok"] is True, r["errors"]
        assert r["status"] == "changed"
        root = applied.fleet.roots[sid]
        gid = _gid(root, "sampling")
        etc = root / "etc" / "sampling-station"
        assert _mode(etc) == ("0o750", 0, gid)
        assert _mode(etc / "station.toml") == ("0o640", 0, gid)
        assert _mode(etc / "issuers.jwks.json") == ("0o640", 0, gid)
        assert _mode(etc / "mqtt" / "password") == ("0o640", 0, gid)
        assert _mode(etc / "mqtt" / "client.key") == ("0o640", 0, gid)
        assert _mode(etc / "mqtt" / "client.crt") == ("0o644", 0, gid)
        units = root / "etc" / "systemd" / "system"
        assert _mode(units / "sampling-kiosk.service") == ("0o644", 0, 0)
        assert "WatchdogSec=30" in (units / "sampling-kiosk.service").read_text()
        assert (
            "RuntimeWatchdogSec=15"
            in (root / "etc/systemd/system.conf.d/sampling-station-watchdog.conf").read_text()
        )
        assert (
            "NTP=ntp.t01.example"
            in (root / "etc/systemd/timesyncd.conf.d/sampling-station.conf").read_text()
        )
        # The station file is the inventory's, with provisioning's paths, and it validates.
        cfg = tomllib.loads((etc / "station.toml").read_text())
        assert cfg["station"] == {"id": sid, "township": "T01"}
        assert cfg["broker"]["password_file"] == "/etc/sampling-station/mqtt/password"
        assert cfg["broker"]["username"] == sid
        assert (etc / "mqtt" / "password").read_text() == (
            applied.fleet.secrets["password_file"].read_text()
        )
        # The service user, with the device groups (missing ones created).
        group = (root / "etc" / "group").read_text()
        for g in ("video", "render", "input", "i2c", "gpio"):
            assert any(
                line.startswith(f"{g}:") and "sampling" in line.split(":")[3].split(",")
                for line in group.splitlines()
            ), g
        # The release, its venv and the current link (relative, so it works in any root).
        link = root / CURRENT
        assert link.is_symlink() and str(link.readlink()).startswith("releases/1.0.0-")
        assert (link / "venv" / "bin" / "station").exists()
        assert r["release_before"] is None and r["release_after"] == link.readlink().name
        assert r["selftest"]["passed"] is True  # type: ignore[index]
        # System commands: packages once, services restarted, exactly one reboot.
        log = calls(root)
        assert sum(c.startswith("apt-get install") for c in log) == 1
        assert sum(c.startswith("reboot") for c in log) == 1
        assert "systemctl restart sampling-agent.service sampling-kiosk.service" in log
        assert any(c.startswith("systemctl enable") and "systemd-time-wait-sync" in c for c in log)
        assert r["rebooted"] is True
        # The daily purge: its service and timer installed, the timer enabled and running.
        purge = (units / "sampling-purge.service").read_text()
        timer = (units / "sampling-purge.timer").read_text()
        assert _mode(units / "sampling-purge.service") == ("0o644", 0, 0)
        assert _mode(units / "sampling-purge.timer") == ("0o644", 0, 0)
        assert (
            "ExecStart=/opt/sampling-station/current/venv/bin/station db purge "
            "--config /etc/sampling-station/station.toml\n"
        ) in purge
        assert "User=sampling\n" in purge and "IOSchedulingClass=idle\n" in purge
        assert "OnCalendar=*-*-* 03:00:00\n" in timer and "Persistent=true\n" in timer
        enable = next(c for c in log if c.startswith("systemctl enable"))
        assert "sampling-purge.timer" in enable.split()
        assert "systemctl restart sampling-purge.timer" in log
        assert (root / ".fake" / "enabled" / "sampling-purge.timer").exists()
        assert (root / ".fake" / "active" / "sampling-purge.timer").exists()
        # Only the timer starts the purge; the deploy never does.
        assert not [c for c in log if "sampling-purge.service" in c]


def test_diffs_of_a_live_run_are_reported(applied: Applied) -> None:
    diffs = applied.reports["K01"]["diffs"]
    assert "+[station]" in diffs["/etc/sampling-station/station.toml"]  # type: ignore[index]
    assert "+dtparam=i2c_arm=on" in diffs["/boot/firmware/config.txt"]  # type: ignore[index]
    assert "+dtparam=i2c_arm=on" in applied.output


def test_boot_config_is_edited_in_both_layouts(applied: Applied) -> None:
    new = (applied.fleet.roots["K01"] / "boot/firmware/config.txt").read_text()
    old = (applied.fleet.roots["K02"] / "boot/config.txt").read_text()
    for text in (new, old):
        assert "dtparam=i2c_arm=on" in text
        assert text.startswith("# For more options")  # the original content is kept
        assert text.count("# BEGIN sampling-station") == 1
    assert not (applied.fleet.roots["K02"] / "boot/firmware").exists()


def test_a_station_that_is_down_is_reported_and_the_others_complete(applied: Applied) -> None:
    down = applied.reports["K09"]
    assert down["ok"] is False and down["status"] == "unreachable"
    assert "Could not connect" in " ".join(down["errors"])  # type: ignore[arg-type]
    assert [applied.reports[s]["ok"] for s in ("K01", "K02")] == [True, True]
    assert "2 of 3 stations ok" in applied.output


def test_no_secret_appears_in_the_output_even_at_the_highest_verbosity(
    applied: Applied, keys: Keys
) -> None:
    report_text = json.dumps(applied.reports)
    secrets_ = [
        applied.fleet.secrets["password_file"].read_text().strip(),
        applied.fleet.secrets["key_file"].read_text().splitlines()[1],
        keys.client_key.read_text().splitlines()[1],
    ]
    assert "Loaded fact" in applied.output or "DEBUG" in applied.output  # really verbose
    for secret in secrets_:
        assert secret not in applied.output
        assert secret not in report_text
    assert applied.reports["K01"]["diffs"]["/etc/sampling-station/mqtt/password"] == (  # type: ignore[index]
        "(secret: content not shown)"
    )


def test_second_run_changes_nothing(applied: Applied, capsys: pytest.CaptureFixture[str]) -> None:
    fleet = applied.fleet
    before = {sid: len(calls(root)) for sid, root in fleet.roots.items()}
    code, out, reports = fleet.run(capsys, "apply", "--limit", "K01,K02")
    assert code == 0, out
    for sid in ("K01", "K02"):
        assert reports[sid]["status"] == "unchanged"
        assert reports[sid]["changes"] == []
        new_calls = calls(fleet.roots[sid])[before[sid] :]
        assert all(" is-" in c or c.startswith("dpkg-query") for c in new_calls), new_calls
    assert "2 of 2 stations ok" in out


def test_dry_run_changes_nothing_and_shows_the_diff(
    applied: Applied, capsys: pytest.CaptureFixture[str], wheels: dict[str, Path]
) -> None:
    fleet = applied.fleet
    root = fleet.roots["K01"]
    station_toml = root / "etc/sampling-station/station.toml"
    before = station_toml.read_bytes()
    link_before = (root / CURRENT).readlink()
    n_calls = len(calls(root))
    fleet.write(wheels["2"], extra_station="config.sampling.pool_size = 5")
    try:
        code, out, reports = fleet.run(capsys, "apply", "--limit", "K01", "--dry")
    finally:
        fleet.write(wheels["1"])
    assert code == 0, out
    r = reports["K01"]
    assert r["dry"] is True and r["status"] == "changed"
    changed = [c["operation"] for c in r["changes"]]  # type: ignore[union-attr]
    assert "file /etc/sampling-station/station.toml" in changed
    assert any(c.startswith("release 2.0.0-") for c in changed)
    assert "-pool_size = 10" not in out  # the default was never written
    assert "+pool_size = 5" in out  # the diff is shown
    assert "would change: switch current" in out
    # ...and nothing changed on the station.
    assert station_toml.read_bytes() == before
    assert (root / CURRENT).readlink() == link_before
    assert not any("2.0.0" in p.name for p in (root / "opt/sampling-station/releases").iterdir())
    assert all(" is-" in c or c.startswith("dpkg-query") for c in calls(root)[n_calls:])


def test_unknown_or_changed_host_keys_are_refused(
    tmp_path: Path, keys: Keys, wheels: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = _fleet(tmp_path, keys, {"K11": "firmware", "K12": "firmware"}, down=[])
    impostor = generate_keys(tmp_path / "impostor")
    with running_sshds(list(fleet.servers.values())):
        k12 = fleet.servers["K12"]
        # K11 is not in known_hosts at all; K12 is pinned to a different key.
        pinned = f"[{k12.address}]:{k12.port} {impostor.host_key_type} {impostor.host_public}\n"
        fleet.write(wheels["1"], known_hosts=pinned)
        code, _, reports = fleet.run(capsys, "apply")
    assert code == 1
    for sid in ("K11", "K12"):
        assert reports[sid]["status"] == "unreachable"
        assert "refused" in reports[sid]["errors"][0]  # type: ignore[index]
        assert calls(fleet.roots[sid]) == []  # not one command ran
        assert not (fleet.roots[sid] / "etc/sampling-station").exists()
    assert "not pinned" in reports["K11"]["errors"][0]  # type: ignore[index]
    assert "does not match" in reports["K12"]["errors"][0]  # type: ignore[index]


def test_failed_health_check_rolls_back_and_releases_are_kept_three(
    tmp_path: Path, keys: Keys, wheels: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = _fleet(tmp_path, keys, {"K21": "firmware"}, down=[])
    root = fleet.roots["K21"]
    releases = root / "opt/sampling-station/releases"
    with running_sshds(list(fleet.servers.values())):
        for wheel in ("1", "2"):
            fleet.write(wheels[wheel])
            code, out, _ = fleet.run(capsys, "apply")
            assert code == 0, out
        good = (root / CURRENT).readlink().name
        assert good.startswith("2.0.0-")

        fleet.write(wheels["bad"])
        code, out, reports = fleet.run(capsys, "apply")
        r = reports["K21"]
        assert code == 1
        assert r["status"] == "rolled-back" and r["rolled_back"] is True
        assert r["release_before"] == good and r["release_after"] == good
        assert "health check failed on release 9.0.0-" in r["errors"][0]  # type: ignore[index]
        assert (root / CURRENT).readlink().name == good  # the previous release runs again
        assert r["selftest"]["passed"] is True  # type: ignore[index]
        assert calls(root)[-1].startswith("systemctl is-active")
        assert (
            calls(root).count("systemctl restart sampling-agent.service sampling-kiosk.service")
            >= 4
        )

        assert (releases / r["release_before"] / ".failed").exists() is False  # type: ignore[operator]
        assert any(
            (d / ".failed").exists() and d.name.startswith("9.0.0-") for d in releases.iterdir()
        )

        # A fourth release: the last three stay; the one that failed goes first.
        fleet.write(wheels["3"])
        code, out, reports = fleet.run(capsys, "apply")
        assert code == 0, out
        names = sorted(p.name.split("-")[0] for p in releases.iterdir())
        assert names == ["1.0.0", "2.0.0", "3.0.0"]

        # By hand: back to the release before the current one, twice.
        for expected in ("2.0.0-", "1.0.0-"):
            code, out, reports = fleet.run(capsys, "rollback")
            assert code == 0, out
            assert (root / CURRENT).readlink().name.startswith(expected)
            assert reports["K21"]["release_after"] == (root / CURRENT).readlink().name
        code, out, reports = fleet.run(capsys, "rollback")
        assert code == 1 and "no release before 1.0.0-" in out


def test_an_sd_card_image_is_prepared_offline(
    tmp_path: Path,
    wheels: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A card mounted on this machine (`address = "@local"`, a `root`): files, user, enabled
    units and the boot block are written; nothing is started, installed or rebooted."""
    card = tmp_path / "card"
    make_root(card, "firmware")
    write_fakes(tmp_path / "fakes", card)
    monkeypatch.setenv("PATH", f"{tmp_path / 'fakes'}:{os.environ['PATH']}")
    (tmp_path / "known_hosts").write_text("")
    (tmp_path / "trust.json").write_text('{"keys": []}')
    inventory = tmp_path / "fleet.toml"
    inventory.write_text(
        "[fleet]\n"
        'known_hosts = "known_hosts"\n'
        'trust_file = "trust.json"\n'
        f"release = {{ artifact = {json.dumps(str(wheels['1']))} }}\n"
        "[[station]]\n"
        'id = "K31"\n'
        'township = "T01"\n'
        'address = "@local"\n'
        'root = "card"\n'
        'config = { broker = { url = "mqtts://gw.t01.example:8883" } }\n'
    )
    report = tmp_path / "report.json"
    for run in ("first", "second"):
        code = main(["provision", "apply", str(inventory), "--report", str(report)])
        out = capsys.readouterr().out
        assert code == 0, out
        r = json.loads(report.read_text())["stations"][0]
        if run == "first":
            assert r["status"] == "changed"
            assert "image mode" in r["notes"][0]
        else:
            assert r["status"] == "unchanged" and r["changes"] == []
    gid = _gid(card, "sampling")
    assert _mode(card / "etc/sampling-station/station.toml") == ("0o640", 0, gid)
    for unit in ("sampling-purge.service", "sampling-purge.timer"):
        assert _mode(card / "etc/systemd/system" / unit) == ("0o644", 0, 0)
    assert "# BEGIN sampling-station" in (card / "boot/firmware/config.txt").read_text()
    log = calls(card)
    assert (
        f"systemctl --root={card} enable sampling-agent.service sampling-kiosk.service "
        "sampling-purge.timer systemd-timesyncd.service systemd-time-wait-sync.service"
    ) in log
    assert any(c.startswith(f"useradd --root {card} ") for c in log)
    assert not [c for c in log if c.split()[0] in ("reboot", "apt-get") or " restart " in c]
    assert not (card / "opt/sampling-station/current").exists()


def test_a_failed_step_is_reported_and_the_next_run_completes(
    tmp_path: Path, keys: Keys, wheels: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = _fleet(tmp_path, keys, {"K41": "firmware", "K42": "firmware"}, down=[])
    broken = fleet.roots["K41"] / ".fake" / "apt-broken"
    broken.parent.mkdir(parents=True)
    broken.touch()
    with running_sshds(list(fleet.servers.values())):
        fleet.write(wheels["1"])
        code, out, reports = fleet.run(capsys, "apply")
        assert code == 1
        assert reports["K41"]["status"] == "failed"
        assert reports["K41"]["errors"] == [
            "packages: E: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease"
        ]
        assert not (fleet.roots["K41"] / "etc/sampling-station").exists()  # stopped there
        assert reports["K42"]["ok"] is True
        assert "K41: packages: E: Failed to fetch" in out

        broken.unlink()  # the mirror is back: the same command finishes the job
        code, out, reports = fleet.run(capsys, "apply")
        assert code == 0, out
        assert reports["K41"]["status"] == "changed" and reports["K42"]["status"] == "unchanged"
        assert (fleet.roots["K41"] / CURRENT).is_symlink()


def _tree(root: Path, same_as: tuple[str, str]) -> dict[str, tuple[object, ...]]:
    """Every path under a station's root with its kind, mode and owner, and the content of
    each file outside the releases (whose virtual environments name their own paths); the
    other station's id reads as ``same_as[1]``."""
    out: dict[str, tuple[object, ...]] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if rel == ".fake" or rel.startswith(".fake/"):
            continue
        st = path.lstat()
        entry: tuple[object, ...] = (stat.S_IFMT(st.st_mode), oct(stat.S_IMODE(st.st_mode)),
                                     st.st_uid, st.st_gid)  # fmt: skip
        if path.is_symlink():
            entry += (str(path.readlink()),)
        elif path.is_file() and not rel.startswith("opt/sampling-station/releases/"):
            body = path.read_bytes().replace(same_as[0].encode(), same_as[1].encode())
            entry += (hashlib.sha256(body).hexdigest(),)
        out[rel] = entry
    return out


@pytest.mark.skipif(
    os.geteuid() != 0,
    reason="creating a login user and a sudoers drop-in needs root (CI runs the tests as root)",
)
def test_a_non_root_ssh_user_with_sudo_gets_the_same_station_as_root(
    tmp_path: Path, keys: Keys, wheels: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """K51 is provisioned logging in as root, K52 as a user with passwordless sudo (as `pi`
    on Raspberry Pi OS), K53 as a user whose sudo asks for a password: refused, with why."""
    assert shutil.which("sudo") is not None, "sudo is not installed (scripts/setup installs it)"
    fleet = _fleet(tmp_path, keys, {"K51": "firmware", "K52": "firmware", "K53": "firmware"},
                   down=[])  # fmt: skip
    with contextlib.ExitStack() as stack:
        pi = stack.enter_context(sudo_user(keys.client_public, [fakes_dir(tmp_path / "K52")]))
        asks = stack.enter_context(
            sudo_user(keys.client_public, [fakes_dir(tmp_path / "K53")], nopasswd=False)
        )
        stack.enter_context(running_sshds(list(fleet.servers.values())))
        fleet.write(
            wheels["1"],
            per_station={"K52": f'user = "{pi.name}"', "K53": f'user = "{asks.name}"'},
        )
        code, out, reports = fleet.run(capsys, "apply")
        assert code == 1, out  # K53
        assert reports["K51"]["ok"] is True, reports["K51"]["errors"]
        assert reports["K52"]["ok"] is True, reports["K52"]["errors"]
        # The same operations, release, health check and calls of the system commands...
        for field_ in ("status", "release_after", "services", "rebooted"):
            assert reports["K52"][field_] == reports["K51"][field_], field_
        ops = [[c["operation"] for c in reports[s]["changes"]] for s in ("K51", "K52")]  # type: ignore[union-attr]
        assert ops[0] == ops[1] and len(ops[0]) > 10
        assert reports["K52"]["selftest"]["passed"] is True  # type: ignore[index]
        root51, root52 = fleet.roots["K51"], fleet.roots["K52"]
        assert [c.replace("K52", "K51") for c in calls(root52)] == calls(root51)
        # ...and the same files, modes, owners and contents: nothing left to the SSH user.
        tree51, tree52 = _tree(root51, ("K51", "K51")), _tree(root52, ("K52", "K51"))
        assert tree52 == tree51
        uid = pwd.getpwnam(pi.name).pw_uid
        assert [p for p, e in tree52.items() if uid in e[2:4]] == []
        assert (root52 / "etc/systemd/system/sampling-purge.timer").exists()

        # K53: sudo would ask for a password; the run stops before changing anything.
        r53 = reports["K53"]
        assert r53["status"] == "failed" and r53["changes"] == []
        assert (
            f"the SSH user {asks.name} cannot run commands with sudo without a password"
            in (
                r53["errors"][0]  # type: ignore[index]
            )
        )
        assert "NOPASSWD" in r53["errors"][0]  # type: ignore[index]
        assert calls(fleet.roots["K53"]) == []
        assert not (fleet.roots["K53"] / "etc/sampling-station").exists()

        # Through sudo, the second run reads every fact right and changes nothing.
        before = len(calls(root52))
        code, out, reports = fleet.run(capsys, "apply", "--limit", "K52")
        assert code == 0, out
        assert reports["K52"]["status"] == "unchanged" and reports["K52"]["changes"] == []
        assert all(" is-" in c or c.startswith("dpkg-query") for c in calls(root52)[before:])
    # The throwaway users and their sudoers drop-ins are gone.
    for user in (pi, asks):
        with pytest.raises(KeyError):
            pwd.getpwnam(user.name)
        assert not user.sudoers.exists() and not user.home.exists()
