"""Gateway benchmark: the thundering herd after a township-wide outage.

Run: ``python -m tests.benchmarks.bench_gateway`` (or ``scripts/bench gateway``); the full
run is the default, 500 stations with a 2,000-event backlog each (1,000,000 events a phase);
``--stations 50 --events 200`` is a quick one.

Light simulated stations (``--publishers`` processes, each driving its share of the stations'
MQTT clients from one poll loop, no kiosk, no outbox) connect at the same moment and publish
their backlog in seq order at QoS 1, ``--window`` PUBACKs outstanding per station, and listen
to their ``acks`` topic. Phases, each on the same broker with its own township id (so no
retained ack of one phase is read by the next):

- ``bare``: one bare paho subscriber on the shared subscription that stores nothing (the
  ceiling: what the broker and the herd can move);
- ``postgresql xN``: N ``station gateway`` processes on one PostgreSQL (its own cluster,
  fsync on), N in ``--instances`` (1, 2, 4);
- ``sqlite x1``: one ``station gateway`` on a SQLite file, the same load.

Reported per phase: events/s stored and acknowledged (until every station has read
``{"through": N}`` for its last event), its ratio to the bare subscriber's rate, p50/p99 from
publish to the ack that covers it, and each instance's peak resident memory. Targets: the
full run's 1,000,000 events stored and acknowledged in under 3 minutes, at least 0.5x the
bare subscriber, PostgreSQL within 2x of SQLite.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import resource
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.support.edge import ROOT
from tests.support.mosquitto import Broker
from tests.support.postgres import PgCluster

TEMPLATE = (
    '{"specversion":"1.0","id":"%s","source":"urn:sampling:%s:%s",'
    '"type":"sampling.tube.member_added","time":"2026-11-23T08:00:00.000Z",'
    '"datacontenttype":"application/json","seq":%d,'
    '"data":{"tube":"T%07d","resident":"sub-%s","position":%d}}'
)


def payload(township: str, station: str, seq: int) -> bytes:
    u = uuid.uuid4().hex
    ident = f"{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:]}"
    return (TEMPLATE % (ident, township, station, seq, seq // 10, u[:16], seq % 10 + 1)).encode()


@dataclass
class Station:
    client: mqtt.Client
    name: str
    township: str
    events: int
    next_seq: int = 1
    inflight: int = 0
    acked: int = 0
    sent_at: array[float] = field(default_factory=lambda: array("d"))
    latencies: array[float] = field(default_factory=lambda: array("d"))

    def top_up(self, window: int) -> None:
        while self.inflight < window and self.next_seq <= self.events:
            self.sent_at.append(time.time())
            self.client.publish(
                f"sampling/{self.township}/{self.name}/events",
                payload(self.township, self.name, self.next_seq),
                qos=1,
            )
            self.next_seq += 1
            self.inflight += 1

    def on_ack(self, through: int) -> None:
        now = time.time()
        for seq in range(self.acked + 1, min(through, self.events) + 1):
            self.latencies.append(now - self.sent_at[seq - 1])
        self.acked = max(self.acked, through)


def _station(port: int, township: str, name: str, events: int) -> Station:
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"herd-{township}-{name}", protocol=mqtt.MQTTv5
    )
    c.max_inflight_messages_set(1000)
    st = Station(c, name, township, events)

    def on_publish(*_a: Any) -> None:
        st.inflight -= 1

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        st.on_ack(int(orjson.loads(msg.payload)["through"]))

    c.on_publish = on_publish
    c.on_message = on_message
    c.connect("127.0.0.1", port, keepalive=60)
    c.subscribe(f"sampling/{township}/{name}/acks", qos=1)
    return st


def herd_worker(
    port: int,
    township: str,
    names: list[str],
    events: int,
    window: int,
    wait_acks: bool,
    start: Any,
    out: Any,
) -> None:
    """One publisher process: its stations, one poll loop, until every event is PUBACKed
    (and acknowledged by the gateway when ``wait_acks``)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    start.wait()
    stations = [_station(port, township, n, events) for n in names]
    ep = select.epoll()
    by_fd: dict[int, Station] = {}
    for st in stations:
        sock = st.client.socket()
        if sock is None:
            raise RuntimeError(f"{st.name}: not connected")
        by_fd[sock.fileno()] = st
        ep.register(sock.fileno(), select.EPOLLIN)
    done_at = 0.0
    last_sweep = 0.0
    while True:
        for fd, _flags in ep.poll(0.05):
            st = by_fd[fd]
            st.client.loop_read(100)
            st.top_up(window)  # outside paho's callbacks, so each publish is written at once
            if st.client.want_write():
                st.client.loop_write()
        now = time.monotonic()
        if now - last_sweep < 0.2:
            continue
        last_sweep = now
        for st in stations:
            st.client.loop_misc()
            st.top_up(window)
            if st.client.want_write():
                st.client.loop_write()
        pubacked = all(st.next_seq > st.events and st.inflight == 0 for st in stations)
        if pubacked and (not wait_acks or all(st.acked >= st.events for st in stations)):
            done_at = time.time()
            break
    ep.close()
    lat = array("d")
    for st in stations:
        lat.extend(st.latencies)
        st.client.disconnect()
    out.put((done_at, lat.tobytes()))


class BareSubscriber:
    """Counts what the shared subscription delivers; stores nothing."""

    def __init__(self, port: int, township: str, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.last_at = 0.0
        self.done = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bare-{township}", protocol=mqtt.MQTTv5
        )
        self.client.on_message = self._on_message
        # A session the broker keeps: if the link drops, paho reconnects and nothing is lost.
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        self.client.connect("127.0.0.1", port, keepalive=60, clean_start=False, properties=props)
        self.client.subscribe(f"$share/bare/sampling/{township}/+/events", qos=1)
        self.client.loop_start()

    def _on_message(self, *_a: Any) -> None:
        self.count += 1
        if self.count >= self.expected:
            self.last_at = time.time()
            self.done.set()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Peaks:
    """Samples the resident memory of some processes every 0.25 s; keeps each one's peak."""

    def __init__(self, pids: list[int]) -> None:
        self.procs = [psutil.Process(p) for p in pids]
        self.peak = [0] * len(pids)
        # CPU from here on: the herd's, not the start-up's.
        self.cpu = [-(t.user + t.system) for t in (p.cpu_times() for p in self.procs)]
        self.cpu0 = list(self.cpu)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.25):
            for i, p in enumerate(self.procs):
                with contextlib.suppress(psutil.Error):
                    self.peak[i] = max(self.peak[i], p.memory_info().rss)
                    times = p.cpu_times()
                    self.cpu[i] = self.cpu0[i] + times.user + times.system

    def done(self) -> list[float]:
        self.stop.set()
        self.thread.join(5)
        return [p / 1e6 for p in self.peak]


@dataclass
class Result:
    name: str
    events: int
    seconds: float
    latencies: list[float]
    rss_mb: list[float]
    cpu_s: float = 0.0  # the gateway processes' CPU time, all instances together

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def run_herd(
    port: int, township: str, args: argparse.Namespace, wait_acks: bool
) -> tuple[float, float, list[float]]:
    """Starts the herd, returns (start, the last station's done time, latencies)."""
    names = [f"K{n:04d}" for n in range(args.stations)]
    ctx = mp.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    shares = [names[i :: args.publishers] for i in range(args.publishers)]
    procs = [
        ctx.Process(
            target=herd_worker,
            args=(port, township, share, args.events, args.window, wait_acks, start, out),
        )
        for share in shares
        if share
    ]
    for p in procs:
        p.start()
    began = time.time()
    start.set()
    results = [out.get(timeout=args.timeout) for _ in procs]
    for p in procs:
        p.join(30)
    latencies: list[float] = []
    for _, raw in results:
        a = array("d")
        a.frombytes(raw)
        latencies.extend(a)
    return began, max(r[0] for r in results), latencies


def gateway_phase(
    port: int, township: str, db: str, instances: int, args: argparse.Namespace, tmp: Path
) -> Result:
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kiosk_ui.cli",
                "-v",
                "gateway",
                "--broker",
                f"mqtt://127.0.0.1:{port}",
                "--allow-plaintext",
                "--db",
                db,
                "--client-id",
                f"gw-{township}-{n}",
                "--group",
                f"gw-{township}",
            ],
            cwd=ROOT,
            stdout=(tmp / f"gw-{township}-{n}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for n in range(instances)
    ]
    try:
        # Subscribed before the herd returns: the broker drops what no subscriber takes, and
        # these light stations, unlike real ones, never send anything again.
        for n in range(instances):
            log = tmp / f"gw-{township}-{n}.log"
            deadline = time.monotonic() + 60
            while "gateway connected" not in log.read_text():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{log.name}: the gateway did not connect")
                time.sleep(0.1)
        time.sleep(0.5)
        peaks = Peaks([p.pid for p in procs])
        began, ended, latencies = run_herd(port, township, args, wait_acks=True)
        rss = peaks.done()
        cpu = sum(peaks.cpu)
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)
    total = args.stations * args.events
    return Result(township, total, ended - began, latencies, rss, cpu)


def bare_phase(port: int, args: argparse.Namespace) -> Result:
    total = args.stations * args.events
    bare = BareSubscriber(port, "BARE", total)
    try:
        began, _ended, _ = run_herd(port, "BARE", args, wait_acks=False)
        if not bare.done.wait(args.timeout):
            raise TimeoutError(f"the bare subscriber got {bare.count} of {total}")
    finally:
        bare.stop()
    return Result("bare", total, bare.last_at - began, [], [])


def _pct(values: list[float], q: float) -> str:
    if not values:
        return "-"
    return f"{statistics.quantiles(values, n=100)[q - 1] * 1000:,.0f} ms"


def report(results: list[Result], ceiling: float) -> None:
    rows = [
        [
            "phase",
            "events",
            "seconds",
            "events/s",
            "vs bare",
            "p50",
            "p99",
            "gateway CPU us/event",
            "peak RSS MB",
        ]
    ]
    for r in results:
        rows.append(
            [
                r.name,
                f"{r.events:,}",
                f"{r.seconds:.1f}",
                f"{r.rate:,.0f}",
                f"{r.rate / ceiling:.2f}x",
                _pct(r.latencies, 50),
                _pct(r.latencies, 99),
                f"{r.cpu_s / r.events * 1e6:.0f}" if r.cpu_s else "-",
                " / ".join(f"{m:.0f}" for m in r.rss_mb) or "-",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=500)
    parser.add_argument("--events", type=int, default=2000, help="backlog per station")
    parser.add_argument("--instances", default="1,2,4", help="PostgreSQL phases")
    parser.add_argument("--publishers", type=int, default=4, help="herd processes")
    parser.add_argument("--window", type=int, default=20, help="PUBACKs outstanding per station")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite phase")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--keep", help="a directory to keep the logs and databases in")
    args = parser.parse_args()
    # A stopped benchmark still stops its broker, its PostgreSQL and its gateways.
    signal.signal(signal.SIGTERM, lambda *_a: sys.exit(143))
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the broker inherits it
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp_name:
        tmp = Path(args.keep) if args.keep else Path(tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        broker = Broker(tmp / "broker")
        broker.start()
        cluster = PgCluster(fsync=True)
        cluster.start()
        try:
            bare = bare_phase(broker.port, args)
            results = [bare]
            for n in (int(x) for x in args.instances.split(",") if x):
                url = cluster.create_database(f"herd{n}")
                results.append(gateway_phase(broker.port, f"PG{n}", url, n, args, tmp))
                results[-1].name = f"postgresql x{n}"
            if not args.no_sqlite:
                db = str(tmp / "gateway.db")
                results.append(gateway_phase(broker.port, "SQ1", db, 1, args, tmp))
                results[-1].name = "sqlite x1"
        finally:
            cluster.close()
            broker.stop()
    print(
        f"gateway thundering herd: {args.stations} stations x {args.events} events, "
        f"{args.publishers} publisher processes, window {args.window}, one Mosquitto"
    )
    report(results, bare.rate)
    by_name = {r.name: r for r in results}
    if "postgresql x1" in by_name and "sqlite x1" in by_name:
        ratio = by_name["sqlite x1"].rate / by_name["postgresql x1"].rate
        print(f"SQLite / PostgreSQL (one instance each): {ratio:.2f}x (target: within 2x)")


if __name__ == "__main__":
    main()
