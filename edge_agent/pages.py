"""Rows read straight from the pages of a SQLite file, for a file SQLite itself cannot open.

What SQLite's ``.recover`` does, for the rows of rowid tables: every page that is a table
b-tree leaf is parsed on its own, so rows survive a destroyed header, a lost interior page or
a broken table tree. (Debian 12's ``sqlite3`` shell has ``.recover``, but its library is built
without the ``sqlite_dbpage`` table the command needs, so there it fails with "SQL logic
error"; Raspberry Pi OS Bookworm is the same.)

The file format (https://www.sqlite.org/fileformat2.html): pages of ``page_size`` bytes
(the 2 bytes at offset 16 of page 1); a table leaf page starts with type 0x0D (at offset 100
on page 1), its cell count at bytes 3-4 and the cell pointers after the 8-byte header; a cell
is the payload length and the rowid (varints), then the payload, whose tail spills into a
chain of overflow pages when it does not fit. A payload is a record: a header of serial types,
then the values. The WAL (``FILE-wal``) holds newer versions of pages: the newest version of
each page up to the last committed frame whose salts match the WAL header is read instead.

Every row comes with no guarantee: a page can be garbage that happens to parse. The caller
checks each row for what it must be (``edge_agent.damage.whole_event``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"SQLite format 3\x00"
TABLE_LEAF = 0x0D
WAL_MAGIC = (0x377F0682, 0x377F0683)
DEFAULT_PAGE_SIZE = 4096

Value = int | float | str | bytes | None


class PageError(ValueError):
    """A page or a cell does not parse."""


def varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A SQLite varint at ``pos``: its value and the position after it."""
    value = 0
    for i in range(9):
        if pos + i >= len(buf):
            raise PageError("a varint runs off the page")
        byte = buf[pos + i]
        if i == 8:
            return (value << 8) | byte, pos + 9
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos + i + 1
    raise AssertionError("unreachable")


def _value(serial: int, data: bytes, pos: int) -> tuple[Value, int]:
    sizes = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8}
    if serial == 0:
        return None, pos
    if serial in sizes:
        n = sizes[serial]
        if pos + n > len(data):
            raise PageError("a value runs off the record")
        return int.from_bytes(data[pos : pos + n], "big", signed=True), pos + n
    if serial == 7:
        if pos + 8 > len(data):
            raise PageError("a value runs off the record")
        return struct.unpack(">d", data[pos : pos + 8])[0], pos + 8
    if serial in (8, 9):
        return serial - 8, pos
    if serial < 12:
        raise PageError(f"serial type {serial} is reserved")
    n = (serial - 12) // 2
    if pos + n > len(data):
        raise PageError("a value runs off the record")
    raw = data[pos : pos + n]
    if serial % 2:
        try:
            return raw.decode("utf-8"), pos + n
        except UnicodeDecodeError:
            raise PageError("text that is not UTF-8") from None
    return raw, pos + n


def record(data: bytes) -> tuple[Value, ...]:
    """The values of one record."""
    header_size, pos = varint(data, 0)
    if not 1 <= header_size <= len(data):
        raise PageError("a record header larger than the record")
    serials = []
    while pos < header_size:
        serial, pos = varint(data, pos)
        serials.append(serial)
    values = []
    pos = header_size
    for serial in serials:
        value, pos = _value(serial, data, pos)
        values.append(value)
    return tuple(values)


@dataclass
class PageFile:
    """The pages of a database file, newest WAL versions included."""

    pages: dict[int, bytes]
    page_size: int
    usable: int

    @classmethod
    def read(cls, path: Path) -> PageFile:
        data = path.read_bytes()
        wal = Path(f"{path}-wal")
        wal_data = wal.read_bytes() if wal.is_file() else b""
        size, reserved = DEFAULT_PAGE_SIZE, 0
        if data.startswith(MAGIC):
            raw = int.from_bytes(data[16:18], "big")
            size = 65536 if raw == 1 else raw
            reserved = data[20]
        elif len(wal_data) >= 32 and int.from_bytes(wal_data[:4], "big") in WAL_MAGIC:
            size = int.from_bytes(wal_data[8:12], "big")
        if size < 512 or size & (size - 1):
            size = DEFAULT_PAGE_SIZE  # a header that is itself garbage
        pages = {n // size + 1: data[n : n + size] for n in range(0, len(data) - size + 1, size)}
        pages.update(_wal_pages(wal_data, size))
        return cls(pages, size, size - reserved)

    def overflow(self, first: int, need: int) -> bytes:
        out = b""
        page, seen = first, set()
        while need > 0:
            if page in seen or page not in self.pages:
                raise PageError(f"overflow chain broken at page {page}")
            seen.add(page)
            body = self.pages[page]
            chunk = body[4 : self.usable][:need]
            out += chunk
            need -= len(chunk)
            page = int.from_bytes(body[:4], "big")
        return out

    def leaf_rows(self, number: int) -> Iterator[tuple[int, tuple[Value, ...]]]:
        """(rowid, values) of every cell of a table leaf page; PageError if it is not one."""
        page = self.pages[number]
        start = 100 if number == 1 else 0
        if len(page) < start + 8 or page[start] != TABLE_LEAF:
            raise PageError("not a table leaf page")
        cells = int.from_bytes(page[start + 3 : start + 5], "big")
        for i in range(cells):
            at = start + 8 + 2 * i
            offset = int.from_bytes(page[at : at + 2], "big")
            if not start + 8 <= offset < self.usable:
                continue  # a pointer overwritten with garbage: the other cells may be whole
            try:
                yield self._cell(page, offset)
            except PageError:
                continue

    def _cell(self, page: bytes, offset: int) -> tuple[int, tuple[Value, ...]]:
        length, pos = varint(page, offset)
        rowid, pos = varint(page, pos)
        if rowid >= 1 << 63:
            rowid -= 1 << 64
        u = self.usable
        most = u - 35
        if length <= most:
            payload = page[pos : pos + length]
        else:
            least = (u - 12) * 32 // 255 - 23
            local = least + (length - least) % (u - 4)
            local = local if local <= most else least
            nxt = int.from_bytes(page[pos + local : pos + local + 4], "big")
            payload = page[pos : pos + local] + self.overflow(nxt, length - local)
        if len(payload) != length:
            raise PageError("a payload runs off the page")
        return rowid, record(payload)


def _wal_pages(wal: bytes, size: int) -> dict[int, bytes]:
    """The newest committed version of each page in a WAL whose frames match its salts."""
    if len(wal) < 32 or int.from_bytes(wal[:4], "big") not in WAL_MAGIC:
        return {}
    if int.from_bytes(wal[8:12], "big") != size:
        return {}
    salts = wal[16:24]
    committed: dict[int, bytes] = {}
    pending: dict[int, bytes] = {}
    pos = 32
    while pos + 24 + size <= len(wal):
        header = wal[pos : pos + 24]
        if header[8:16] != salts:
            break  # frames of an older generation of the WAL
        pending[int.from_bytes(header[:4], "big")] = wal[pos + 24 : pos + 24 + size]
        if int.from_bytes(header[4:8], "big"):  # a commit frame
            committed.update(pending)
            pending.clear()
        pos += 24 + size
    return committed


def table_rows(path: Path) -> Iterator[tuple[int, tuple[Value, ...]]]:
    """Every row of every table leaf page in the file that parses, in page order."""
    pages = PageFile.read(path)
    for number in sorted(pages.pages):
        try:
            yield from pages.leaf_rows(number)
        except PageError:
            continue
