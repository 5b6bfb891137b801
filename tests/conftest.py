"""Fixtures shared by every test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mosquitto import Broker, running_broker
from tests.support.postgres import pg_cluster, pg_url  # noqa: F401 - fixtures for every module

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A real Mosquitto on a free loopback port, for this test only."""
    with running_broker(tmp_path / "broker") as b:
        yield b
