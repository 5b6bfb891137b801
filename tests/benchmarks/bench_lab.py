"""Importing a lab's result file: 50,000 rows into a gateway that holds the day's tubes.

Run: ``python -m tests.benchmarks.bench_lab`` (or ``scripts/bench lab``).

A township's day as the stations send it (50,000 pooled tubes of ten, sealed at 20 stations
and stored through the gateway's own ``store()``), then one LIS export of 50,000 rows (1%
positive, 0.5% invalid, the rest negative: about 7,500 recall changes), imported on a SQLite
file and on a real PostgreSQL (its own cluster, fsync on). Reported per store: reading the
stations' events into the lab's tables (once per day's events), parsing the file, and the
import (matching every row, storing the results and numbering the recall list's changes),
beside a bare ``executemany`` of the same 50,000 rows into a table of the same shape (the
floor). Target: parse and import under 10 s. The sync is shown apart (and with them): the
recall sender reads the stations' events into the lab's tables as they arrive, so an import
normally finds them read.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from edge_agent.gateway.intake import Event, happened_at
from edge_agent.gateway.lab import lock, sync
from edge_agent.gateway.lab_import import import_results
from edge_agent.gateway.results import parse_results
from edge_agent.gateway.store import GatewayStore, Tx, open_store
from tests.support.lab import DAY

TUBES = 50_000
POOL = 10
STATIONS = 20
TARGET_S = 10.0
SEED = 20261203


def _event(station: str, seq: int, tube: str, at: float) -> Event:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    data = {
        "tube": tube,
        "mode": "pool",
        "members": [f"{tube.lower()}-r{i}" for i in range(1, POOL + 1)],
        "sampler": "s",
    }
    body = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": f"urn:sampling:T01:{station}",
        "type": "sampling.tube.sealed",
        "time": stamp,
        "datacontenttype": "application/json",
        "seq": seq,
        "data": data,
    }
    return Event(
        "T01", station, seq, body["id"], body["type"], stamp, happened_at(stamp), json.dumps(body)
    )


def fill(store: GatewayStore) -> list[str]:
    tubes = [f"TB{n:08d}" for n in range(1, TUBES + 1)]
    batch: list[Event] = []
    for n, tube in enumerate(tubes):
        station = f"K{n % STATIONS:02d}"
        batch.append(_event(station, n // STATIONS + 1, tube, DAY + n * 0.5))
        if len(batch) == 500:
            store.store(batch, DAY)
            batch = []
    if batch:
        store.store(batch, DAY)
    return tubes


def result_file(tubes: list[str]) -> bytes:
    rnd = random.Random(SEED)
    lines = ["tube,result,time"]
    for tube in tubes:
        draw = rnd.random()
        word = "positive" if draw < 0.01 else "invalid" if draw < 0.015 else "negative"
        lines.append(f"{tube},{word},2026-12-03 18:00")
    return ("\n".join(lines) + "\n").encode()


def _sync(tx: Tx) -> int:
    lock(tx)
    return sync(tx)


def _bare(tx: Tx, rows: list[tuple[str, str, float, None, float, str]]) -> None:
    tx.execute(
        "CREATE TABLE bare_results (tube TEXT NOT NULL, result TEXT NOT NULL, "
        "reported_at DOUBLE PRECISION NOT NULL, reason TEXT, imported_at DOUBLE PRECISION "
        "NOT NULL, source TEXT NOT NULL, PRIMARY KEY (tube, reported_at, result))"
    )
    tx.executemany("INSERT INTO bare_results VALUES (%s, %s, %s, %s, %s, %s)", rows)


def measure(target: str, name: str) -> list[str]:
    with open_store(target) as store:
        tubes = fill(store)
        data = result_file(tubes)
        t0 = time.perf_counter()
        read = store.write(_sync)
        t1 = time.perf_counter()
        parsed = parse_results(data)
        t2 = time.perf_counter()
        report = import_results(store, parsed, source="bench.csv")
        t3 = time.perf_counter()
        rows = [(r.tube, str(r.result), r.time.timestamp(), None, 0.0, "b") for r in parsed.results]
        t4 = time.perf_counter()
        store.write(lambda tx: _bare(tx, rows))
        t5 = time.perf_counter()
    assert read == TUBES and report.stored == TUBES and not report.errors, report.errors[:3]
    first, last = report.recall["T01"]
    total = (t2 - t1) + (t3 - t2)
    verdict = "meets" if total < TARGET_S else "MISSES"
    return [
        f"{name:<11} {t1 - t0:>8.2f} {t2 - t1:>8.2f} {t3 - t2:>8.2f} {t5 - t4:>8.2f} "
        f"{(t3 - t2) / (t5 - t4):>7.1f}x {last - first + 1:>8} {total:>7.2f} "
        f"{total + t1 - t0:>7.2f}  {verdict}"
    ]


def main() -> None:
    lines = []
    work = Path(tempfile.mkdtemp(prefix="bench-lab-"))
    try:
        lines += measure(str(work / "gateway.db"), "SQLite")
        try:
            from tests.support.postgres import PgCluster  # noqa: PLC0415 - optional part

            with PgCluster(fsync=True) as cluster:
                lines += measure(cluster.create_database("bench"), "PostgreSQL")
        except (FileNotFoundError, RuntimeError) as exc:
            lines.append(f"PostgreSQL  skipped: {exc}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"lab result import: {TUBES:,} rows, pools of {POOL}, {STATIONS} stations; seconds")
    print(
        f"{'store':<11} {'sync':>8} {'parse':>8} {'import':>8} {'bare':>8} {'/bare':>8} "
        f"{'recalls':>8} {'total':>7} {'+sync':>7}  target: total (parse + import) < {TARGET_S:g} s"
    )
    for line in lines:
        print(line)
    print(
        "sync: the day's 50,000 sealed tubes read from the stations' events at once; the recall "
        "sender reads them as they come (every round), so an import finds them read"
    )


if __name__ == "__main__":
    main()
