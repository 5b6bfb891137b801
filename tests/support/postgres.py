"""A real PostgreSQL cluster for the tests: ``initdb`` in a temporary directory, its own port.

``PgCluster`` makes a cluster with Debian's server binaries (``/usr/lib/postgresql/*/bin``),
listening on a free loopback port with its unix socket in the cluster's own directory, so the
packaged system cluster never matters. PostgreSQL refuses to run as root: when the tests run as
root the cluster belongs to the unprivileged ``postgres`` user (or ``nobody``) and every server
command runs through ``runuser``. ``stop()`` and ``start()`` take the server away and bring it
back on the same port (what the gateway's "database gone" test needs).

The ``pg_cluster`` fixture is one cluster for the session; ``pg_url`` gives each test a fresh
database (``CREATE DATABASE``) and drops it afterwards.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.ports import free_port, wait_for_port

SUPERUSER = "postgres"


def server_bin(name: str) -> str:
    """The path of a PostgreSQL server program (initdb, pg_ctl), newest version first."""
    for directory in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (directory / name).exists():
            return str(directory / name)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found: install Debian's postgresql (scripts/setup)")
    return found


def _owner() -> pwd.struct_passwd | None:
    """The user the server runs as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and there is no unprivileged user to run PostgreSQL")


class PgCluster:
    """One PostgreSQL server in a directory of its own; stopped and removed by ``close()``."""

    def __init__(self, *, fsync: bool = False, settings: dict[str, str] | None = None) -> None:
        self.owner = _owner()
        # Not under pytest's tmp_path: that is private to root, and the server runs as another user.
        self.dir = Path(tempfile.mkdtemp(prefix="pg-cluster-"))
        self.dir.chmod(0o755)
        self.data = self.dir / "data"
        self.port = free_port()
        self.log = self.dir / "server.log"
        self.fsync = fsync  # off for tests: the machine does not lose power in a test
        self.settings = settings or {}
        if self.owner is not None:
            os.chown(self.dir, self.owner.pw_uid, self.owner.pw_gid)
        self._run(
            server_bin("initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
            "--no-sync",
        )
        self.running = False

    def _run(self, *argv: str) -> None:
        cmd = list(argv)
        if self.owner is not None:
            cmd = ["runuser", "-u", self.owner.pw_name, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=self.dir)
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv[:2])} failed ({done.returncode}): {done.stderr or done.stdout}"
                + (f"\n{self.log.read_text()[-2000:]}" if self.log.exists() else "")
            )

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self.dir}",
            f"-c fsync={'on' if self.fsync else 'off'}",
            "-c max_connections=200",
            *(f"-c {k}={v}" for k, v in self.settings.items()),
        ]
        self._run(
            server_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "-o",
            " ".join(options),
            "start",
        )
        self.running = True
        wait_for_port(self.port)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: clients are disconnected; ``immediate``: a crash)."""
        if self.running:
            self._run(server_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")
            self.running = False

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


_names = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One real PostgreSQL server for the whole session."""
    with PgCluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    """A fresh, empty database on the session's server, dropped after the test."""
    name = f"test_{os.getpid()}_{next(_names)}"
    url = pg_cluster.create_database(name)
    try:
        yield url
    finally:
        if pg_cluster.running:
            pg_cluster.drop_database(name)
