"""A consumer that records everything a station sends, and a Jepsen-style audit of it.

The recorder is deliberately independent of the code under test: plain paho, its own
persistent session (so a broker that saves sessions keeps queuing for it), subscribing again
on every connect. The audit compares what arrived with what the station committed.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Audit:
    expected: int
    received: int
    distinct: int
    lost: list[int] = field(default_factory=list)
    duplicated_after_dedupe: list[int] = field(default_factory=list)
    out_of_order: list[tuple[int, int]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.lost or self.duplicated_after_dedupe or self.out_of_order or self.unexpected
        )


def audit(expected: Iterable[dict[str, Any]], events: Iterable[dict[str, Any]]) -> Audit:
    """Lost (committed, never seen), duplicated after dropping repeats by id (two ids for one
    seq), out of order (first sightings whose seq does not increase), unexpected ids."""
    want = {e["id"]: int(e["seq"]) for e in expected}
    seen: dict[str, int] = {}
    firsts: list[int] = []
    total = 0
    for ev in events:
        total += 1
        if ev["id"] in seen:
            continue
        seen[ev["id"]] = int(ev["seq"])
        firsts.append(int(ev["seq"]))
    by_seq: dict[int, int] = {}
    for seq in seen.values():
        by_seq[seq] = by_seq.get(seq, 0) + 1
    return Audit(
        expected=len(want),
        received=total,
        distinct=len(seen),
        lost=sorted(s for i, s in want.items() if i not in seen),
        duplicated_after_dedupe=sorted(s for s, n in by_seq.items() if n > 1),
        out_of_order=[(a, b) for a, b in itertools.pairwise(firsts) if b <= a],
        unexpected=sorted(i for i in seen if i not in want),
    )


class Recorder:
    __test__ = False

    def __init__(
        self,
        port: int,
        topics: Iterable[str] = ("sampling/#",),
        client_id: str = "recorder",
        persistent: bool = True,
        tls_args: dict[str, Any] | None = None,
        username: str | None = None,
    ) -> None:
        self.topics = list(topics)
        self.port = port
        self.messages: list[Received] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.persistent = persistent
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.reconnect_delay_set(0.2, 1.0)
        if tls_args:
            self.client.tls_set(**tls_args)
        if username:
            self.client.username_pw_set(username)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            return
        self.subscribed.clear()
        if self.topics:
            client.subscribe([(t, 1) for t in self.topics])
        else:
            self.subscribed.set()
        self.connected.set()

    def _on_subscribe(self, *_args: Any) -> None:
        self.subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(
                Received(msg.topic, bytes(msg.payload), bool(msg.retain), time.monotonic())
            )

    def start(self) -> Recorder:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600 if self.persistent else 0
        self.client.connect(
            "127.0.0.1",
            self.port,
            keepalive=5,
            clean_start=not self.persistent,
            properties=props,
        )
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise TimeoutError("the recorder could not subscribe")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def on(self, suffix: str) -> list[Received]:
        with self.lock:
            return [m for m in self.messages if m.topic.endswith("/" + suffix)]

    def events(self) -> list[dict[str, Any]]:
        return [m.json() for m in self.on("events")]

    def wait_for(
        self, predicate: Callable[[Recorder], bool], timeout: float, what: str = "the condition"
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            time.sleep(0.05)
        raise TimeoutError(f"{what} not reached within {timeout} s")

    def distinct_event_ids(self) -> set[str]:
        return {e["id"] for e in self.events()}
