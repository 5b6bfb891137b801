"""The page reader against SQLite itself: whatever rows SQLite writes, the reader reads back
from the pages, overflow chains and WAL included; garbage never raises."""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.pages import PageError, record, table_rows, varint

values = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=300),
    st.binary(max_size=300),
    # long enough to spill into overflow pages, without costing hypothesis much entropy
    st.tuples(st.text(min_size=1, max_size=8), st.integers(600, 3000)).map(lambda t: t[0] * t[1]),
)
rows = st.lists(st.tuples(values, values, values), min_size=1, max_size=25)


def _write(path: Path, data: list[tuple[object, ...]], page_size: int, wal: bool) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA page_size = {page_size}")
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (a, b, c)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t VALUES (?, ?, ?)", data)
    conn.execute("COMMIT")
    if wal:  # keep the rows in the WAL: copy the files as a power cut would leave them
        for suffix in ("", "-wal"):
            Path(f"{path}.cut{suffix}").write_bytes(Path(f"{path}{suffix}").read_bytes())
    conn.close()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(rows, st.sampled_from([512, 1024, 4096]), st.booleans())
def test_the_reader_reads_what_sqlite_wrote(
    data: list[tuple[object, ...]], page_size: int, wal: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.db"
        _write(path, data, page_size, wal)
        source = Path(f"{path}.cut") if wal else path
        found = {rowid: v for rowid, v in table_rows(source) if len(v) == 3}
        assert [found[i + 1] for i in range(len(data))] == [tuple(r) for r in data]


@given(st.integers(0, 2**64 - 1))
def test_varint_round_trip(n: int) -> None:
    # SQLite's encoding: 7 bits a byte, high bit set on all but the last; a 9th byte of 8.
    if n < 1 << 56:
        groups = []
        m = n
        while True:
            groups.append(m & 0x7F)
            m >>= 7
            if not m:
                break
        raw = bytes(g | 0x80 for g in reversed(groups[1:])) + bytes([groups[0]])
    else:
        raw = bytes(((n >> (8 + 7 * (7 - i))) & 0x7F) | 0x80 for i in range(8)) + bytes([n & 0xFF])
    assert varint(raw, 0) == (n, len(raw))


@given(st.binary(max_size=200))
def test_any_bytes_are_a_record_or_a_page_error(data: bytes) -> None:
    try:
        out = record(data)
    except PageError:
        return
    assert all(v is None or isinstance(v, int | float | str | bytes) for v in out)


@settings(max_examples=30, deadline=None)
@given(st.binary(min_size=512, max_size=8192), st.integers(0, 3))
def test_garbage_files_give_no_rows_or_rows_but_never_raise(garbage: bytes, pages: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.db"
        path.write_bytes(garbage * (pages + 1) + os.urandom(64))
        list(table_rows(path))
