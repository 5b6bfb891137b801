"""Helpers for the edge agent's tests: configs, realistic events, an agent in a thread."""

from __future__ import annotations

import errno
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edge_agent import outbox
from edge_agent.agent import Agent, build
from edge_agent.db import Database, open_db, write_transaction
from edge_agent.gateway import Gateway, Intake, open_store, subscriptions
from edge_agent.link import LinkSettings
from firmware.config import StationConfig, load_config
from tests.support.config import write_config

ROOT = Path(__file__).resolve().parents[2]


def station_config(
    directory: Path,
    url: str,
    station: str = "K03",
    township: str = "T01",
    storage: Path | None = None,
    min_free_mb: int = 0,
    **broker: Any,
) -> tuple[Path, StationConfig]:
    """A configuration file in ``directory``; the database there too unless ``storage``.

    ``min_free_mb`` is 0 (no ``storage_low`` alert) unless a test is about that alert: the
    small file systems of the full-disk tests would raise it, and it is an event.
    """
    b: dict[str, Any] = {
        "url": url,
        "allow_plaintext": url.startswith("mqtt://"),
        "keepalive_s": 5,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 1.0,
        "telemetry_interval_s": 3600.0,
    }
    b.update({k: str(v) if isinstance(v, Path) else v for k, v in broker.items()})
    path = write_config(
        directory,
        {
            "station": {"id": station, "township": township},
            "broker": b,
            "storage": {
                "path": str(storage or directory / "station.db"),
                "min_free_mb": min_free_mb,
            },
        },
    )
    return path, load_config(path)


def station_db(config: StationConfig) -> Database:
    db = open_db(config.storage.path)
    outbox.install(db)
    return db


def produce(db: Database, source: str, n: int, per_transaction: int = 1) -> list[dict[str, Any]]:
    """Append ``n`` realistic events (residents added to pooled tubes, tubes sealed)."""
    out: list[dict[str, Any]] = []
    done = 0
    while done < n:
        with write_transaction(db) as conn:
            for _ in range(min(per_transaction, n - done)):
                i = len(out)
                tube = f"T{i // 10:07d}"
                if i % 10 == 9:
                    ev = outbox.append(
                        conn,
                        source=source,
                        type="sampling.tube.sealed",
                        data={
                            "tube": tube,
                            "mode": "pool",
                            "members": [f"sub-{tube}-{p}" for p in range(1, 10)],
                            "sampler": "S01",
                        },
                    )
                else:
                    ev = outbox.append(
                        conn,
                        source=source,
                        type="sampling.tube.member_added",
                        data={
                            "tube": tube,
                            "resident": f"sub-{uuid.uuid4().hex[:16]}",
                            "position": i % 10 + 1,
                        },
                    )
                out.append(ev)
                done += 1
    return out


def all_events(db: Database) -> list[dict[str, Any]]:
    return [json.loads(p) for (p,) in db.conn.execute("SELECT payload FROM outbox ORDER BY seq")]


def undelivered(db: Database) -> int:
    return int(
        db.conn.execute("SELECT count(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0]
    )


def wait_until(pred: Callable[[], bool], timeout: float, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not reached within {timeout} s")


@contextmanager
def agent_thread(config: StationConfig, storage_check_s: float | None = None) -> Iterator[Agent]:
    agent = build(config)
    if storage_check_s is not None:
        agent.storage_check_s = storage_check_s  # before it runs: no thread reads it yet
    errors: list[BaseException] = []

    def _run() -> None:
        try:
            agent.run()
        except BaseException as exc:
            errors.append(exc)
            raise

    t = threading.Thread(target=_run, name="agent-under-test", daemon=True)
    t.start()
    try:
        yield agent
    finally:
        agent.request_stop()
        t.join(20)
        agent.db.conn.close()
        assert not t.is_alive(), "the agent did not stop within 20 s"
        assert not errors, errors


def agent_process(config_path: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """A real `station agent` process, as systemd would start it; output goes to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kiosk_ui.cli",
                "-v",
                "agent",
                "--config",
                str(config_path),
                *extra,
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_agent(proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> int:
    """SIGTERM the agent and wait for its exit code; a process that outlives ``timeout`` is
    killed (never left behind) and the test fails with the end of its log."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise AssertionError(
            f"the agent did not exit within {timeout}s of SIGTERM:\n" + log.read_text()[-3000:]
        ) from None


@contextmanager
def gateway_thread(
    port: int,
    db: Path | str,
    client_id: str = "gateway-1",
    group: str = "gateway",
    intake: Intake | None = None,
    queue_max: int | None = None,
    clock: Callable[[], float] | None = None,
    **link: Any,
) -> Iterator[Gateway]:
    """The gateway consumer on the store ``db`` (a SQLite path or a PostgreSQL URL), in a
    thread, until the block ends."""
    settings = LinkSettings(
        host="127.0.0.1",
        port=port,
        client_id=client_id,
        tls=link.pop("tls", False),
        allow_plaintext=True,
        keepalive_s=5,
        subscriptions=subscriptions(group),
        **link,
    )
    options: dict[str, Any] = {} if queue_max is None else {"queue_max": queue_max}
    if clock is not None:
        options["clock"] = clock  # the gateway's own clock (its acks say it)
    gw = Gateway(open_store(db), settings, reconnect_s=(0.1, 1.0), intake=intake, **options)
    t = threading.Thread(target=gw.run, name=f"gateway-{client_id}", daemon=True)
    t.start()
    try:
        if not gw.connected.wait(10):
            raise TimeoutError("the gateway did not connect")
        yield gw
    finally:
        gw.request_stop()
        t.join(10)
        gw.store.close()
        assert not t.is_alive(), "the gateway did not stop"


def gateway_events(db: Path | str) -> list[dict[str, Any]]:
    """Every event a gateway store holds, by station and seq."""
    with open_store(db) as store:
        rows = store.query("SELECT payload FROM events ORDER BY township, station, seq")
    return [json.loads(p) for (p,) in rows]


@functools.cache
@functools.cache
def may_mount() -> bool:
    """Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN, not confined)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    probe = Path(tempfile.mkdtemp(prefix="tmpfs-probe-"))
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            return False
        subprocess.run(["umount", str(probe)], check=True)
        return True
    finally:
        probe.rmdir()


@contextmanager
def small_tmpfs(where: Path, size: str = "1m") -> Iterator[Path]:
    """A real file system of ``size`` mounted at ``where`` (created), unmounted afterwards."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=True,
    )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill_filesystem(directory: Path, name: str = "filler") -> Path:
    """Write a file in ``directory`` until its file system has not one byte left."""
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for chunk in (b"\0" * 65536, b"\0" * 4096, b"\0"):
            try:
                while True:
                    os.write(fd, chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    return path


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
