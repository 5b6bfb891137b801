"""A township's day as the gateway stores it, for the lab's tests and benchmark: tubes sealed,
voided and boxes dispatched by stations, as the events the stations send (stored through the
store's own ``store()``, acknowledged prefix and all)."""

from __future__ import annotations

import itertools
from typing import Any

from edge_agent.gateway.intake import Intake
from edge_agent.gateway.store import GatewayStore
from tests.support.gateway_events import event_bytes, topic

DAY = 1_796_263_200.0  # 2026-12-03 10:00 China Standard Time
SAMPLER = "sampler-07"


class Township:
    """Stations of one township putting events into ``store``, each with its own seq."""

    def __init__(self, store: GatewayStore, township: str = "T01") -> None:
        self.store = store
        self.township = township
        self.intake = Intake()
        self._seq: dict[str, itertools.count[int]] = {}

    def event(self, station: str, type_: str, data: dict[str, Any], at: float) -> None:
        seq = next(self._seq.setdefault(station, itertools.count(1)))
        payload = event_bytes(
            seq, township=self.township, station=station, type_=type_, data=data, at=at
        )
        # Through the gateway's own checks: the events keep the published contract.
        event = self.intake.event(topic(self.township, station), payload)
        self.store.store([event], at)

    def seal(
        self, tube: str, members: list[str], *, at: float, mode: str = "pool", station: str = "K03"
    ) -> None:
        data = {"tube": tube, "mode": mode, "members": members, "sampler": SAMPLER}
        self.event(station, "sampling.tube.sealed", data, at)

    def void(self, tube: str, members: list[str], *, at: float, station: str = "K03") -> None:
        data = {"tube": tube, "members": members, "reason": "dropped", "sampler": SAMPLER}
        self.event(station, "sampling.tube.voided", data, at)

    def dispatch(self, box: str, tubes: list[str], *, at: float, station: str = "K03") -> None:
        data = {"box": box, "tubes": tubes, "sampler": SAMPLER}
        self.event(station, "sampling.box.dispatched", data, at)


def members(tube: str, n: int = 10) -> list[str]:
    """Pseudonymous subs of a tube's members: ``{tube}-r1`` ... (stable, readable)."""
    return [f"{tube.lower()}-r{i}" for i in range(1, n + 1)]
