"""A real Mosquitto broker on a free loopback port, started and stopped by the test.

Options for the edge agent's reliability tests: a TLS listener (certificates from
``tests.support.certs``), an ACL file, persistence on or off, a restart on the same port,
a hard kill (what a crash or power cut does: nothing saved), and freezing with SIGSTOP.
Drills and the self-test use it plainly through ``running_broker`` and the ``broker``
fixture.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_port, wait_for_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@dataclass(frozen=True)
class BrokerTls:
    cafile: Path
    certfile: Path
    keyfile: Path
    require_certificate: bool = True
    use_identity_as_username: bool = True


class Broker:
    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        extra_conf: str = "",
        *,
        tls: BrokerTls | None = None,
        acl_file: Path | None = None,
        persistence: bool = False,
        allow_anonymous: bool = True,
        raw_conf: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.extra_conf = extra_conf
        self.tls = tls
        self.acl_file = acl_file
        self.persistence = persistence
        self.allow_anonymous = allow_anonymous
        self.raw_conf = raw_conf  # a complete configuration (e.g. a rendered template)
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def write_conf(self) -> None:
        if self.raw_conf is not None:
            root = "\nuser root\n" if hasattr(os, "geteuid") and os.geteuid() == 0 else "\n"
            self.conf.write_text(self.raw_conf + root)
            return
        lines = [f"listener {self.port} 127.0.0.1"]
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.cafile}",
                f"certfile {self.tls.certfile}",
                f"keyfile {self.tls.keyfile}",
                f"require_certificate {str(self.tls.require_certificate).lower()}",
                f"use_identity_as_username {str(self.tls.use_identity_as_username).lower()}",
            ]
        lines.append(f"allow_anonymous {str(self.allow_anonymous).lower()}")
        if self.acl_file is not None:
            lines.append(f"acl_file {self.acl_file}")
        lines += [
            f"persistence {str(self.persistence).lower()}",
            f"persistence_location {self.workdir}/",
            # Never drop a QoS 1 message because a test's consumer is slow to read it.
            "max_queued_messages 1000000",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # As root Mosquitto drops to the 'mosquitto' user, which cannot write to the
            # test's private directory; stay root here (tests only).
            lines.append("user root")
        self.conf.write_text("\n".join(lines) + "\n" + self.extra_conf)

    def start(self) -> None:
        self.write_conf()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
            )
        wait_for_port(self.port)

    def stop(self) -> None:
        """Stop cleanly (a persistent broker saves its sessions and queued messages)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: everything the broker held only in memory is gone."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self, *, persistence: bool | None = None) -> None:
        """Stop and start again on the same port (optionally with persistence changed)."""
        self.stop()
        if persistence is not None:
            self.persistence = persistence
        self.start()

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextmanager
def running_broker(workdir: Path, extra_conf: str = "", **options: object) -> Iterator[Broker]:
    broker = Broker(workdir, extra_conf=extra_conf, **options)  # type: ignore[arg-type]
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
