"""A durable check-in against a bare one-row INSERT + COMMIT on the same file.

    python -m tests.benchmarks.bench_checkin [--rounds N] [--per-round N]
    scripts/bench checkin

"ours" is ``Station.check_in``: the decision table, the already-sampled lookup, the check-in
row, the tube member, two outbox events and the queue length, in one ``BEGIN IMMEDIATE`` ...
``COMMIT`` with ``synchronous=FULL`` in WAL mode. "bare" is one INSERT of a row of similar
size and a COMMIT on the same database file, through the same connection settings. Both run
in alternating rounds, so the disk's mood hits both alike. Each is measured alone and with
a second process polling the outbox and marking events delivered, as the edge agent does.
Target: ours under 2x bare.

The recall list: the same check-in on two stations, one holding no recall list and one
holding 100,000 recalled residents (none of them the ones checking in: the list is looked up
and misses, the common case), in alternating rounds. Target: the list adds under 5% to a
check-in (median against median; the check-in's one read of its facts, where the lookup
runs, is timed apart in microseconds).

A separate pass (after the timed rounds, so its tracing costs nothing there) splits each
operation at the start of its COMMIT: the work before it (rules, reads, writes, encoding)
and the commit itself (WAL frames written and synced), with the frames one commit appends.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from edge_agent.db import write_transaction
from firmware.config import load_config
from kiosk_ui.core import store
from kiosk_ui.core.rules import TubeMode
from kiosk_ui.core.station import Station
from tests.support.config import write_config
from tests.support.station import resident

ROOT = Path(__file__).resolve().parents[2]
RECALL_LIST = 100_000
RECALL_TARGET = 1.05

# The agent's loop: read what is pending, "publish" it, mark it delivered; sleep briefly when
# there is nothing. It stops when its stdin closes.
AGENT_LIKE = textwrap.dedent(
    """
    import os, sys, threading, time
    from edge_agent import outbox
    from edge_agent.db import open_db
    db = open_db(sys.argv[1])
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    after, delivered = 0, 0
    print("ready", flush=True)
    while not stop.is_set():
        rows = outbox.pending(db, after, 50)
        if not rows:
            stop.wait(0.005)
            continue
        outbox.mark_delivered(db, [r.seq for r in rows])
        after = rows[-1].seq
        delivered += len(rows)
    print(delivered, flush=True)
    """
)


class Bench:
    def __init__(self, directory: Path, pool_size: int = 10) -> None:
        cfg = write_config(directory, {"sampling": {"pool_size": pool_size}})
        self.config = load_config(cfg)
        self.station = Station.open(self.config)
        self.db = self.station.db
        self.db.conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_bare (id INTEGER PRIMARY KEY, resident TEXT, "
            "payload TEXT, at REAL)"
        )
        self.n = 0
        self.tube = 0
        self.payload = json.dumps({"decision": "pool", "lane": "main", "temperature_c": 36.5})
        # Set by the statement tracer in ``phases`` and by ``ours``/``bare`` around the op.
        self.commit_at = 0.0
        self.t0 = 0.0
        self.t1 = 0.0

    def ours(self) -> float:
        s = self.station
        current = s.open_tube()
        if current is None or current.full:
            if current is not None:
                s.seal("bench")
            self.tube += 1
            s.scan(f"TB{self.tube:010d}", "bench")
        self.n += 1
        verdict = resident(f"bench-{self.n:07d}", name="居民")
        self.t0 = time.perf_counter()
        r = s.check_in(verdict, [36.5])
        self.t1 = time.perf_counter()
        assert r.tube is not None and len(r.events) == 2
        return self.t1 - self.t0

    def bare(self) -> float:
        self.n += 1
        self.t0 = time.perf_counter()
        with write_transaction(self.db) as c:
            c.execute(
                "INSERT INTO bench_bare(resident, payload, at) VALUES (?, ?, ?)",
                (f"bench-{self.n:07d}", self.payload, time.time()),
            )
        self.t1 = time.perf_counter()
        return self.t1 - self.t0

    def run(self, rounds: int, per_round: int) -> tuple[list[float], list[float]]:
        ours: list[float] = []
        bare: list[float] = []
        for _ in range(3):  # warm up caches and the file
            self.ours()
            self.bare()
        for _ in range(rounds):
            ours += [self.ours() for _ in range(per_round)]
            bare += [self.bare() for _ in range(per_round)]
        return ours, bare

    def wal_bytes(self, op: Callable[[], float], n: int = 50) -> float:
        """Bytes one commit of ``op`` appends to the WAL (what synchronous=FULL must sync)."""
        wal = Path(f"{self.config.storage.path}-wal")
        self.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        before = wal.stat().st_size if wal.exists() else 0
        for _ in range(n):
            op()
        return (wal.stat().st_size - before) / n

    def phases(self, op: Callable[[], float], n: int = 200) -> tuple[float, float]:
        """Median time of ``op`` before its COMMIT starts, and of the COMMIT."""

        def trace(sql: str) -> None:
            if sql == "COMMIT":
                self.commit_at = time.perf_counter()

        before: list[float] = []
        commit: list[float] = []
        self.db.conn.set_trace_callback(trace)
        try:
            for _ in range(n):
                self.commit_at = 0.0
                op()
                # The op's own COMMIT is the one that started inside its timed span.
                if self.t0 < self.commit_at < self.t1:
                    before.append(self.commit_at - self.t0)
                    commit.append(self.t1 - self.commit_at)
        finally:
            self.db.conn.set_trace_callback(None)
        return statistics.median(before), statistics.median(commit)

    def frames(self, op: Callable[[], float], n: int = 50) -> float:
        """WAL frames (pages) one commit of ``op`` appends, median; tube opens/seals aside."""
        wal = Path(f"{self.config.storage.path}-wal")
        frame = int(self.db.conn.execute("PRAGMA page_size").fetchone()[0]) + 24
        self.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        counts: list[int] = []
        for _ in range(n):
            size, tube = wal.stat().st_size if wal.exists() else 0, self.tube
            op()
            if self.tube == tube:
                counts.append((wal.stat().st_size - size) // frame)
        return statistics.median(counts)

    def undelivered(self) -> int:
        return int(
            self.db.conn.execute(
                "SELECT count(*) FROM outbox WHERE delivered_at IS NULL"
            ).fetchone()[0]
        )

    def close(self) -> None:
        self.station.close()

    def hold_recall_list(self, n: int) -> None:
        """``n`` recalled residents on this station's list, as ``recall_update`` would leave
        them (written in one transaction: how they got there is not what is measured)."""
        with write_transaction(self.db) as c:
            c.executemany(
                "INSERT INTO recall_list(sub, pool, reason, action, v, at) "
                "VALUES (?, ?, 'pool_positive', 'single', ?, 0)",
                ((f"recalled-{v:07d}", f"TB{v // 10:08d}", v) for v in range(1, n + 1)),
            )
            c.execute("UPDATE recall_state SET township = 'T01', version = ? WHERE id = 1", (n,))


def facts_read_us(bench: Bench, n: int = 2000) -> float:
    """Median microseconds of the check-in's one read of its facts (where the lookup is)."""
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        store.checkin_facts(bench.db.conn, f"bench-x{i}", TubeMode.POOL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def recall_rounds(
    tmp: Path, rounds: int, per_round: int
) -> tuple[list[float], list[float], tuple[float, float]]:
    """Check-ins without a recall list and with 100,000 on it, alternating; and the medians
    of the check-in's read of its facts, where the list is looked up (microseconds)."""
    empty, full = Bench(tmp / "no-recall-list"), Bench(tmp / "recall-list")
    try:
        full.hold_recall_list(RECALL_LIST)
        for _ in range(3):
            empty.ours()
            full.ours()
        a: list[float] = []
        b: list[float] = []
        for _ in range(rounds):
            a += [empty.ours() for _ in range(per_round)]
            b += [full.ours() for _ in range(per_round)]
        reads = (facts_read_us(empty), facts_read_us(full))
    finally:
        empty.close()
        full.close()
    return a, b, reads


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _row(label: str, ours: list[float], bare: list[float]) -> str:
    mo, mb = statistics.median(ours), statistics.median(bare)
    return (
        f"{label:<22} {mb * 1e3:>9.3f} {_p(bare, 0.9) * 1e3:>9.3f} "
        f"{mo * 1e3:>9.3f} {_p(ours, 0.9) * 1e3:>9.3f} {mo / mb:>7.2f}x"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--per-round", type=int, default=50)
    args = parser.parse_args(argv)
    rows: list[str] = []
    ratios: dict[str, float] = {}
    wal = (0.0, 0.0)
    phases: dict[str, tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-checkin-") as tmp:
        for label, with_reader in (("alone", False), ("agent polling", True)):
            directory = Path(tmp) / label.replace(" ", "-")
            bench = Bench(directory)
            reader = None
            if with_reader:
                reader = subprocess.Popen(
                    [sys.executable, "-c", AGENT_LIKE, str(bench.config.storage.path)],
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                assert reader.stdout is not None
                assert reader.stdout.readline().strip() == "ready"
            try:
                ours, bare = bench.run(args.rounds, args.per_round)
                if reader is None:
                    # In a steady WAL first: the passes below restart it, and commits that
                    # grow the file cost more.
                    split = {"bare": bench.phases(bench.bare), "ours": bench.phases(bench.ours)}
                    wal = (bench.wal_bytes(bench.ours), bench.wal_bytes(bench.bare))
                    phases = {k: (*v, bench.frames(getattr(bench, k))) for k, v in split.items()}
                deadline = time.monotonic() + 30
                while reader is not None and bench.undelivered() and time.monotonic() < deadline:
                    time.sleep(0.05)
            finally:
                delivered = None
                if reader is not None:
                    out, _ = reader.communicate("", timeout=30)
                    delivered = int(out.strip() or 0)
                bench.close()
            name = label if delivered is None else f"{label} ({delivered} ev)"
            rows.append(_row(name, ours, bare))
            ratios[name] = statistics.median(ours) / statistics.median(bare)
        without, with_list, pre = recall_rounds(Path(tmp), args.rounds, args.per_round)
    n = args.rounds * args.per_round
    print(f"durable check-in vs bare INSERT+COMMIT, WAL, synchronous=FULL, {n} of each, ms")
    print(f"{'':<22} {'bare p50':>9} {'bare p90':>9} {'ours p50':>9} {'ours p90':>9} {'ratio':>8}")
    for row in rows:
        print(row)
    print(
        "WAL bytes per check-in (with its share of tube opens and seals): "
        f"ours {wal[0]:.0f}, bare {wal[1]:.0f}"
    )
    print("alone, split at the start of the COMMIT (a separate traced pass), ms p50:")
    print(f"{'':<22} {'before':>9} {'COMMIT':>9} {'frames':>9}")
    for name, (before, commit, frames) in phases.items():
        print(f"{name:<22} {before * 1e3:>9.3f} {commit * 1e3:>9.3f} {frames:>9.0f}")
    if phases:
        bare_op = sum(phases["bare"][:2])
        print(
            f"ours' COMMIT alone is {phases['ours'][1] / bare_op:.2f}x the whole bare op; "
            f"the rest of a check-in is {phases['ours'][0] / bare_op:.2f}x"
        )
    worst = max(ratios.values())
    verdict = "meets" if worst < 2.0 else "misses"
    print(f"target: ours < 2x bare; worst ratio {worst:.2f}x ({verdict} the target)")
    m0, m1 = statistics.median(without), statistics.median(with_list)
    ratio = m1 / m0
    print(
        f"recall list of {RECALL_LIST:,} (looked up, missed), {n} check-ins each, ms p50: "
        f"without {m0 * 1e3:.3f}, with {m1 * 1e3:.3f} -> {ratio:.3f}x; "
        f"the read of the check-in's facts: {pre[0]:.1f} us vs {pre[1]:.1f} us"
    )
    verdict = "meets" if ratio < RECALL_TARGET else "misses"
    print(f"target: the recall list adds < 5% to a check-in ({verdict} the target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
