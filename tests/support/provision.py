"""Stations for deploy tests: a filesystem root per station, fake system commands, a fleet.

Each station is a real sshd on its own loopback address whose ``PATH`` starts with that
station's fake ``systemctl``, ``reboot``, ``apt-get``/``dpkg-query``, ``useradd``/``groupadd``/
``usermod`` and ``udevadm``. The fakes behave like the real commands as far as a deploy can
see (enabled units stay enabled, installed packages stay installed, a reboot empties /run)
and append every call to ``<root>/.fake/calls.log``.

Releases are small wheels built here: their ``station`` command answers ``selftest --json``
with a pass or, for a release built ``healthy=False``, a failure.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioning.inventory import Inventory, parse_inventory
from tests.support.sshd import Keys, Sshd

SYSTEM_PYTHON = "/usr/bin/python3"

PI_CONFIG_TXT = """\
# For more options and information see
# http://rptl.io/configtxt
dtparam=audio=on
camera_auto_detect=1
display_auto_detect=1
auto_initramfs=1
dtoverlay=vc4-kms-v3d
max_framebuffers=2
disable_fw_kms_setup=1
arm_64bit=1

[cm4]
otg_mode=1

[all]
"""

_FAKE = r"""#!{python}
# Fake `{name}` of a test station rooted at {root}: records the call, behaves like the real one.
import os, sys
ROOT = {root!r}
NAME = {name!r}
FAKE = os.path.join(ROOT, ".fake")
os.makedirs(FAKE, exist_ok=True)
args = sys.argv[1:]
with open(os.path.join(FAKE, "calls.log"), "a") as log:
    log.write(" ".join([NAME, *args]) + "\n")

def state(kind):
    d = os.path.join(FAKE, kind)
    os.makedirs(d, exist_ok=True)
    return d

def opt(args, name):
    for i, a in enumerate(args):
        if a == name:
            return args[i + 1], args[:i] + args[i + 2:]
        if a.startswith(name + "="):
            return a.split("=", 1)[1], args[:i] + args[i + 1:]
    return None, args

def read(path):
    try:
        with open(path) as f:
            return [l.rstrip("\n") for l in f if l.strip()]
    except FileNotFoundError:
        return []

def write(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("".join(l + "\n" for l in lines))

if NAME == "systemctl":
    _, args = opt(args, "--root")
    verb, units = args[0], args[1:]
    enabled, active = state("enabled"), state("active")
    if verb == "is-enabled":
        on = os.path.exists(os.path.join(enabled, units[0]))
        print("enabled" if on else "disabled")
        sys.exit(0 if on else 1)
    if verb == "is-active":
        code = 0
        for u in units:
            on = os.path.exists(os.path.join(active, u))
            print("active" if on else "inactive")
            code = code if on else 3
        sys.exit(code)
    if verb == "enable":
        for u in units:
            open(os.path.join(enabled, u), "w").close()
    if verb in ("start", "restart"):
        for u in units:
            open(os.path.join(active, u), "w").close()
    sys.exit(0)

if NAME == "reboot":
    run = os.path.join(ROOT, "run", "sampling-station")
    for f in os.listdir(run) if os.path.isdir(run) else []:
        os.remove(os.path.join(run, f))
    sys.exit(0)

if NAME == "apt-get":
    if os.path.exists(os.path.join(FAKE, "apt-broken")):  # a mirror that went away
        print("E: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease",
              file=sys.stderr)
        sys.exit(100)
    if "install" in args:
        pkgs = [a for a in args[args.index("install") + 1:] if not a.startswith("-")]
        path = os.path.join(FAKE, "dpkg-installed")
        write(path, sorted(set(read(path)) | set(pkgs)))
    sys.exit(0)

if NAME == "dpkg-query":
    installed = set(read(os.path.join(FAKE, "dpkg-installed")))
    for p in [a for a in args if not a.startswith("-")]:
        if p in installed:
            print(p + "\tinstalled")
    sys.exit(0)

if NAME in ("groupadd", "useradd", "usermod"):
    root, args = opt(args, "--root")
    root = root or "/"
    passwd, group = os.path.join(root, "etc/passwd"), os.path.join(root, "etc/group")
    users, groups = read(passwd), read(group)
    name = args[-1]
    def next_id(lines):
        ids = [int(l.split(":")[2]) for l in lines]
        return max([999] + [i for i in ids if 999 < i < 60000]) + 1
    def add_members(names, user):
        out = []
        for l in groups:
            p = l.split(":")
            if p[0] in names:
                members = [m for m in p[3].split(",") if m]
                if user not in members:
                    members.append(user)
                p[3] = ",".join(members)
            out.append(":".join(p))
        return out
    members, _ = opt(args, "--groups")
    if NAME == "groupadd":
        if any(l.split(":")[0] == name for l in groups):
            print("groupadd: group '%s' already exists" % name, file=sys.stderr)
            sys.exit(9)
        write(group, groups + ["%s:x:%d:" % (name, next_id(groups))])
    elif NAME == "useradd":
        if any(l.split(":")[0] == name for l in users):
            print("useradd: user '%s' already exists" % name, file=sys.stderr)
            sys.exit(9)
        gid = next_id(groups)
        groups.append("%s:x:%d:" % (name, gid))
        home, _ = opt(args, "--home-dir")
        users.append("%s:x:%d:%d::%s:/usr/sbin/nologin" % (name, next_id(users), gid, home))
        write(passwd, users)
        write(group, add_members((members or "").split(","), name))
    else:
        write(group, add_members((members or "").split(","), name))
    sys.exit(0)

sys.exit(0)  # udevadm and anything else: recorded only
"""

FAKE_COMMANDS = (
    "systemctl",
    "reboot",
    "apt-get",
    "dpkg-query",
    "groupadd",
    "useradd",
    "usermod",
    "udevadm",
    "raspi-config",
)


def write_fakes(bin_dir: Path, root: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in FAKE_COMMANDS:
        path = bin_dir / name
        path.write_text(_FAKE.format(python=sys.executable, name=name, root=str(root)))
        path.chmod(0o755)


def make_root(root: Path, boot: str | None = "firmware") -> None:
    """A freshly flashed card as far as the deploy can tell: accounts and a config.txt."""
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    # `i2c` and `gpio` are missing here, as on a plain Debian machine.
    (root / "etc" / "group").write_text("root:x:0:\nvideo:x:44:\ninput:x:101:\nrender:x:105:\n")
    if boot == "firmware":
        (root / "boot" / "firmware").mkdir(parents=True)
        (root / "boot" / "firmware" / "config.txt").write_text(PI_CONFIG_TXT)
    elif boot == "legacy":
        (root / "boot").mkdir(parents=True)
        (root / "boot" / "config.txt").write_text(PI_CONFIG_TXT)


def calls(root: Path) -> list[str]:
    path = root / ".fake" / "calls.log"
    return path.read_text().splitlines() if path.exists() else []


def build_release_wheel(directory: Path, version: str, healthy: bool = True) -> Path:
    """A pure-Python wheel whose `station` command passes (or fails) its self-test."""
    directory.mkdir(parents=True, exist_ok=True)
    dist = "sampling_station"
    info = f"{dist}-{version}.dist-info"
    module = (
        "import json, sys\n"
        f"VERSION = {version!r}\nHEALTHY = {healthy!r}\n"
        "def main():\n"
        "    args = sys.argv[1:]\n"
        "    if args[:1] == ['selftest']:\n"
        "        status = 'pass' if HEALTHY else 'fail'\n"
        "        print(json.dumps({'ok': HEALTHY, 'version': VERSION, 'checks': [\n"
        "            {'name': 'storage', 'status': status, 'detail': 'test release'}]}))\n"
        "        return 0 if HEALTHY else 1\n"
        "    print('station', VERSION)\n"
        "    return 0\n"
    )
    files = {
        "fake_station/__init__.py": module.encode(),
        f"{info}/METADATA": (
            f"Metadata-Version: 2.1\nName: sampling-station\nVersion: {version}\n"
        ).encode(),
        f"{info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"{info}/entry_points.txt": b"[console_scripts]\nstation = fake_station:main\n",
        f"{info}/top_level.txt": b"fake_station\n",
    }
    record = io.StringIO()
    for name, body in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()
        record.write(f"{name},sha256={digest},{len(body)}\n")
    record.write(f"{info}/RECORD,,\n")
    files[f"{info}/RECORD"] = record.getvalue().encode()
    path = directory / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, body in files.items():
            zf.writestr(name, body)
    return path


@dataclass
class TestStation:
    id: str
    root: Path
    sshd: Sshd


SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def fakes_dir(workdir: Path) -> Path:
    """Where :func:`station_sshd` puts a station's fake system commands."""
    return workdir / "fakes"


def station_sshd(workdir: Path, index: int, keys: Keys, root: Path) -> Sshd:
    fakes = fakes_dir(workdir)
    write_fakes(fakes, root)
    return Sshd(
        workdir / "sshd",
        f"127.0.0.{index}",
        keys,
        env={"PATH": f"{fakes}:{SYSTEM_PATH}"},
        user_authorized_keys=("%h/.ssh/authorized_keys",),
    )


@dataclass(frozen=True)
class SudoUser:
    name: str
    home: Path
    sudoers: Path


def _run(*argv: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.returncode}")


@contextmanager
def sudo_user(
    client_public_key: str, path: Sequence[Path], *, nopasswd: bool = True
) -> Iterator[SudoUser]:
    """A throwaway login user of this machine with sudo, as on a Raspberry Pi (``pi``).

    Its home is a fresh directory under the system's temporary directory (the tests' own
    directories are root's alone), with ``client_public_key`` authorized. A drop-in in
    /etc/sudoers.d lets it run anything as root, without a password when ``nopasswd``, with
    ``path`` first on the ``PATH`` sudo gives commands (a test station's fakes). The user, its
    home and the drop-in are removed on the way out, whatever happened. Needs root.
    """
    name = f"sshtest{secrets.token_hex(4)}"
    home = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    # No dot in the name: sudo ignores drop-ins whose names contain one.
    sudoers = Path("/etc/sudoers.d") / f"sampling-station-test-{name}"
    draft = sudoers.with_name(sudoers.name + ".draft")  # ignored by sudo until renamed
    created = False
    try:
        home.chmod(0o755)
        # `*` as its password: no password login, but not a locked account (sshd refuses those).
        _run("useradd", "--home-dir", str(home), "--no-create-home", "--shell", "/bin/sh",
             "--password", "*", "--user-group", name)  # fmt: skip
        created = True
        ssh = home / ".ssh"
        ssh.mkdir(mode=0o700)
        (ssh / "authorized_keys").write_text(client_public_key + "\n")
        (ssh / "authorized_keys").chmod(0o600)
        shutil.chown(home, name, name)
        shutil.chown(ssh, name, name)
        shutil.chown(ssh / "authorized_keys", name, name)
        secure_path = ":".join([*(str(p) for p in path), SYSTEM_PATH])
        tag = "NOPASSWD: " if nopasswd else ""
        draft.write_text(
            f'Defaults:{name} secure_path="{secure_path}"\n{name} ALL=(ALL:ALL) {tag}ALL\n'
        )
        draft.chmod(0o440)
        _run("visudo", "--check", "--quiet", "--file", str(draft))  # never break sudo itself
        os.replace(draft, sudoers)
        yield SudoUser(name, home, sudoers)
    finally:
        draft.unlink(missing_ok=True)
        sudoers.unlink(missing_ok=True)
        try:
            if created:
                _run("userdel", "--force", name)
        finally:
            shutil.rmtree(home, ignore_errors=True)


def inventory_text(
    *,
    known_hosts: Path,
    trust_file: Path,
    artifact: Path,
    keys: Keys,
    stations: list[tuple[str, str, int, Path]],
    mqtt: dict[str, Path] | None = None,
    extra_station: str = "",
    per_station: dict[str, str] | None = None,
) -> str:
    """An inventory for test stations: (id, address, port, root) each, live mode, logged in
    as root unless ``per_station`` gives a station lines of its own (``user = ...``)."""
    lines = [
        "[fleet]",
        f"known_hosts = {json.dumps(str(known_hosts))}",
        f"trust_file = {json.dumps(str(trust_file))}",
        "",
        "[fleet.release]",
        f"artifact = {json.dumps(str(artifact))}",
        f"python = {json.dumps(SYSTEM_PYTHON)}",
        'pip_options = ["--no-deps", "--no-index"]',
        "",
        "[fleet.defaults]",
        'user = "root"',
        f"key = {json.dumps(str(keys.client_key))}",
        'mode = "live"',
        "health_settle_s = 0",
        "reboot_delay_s = 0.2",
        "reboot_timeout_s = 20",
        "connect_timeout_s = 3",
        'ntp = ["ntp.t01.example"]',
        "",
        "[fleet.defaults.config.broker]",
        'url = "mqtts://gateway.t01.example:8883"',
        "",
        "[fleet.defaults.config.hardware]",
        'backend = "pi"',
    ]
    for sid, address, port, root in stations:
        lines += [
            "",
            "[[station]]",
            f'id = "{sid}"',
            'township = "T01"',
            f'address = "{address}"',
            f"port = {port}",
            f"root = {json.dumps(str(root))}",
        ]
        if extra_station:
            lines.append(extra_station)
        if per_station and sid in per_station:
            lines.append(per_station[sid])
        if mqtt:
            lines.append("[station.mqtt]")
            lines += [f"{k} = {json.dumps(str(v))}" for k, v in mqtt.items()]
            if "password_file" in mqtt:
                lines.append(f'username = "{sid}"')
    return "\n".join(lines) + "\n"


def env_without_pythonpath() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def offline_inventory(
    directory: Path, station: dict[str, Any], defaults: dict[str, Any] | None = None
) -> Inventory:
    """A one-station inventory whose files exist only as placeholders: for tests that plan or
    render without connecting anywhere."""
    for name in ("known_hosts", "key", "s-1.0.0-py3-none-any.whl"):
        (directory / name).write_text("x")
    (directory / "trust.json").write_text(json.dumps({"keys": []}))
    fleet: dict[str, Any] = {
        "known_hosts": "known_hosts",
        "trust_file": "trust.json",
        "release": {"artifact": "s-1.0.0-py3-none-any.whl"},
    }
    if defaults is not None:
        fleet["defaults"] = defaults
    data = {"fleet": fleet, "station": [station]}
    return parse_inventory(data, directory, str(directory / "fleet.toml"))
