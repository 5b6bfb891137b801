"""Edge agent benchmark: draining a backlog to a local Mosquitto, and memory with a big one.

Run: ``python -m tests.benchmarks.bench_agent`` (or ``scripts/bench agent``).

- drain of a 10,000-event backlog, events/s, beside a bare paho loop publishing the same
  payloads at QoS 1 with the same in-flight window (the ceiling: no database, no ordering,
  no bookkeeping). Target: at least 0.5x the bare loop, and under 30 s.
- the same drain with end-to-end acknowledgements from the reference gateway (for
  information: it adds the gateway's own durable writes).
- resident memory of a real ``station agent`` process draining a 100,000-event backlog,
  sampled with psutil. Target: under 80 MB, bounded (the backlog is never loaded whole).
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.edge import (
    agent_process,
    agent_thread,
    gateway_thread,
    produce,
    station_config,
    station_db,
    undelivered,
)
from tests.support.mosquitto import Broker

BACKLOG = 10_000
BIG_BACKLOG = 100_000
WINDOW = 20


def bare_paho(port: int, payloads: list[bytes], window: int) -> float:
    """Seconds for a bare paho client to publish ``payloads`` at QoS 1, ``window`` in flight."""
    done = threading.Event()
    acked = 0

    def on_publish(*_args: object) -> None:
        nonlocal acked
        acked += 1
        if acked == len(payloads):
            done.set()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bare", protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(window)
    c.max_queued_messages_set(0)
    c.on_publish = on_publish
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    start = time.perf_counter()
    for p in payloads:
        c.publish("sampling/T01/BARE/events", p, qos=1)
    if not done.wait(120):
        raise TimeoutError(f"bare paho: {acked} of {len(payloads)} acknowledged")
    elapsed = time.perf_counter() - start
    c.disconnect()
    c.loop_stop()
    return elapsed


def agent_drain(tmp: Path, port: int, n: int, e2e: bool) -> tuple[float, list[bytes]]:
    url = f"mqtt://127.0.0.1:{port}"
    _, config = station_config(
        tmp,
        url,
        station="E2E" if e2e else "K03",
        inflight_window=WINDOW,
        end_to_end_ack=e2e,
        ack_window=5000,
    )
    db = station_db(config)
    produce(db, config.source, n, per_transaction=1000)
    payloads = [
        str(p).encode() for (p,) in db.conn.execute("SELECT payload FROM outbox ORDER BY seq")
    ]
    gw_ctx = gateway_thread(port, tmp / "gateway.db") if e2e else None
    gw = gw_ctx.__enter__() if gw_ctx is not None else None
    try:
        start = time.perf_counter()
        with agent_thread(config) as agent:
            if e2e:
                while agent.acked_through < n:
                    time.sleep(0.005)
            else:
                while agent.delivered_count < n:
                    time.sleep(0.005)
            elapsed = time.perf_counter() - start
        assert undelivered(db) == 0
    finally:
        if gw_ctx is not None and gw is not None:
            gw_ctx.__exit__(None, None, None)
        db.conn.close()
    return elapsed, payloads


def agent_memory(tmp: Path, port: int, n: int) -> tuple[float, float, float]:
    """Peak RSS (MB) of a `station agent` process draining ``n`` events, its RSS once
    connected, and the drain time."""
    config_path, config = station_config(
        tmp, f"mqtt://127.0.0.1:{port}", station="MEM", inflight_window=WINDOW
    )
    db = station_db(config)
    produce(db, config.source, n, per_transaction=5000)
    proc = agent_process(config_path, tmp / "agent.log")
    ps = psutil.Process(proc.pid)
    peak = early = 0.0
    start = time.perf_counter()
    try:
        while True:
            rss = ps.memory_info().rss / 2**20
            peak = max(peak, rss)
            delivered = db.conn.execute(
                "SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL"
            ).fetchone()[0]
            if not early and delivered > 0:
                early = rss
            if delivered == n:
                break
            if time.perf_counter() - start > 110:
                raise TimeoutError(f"only {delivered} of {n} delivered")
            time.sleep(0.1)
        elapsed = time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(20)
        db.conn.close()
    return peak, early, elapsed


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as d:
        tmp = Path(d)
        broker = Broker(tmp / "broker")
        broker.start()
        try:
            ours_s, payloads = agent_drain(tmp / "drain", broker.port, BACKLOG, e2e=False)
            bare_s = bare_paho(broker.port, payloads, WINDOW)
            e2e_s, _ = agent_drain(tmp / "e2e", broker.port, BACKLOG, e2e=True)
            peak, early, big_s = agent_memory(tmp / "mem", broker.port, BIG_BACKLOG)
        finally:
            broker.stop()
    ours, bare, e2e = BACKLOG / ours_s, BACKLOG / bare_s, BACKLOG / e2e_s
    rows = [
        (
            "drain 10k backlog, events/s",
            f"{ours:,.0f}",
            f"{bare:,.0f} (bare paho)",
            f"{ours / bare:.2f}x",
            ">= 0.5x",
        ),
        ("drain 10k backlog, seconds", f"{ours_s:.2f}", f"{bare_s:.2f} (bare paho)", "", "< 30 s"),
        (
            "drain 10k, end-to-end acks, events/s",
            f"{e2e:,.0f}",
            f"{bare:,.0f} (bare paho)",
            f"{e2e / bare:.2f}x",
            "(info)",
        ),
        (
            "agent RSS, 100k backlog, peak MB",
            f"{peak:.1f}",
            f"{early:.1f} (at first delivery)",
            f"{peak / early:.2f}x",
            "< 80 MB",
        ),
        ("drain 100k backlog, events/s", f"{BIG_BACKLOG / big_s:,.0f}", "", "", "(info)"),
    ]
    widths = [
        max(len(r[i]) for r in [("measure", "ours", "baseline", "ratio", "target"), *rows])
        for i in range(5)
    ]
    header = ("measure", "ours", "baseline", "ratio", "target")
    print(f"edge agent, in-flight window {WINDOW}, local Mosquitto")
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
