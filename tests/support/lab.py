"""A township's day as the gateway stores it, for the lab's tests and benchmark: tubes sealed,
voided and boxes dispatched by stations, as the events the stations send (stored through the
store's own ``store()``, acknowledged prefix and all)."""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

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


class LightStation:
    """A station's MQTT side of the recall list only, as the agent keeps it (a version and the
    entries; a chunk applied when its ``from`` is at most the version + 1, a gap refused with
    the version held), for the sender's tests without a kiosk."""

    def __init__(self, port: int, township: str, station: str, version: int = 0) -> None:
        self.prefix = f"sampling/{township}/{station}"
        self.version = version
        self.entries: dict[str, dict[str, Any]] = {}
        self.received: list[dict[str, Any]] = []
        self.deaf_for = 0  # how many commands to drop without a word, as a lost message
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"light-{station}", protocol=mqtt.MQTTv5
        )
        self.client.on_connect = lambda c, *_a: c.subscribe(f"{self.prefix}/commands", 1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()

    def status(self, state: str) -> None:
        body = json.dumps({"state": state}).encode()
        self.client.publish(f"{self.prefix}/status", body, qos=1, retain=True).wait_for_publish(5)

    def telemetry(self) -> None:
        body = json.dumps({"recall_version": self.version}).encode()
        self.client.publish(f"{self.prefix}/telemetry", body, qos=0)

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        command = json.loads(msg.payload)
        args = command["args"]
        with self.lock:
            self.received.append(args)
            if self.deaf_for > 0:
                self.deaf_for -= 1
                return
            ok = args["from"] <= self.version + 1
            if ok:
                for change in args["changes"]:
                    if change["v"] == self.version + 1:
                        if change["op"] == "add":
                            self.entries[change["sub"]] = change
                        else:
                            self.entries.pop(change["sub"], None)
                        self.version = change["v"]
            reply = {
                "id": command["id"],
                "ok": ok,
                "error": None if ok else f"a gap: this station holds version {self.version}",
                "result": {"recall_version": self.version},
            }
        client.publish(f"{self.prefix}/replies", json.dumps(reply).encode(), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
