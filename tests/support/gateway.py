"""`station gateway` as a real process, as systemd would start it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.support.edge import ROOT


def gateway_process(
    broker_url: str, db: str, client_id: str, log: Path, *extra: str
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kiosk_ui.cli",
                "-v",
                "gateway",
                "--broker",
                broker_url,
                "--allow-plaintext",
                "--db",
                db,
                "--client-id",
                client_id,
                *extra,
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_gateway(proc: subprocess.Popen[bytes], log: Path, timeout: float = 20.0) -> int:
    """SIGTERM and the exit code; one that outlives ``timeout`` is killed and the test fails."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise AssertionError(
            f"the gateway did not exit within {timeout}s of SIGTERM:\n{log.read_text()[-3000:]}"
        ) from None
