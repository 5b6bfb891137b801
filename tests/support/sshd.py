"""Real OpenSSH servers on loopback addresses (127.0.0.2, 127.0.0.3, ...) for deploy tests.

Each server gets its own address, port, authorized key and environment (``SetEnv``), so a
test can run a fleet of "stations" on one machine: the fake ``systemctl``, ``reboot`` and
``apt-get`` of each station come first on that station's ``PATH``. The host key is generated
once per test session and thrown away with it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.ports import free_port, wait_for_port

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"


@dataclass(frozen=True)
class Keys:
    """A host key pair (the server's) and a client key pair (the technician's)."""

    host_key: Path
    client_key: Path

    @property
    def host_public(self) -> str:
        return self.host_key.with_suffix(".pub").read_text().split()[0:2][1]

    @property
    def host_key_type(self) -> str:
        return self.host_key.with_suffix(".pub").read_text().split()[0]

    @property
    def client_public(self) -> str:
        return self.client_key.with_suffix(".pub").read_text().strip()


def generate_keys(directory: Path) -> Keys:
    directory.mkdir(parents=True, exist_ok=True)
    host, client = directory / "host_ed25519", directory / "client_ed25519"
    for path in (host, client):
        if not path.exists():
            subprocess.run(
                [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(path)],
                check=True,
            )
    return Keys(host, client)


@dataclass
class Sshd:
    workdir: Path
    address: str
    keys: Keys
    env: dict[str, str] = field(default_factory=dict)
    # Further AuthorizedKeysFile entries, e.g. "%h/.ssh/authorized_keys": sshd reads them as
    # the user logging in, who (unlike root) cannot read this server's own file.
    user_authorized_keys: tuple[str, ...] = ()
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def known_hosts_line(self) -> str:
        return f"[{self.address}]:{self.port} {self.keys.host_key_type} {self.keys.host_public}"

    def start(self) -> None:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation directory
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port(self.address)
        authorized = self.workdir / "authorized_keys"
        authorized.write_text(self.keys.client_public + "\n")
        authorized.chmod(0o600)
        setenv = " ".join(f'"{k}={v}"' for k, v in self.env.items())
        conf = self.workdir / "sshd_config"
        conf.write_text(
            f"ListenAddress {self.address}:{self.port}\n"
            f"HostKey {self.keys.host_key}\n"
            f"PidFile {self.workdir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {' '.join([str(authorized), *self.user_authorized_keys])}\n"
            "PermitRootLogin prohibit-password\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "PrintMotd no\n"
            "MaxSessions 50\n"
            "MaxStartups 100\n"
            "LogLevel ERROR\n"
            "Subsystem sftp internal-sftp\n" + (f"SetEnv {setenv}\n" if setenv else "")
        )
        log = (self.workdir / "sshd.log").open("ab")
        with log:
            self.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(conf)], stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_for_port(self.port, self.address)
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@contextmanager
def running_sshds(servers: list[Sshd]) -> Iterator[list[Sshd]]:
    started: list[Sshd] = []
    try:
        for server in servers:
            server.start()
            started.append(server)
        yield servers
    finally:
        for server in started:
            server.stop()


def dead_address(index: int = 250) -> tuple[str, int]:
    """A loopback address and port where nothing listens (a station that is switched off)."""
    address = f"127.0.0.{index}"
    port = free_port(address)
    return address, port
