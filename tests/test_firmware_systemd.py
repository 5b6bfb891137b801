from __future__ import annotations

import socket
from pathlib import Path

import pytest

from firmware.systemd import Notifier


def test_messages_reach_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(2)
        n = Notifier(str(path))
        assert n.enabled
        assert n.ready("kiosk up")
        assert server.recv(256) == b"READY=1\nSTATUS=kiosk up"
        assert n.watchdog()
        assert server.recv(256) == b"WATCHDOG=1"


def test_outside_systemd_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled
    assert n.ready() is False
    assert n.watchdog_interval_s() is None


def test_gone_socket_is_reported_not_raised(tmp_path: Path) -> None:
    assert Notifier(str(tmp_path / "absent")).watchdog() is False


def test_watchdog_interval_is_half_of_watchdogsec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert Notifier("x").watchdog_interval_s() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert Notifier("x").watchdog_interval_s() is None
