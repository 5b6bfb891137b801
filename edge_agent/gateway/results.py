"""Pool results from the lab's information system (LIS): reading the file a lab exports.

A lab sends one row per pooled (or single) tube: the tube's barcode, the result and when it
was reported. What reaches a township in practice is a CSV saved by Excel or exported by the
LIS, so the reader accepts the common variants and says exactly what it could not read:

- encodings: UTF-8 (with or without the byte-order mark Excel writes) or GB18030, the
  superset of GBK that a Chinese Excel "CSV" export uses;
- separators: comma, semicolon or tab, whichever the header line uses;
- column names in English or Chinese, in any order, in any case (see ``COLUMNS``);
- results ``negative`` / ``positive`` / ``invalid`` and their usual spellings (see
  ``RESULT_WORDS``);
- times as RFC 3339 or as the local ``YYYY-MM-DD HH:MM[:SS]`` (or with ``/``), read in the
  township's time zone.

A row that cannot be read becomes a ``RowError`` with its line number and a plain sentence;
every other row is kept. Nothing here touches the store: matching rows against the tubes the
township sampled is the importer's job.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from enum import StrEnum

CHINA = timezone(timedelta(hours=8), "CST")


class PoolResult(StrEnum):
    NEGATIVE = "negative"
    POSITIVE = "positive"
    INVALID = "invalid"


# Header words, compared after lower-casing and dropping spaces, "_", "-" and ":".
COLUMNS: dict[str, tuple[str, ...]] = {
    "tube": (
        "tube",
        "tubeid",
        "tubebarcode",
        "barcode",
        "sampleid",
        "specimenid",
        "管号",
        "试管号",
        "试管编号",
        "样本编号",
        "标本编号",
        "条码",
        "样本条码",
    ),
    "result": ("result", "outcome", "poolresult", "结果", "检测结果", "检验结果"),
    "time": (
        "time",
        "resulttime",
        "resultedat",
        "reportedat",
        "reporttime",
        "timestamp",
        "报告时间",
        "检测时间",
        "结果时间",
        "时间",
    ),
    "reason": (
        "reason",
        "note",
        "comment",
        "remark",
        "correctionreason",
        "备注",
        "原因",
        "更正原因",
    ),
}
RESULT_WORDS: dict[str, PoolResult] = {
    **dict.fromkeys(("negative", "neg", "n", "-", "阴性", "未检出"), PoolResult.NEGATIVE),
    **dict.fromkeys(("positive", "pos", "p", "+", "阳性", "检出"), PoolResult.POSITIVE),
    **dict.fromkeys(
        ("invalid", "inv", "failed", "error", "无效", "检测失败", "不合格"), PoolResult.INVALID
    ),
}
_LOCAL_TIME = re.compile(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?$")
MAX_TUBE_CHARS = 64


class ResultFileError(ValueError):
    """The file as a whole cannot be read (no header, no tube or result column)."""


@dataclass(frozen=True, slots=True)
class LabResult:
    line: int
    tube: str
    result: PoolResult
    time: datetime
    reason: str | None


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class ResultFile:
    results: list[LabResult]
    errors: list[RowError]
    encoding: str


def decode(data: bytes) -> tuple[str, str]:
    """The file's text and the encoding it was read with: UTF-8 first, then GB18030."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8"), "utf-8-sig"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030"), "gb18030"
    except UnicodeDecodeError as exc:
        raise ResultFileError(
            f"the file is neither UTF-8 nor GBK/GB18030 text (byte {exc.start} cannot be read)"
        ) from exc


def _key(word: str) -> str:
    return re.sub(r"[\s_\-:：]", "", word).lower()


def _columns(header: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for index, name in enumerate(header):
        key = _key(name)
        for column, words in COLUMNS.items():
            if key in words and column not in found:
                found[column] = index
    missing = [c for c in ("tube", "result") if c not in found]
    if missing:
        raise ResultFileError(
            f"the header line has no {' or '.join(missing)} column "
            f"(it reads: {', '.join(h.strip() for h in header)})"
        )
    return found


def parse_time(text: str, zone: tzinfo = CHINA) -> datetime:
    """An RFC 3339 time, or a local ``YYYY-MM-DD HH:MM[:SS]`` read in ``zone``."""
    text = text.strip()
    if m := _LOCAL_TIME.match(text):
        y, mo, d, h, mi, s = (int(g) if g else 0 for g in m.groups())
        return datetime(y, mo, d, h, mi, s, tzinfo=zone)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"time {text!r} is neither RFC 3339 nor YYYY-MM-DD HH:MM") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=zone)


def _row(
    line: int, cells: list[str], cols: dict[str, int], zone: tzinfo, received: datetime
) -> LabResult:
    def cell(name: str) -> str:
        index = cols.get(name)
        return cells[index].strip() if index is not None and index < len(cells) else ""

    tube = cell("tube").upper()
    if not tube:
        raise ValueError("no tube id")
    if len(tube) > MAX_TUBE_CHARS or not tube.isprintable():
        raise ValueError(f"tube id {tube[:20]!r} is not a barcode")
    word = cell("result")
    result = RESULT_WORDS.get(word.lower())
    if result is None:
        raise ValueError(f"result {word!r} is not negative, positive or invalid")
    when = parse_time(cell("time"), zone) if cell("time") else received
    return LabResult(line, tube, result, when, cell("reason") or None)


class _Rows:
    """The rows kept so far, by tube, and what was said of the others."""

    def __init__(self) -> None:
        self.kept: dict[str, LabResult] = {}
        self.disputed: dict[str, int] = {}  # tube -> the line that first disagreed
        self.errors: list[RowError] = []

    def add(self, row: LabResult) -> None:
        tube, line = row.tube, row.line
        earlier = self.kept.get(tube)
        if tube in self.disputed and not row.reason:
            self.errors.append(
                RowError(
                    line, f"tube {tube} is disputed since line {self.disputed[tube]}; not kept"
                )
            )
        elif earlier is None:
            self.kept[tube] = row
        elif earlier.result == row.result:
            self.errors.append(
                RowError(line, f"tube {tube} repeats line {earlier.line}; kept once")
            )
        elif row.reason:
            self.kept[tube] = row  # a correction within the same file, with its reason
        else:
            del self.kept[tube]
            self.disputed[tube] = line
            self.errors.append(
                RowError(earlier.line, f"tube {tube} is disputed by line {line}; not kept")
            )
            self.errors.append(
                RowError(
                    line,
                    f"tube {tube} is {row.result} here but {earlier.result} on line "
                    f"{earlier.line}; neither is kept (a correction needs a reason)",
                )
            )


def _table(text: str) -> tuple[int, list[list[str]]]:
    """The index of the header row and every row, split on the header line's separator."""
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise ResultFileError("the file is empty")
    try:
        delimiter = csv.Sniffer().sniff(lines[first], delimiters=",;\t").delimiter
    except csv.Error:
        delimiter = ","
    return first, list(csv.reader(io.StringIO(text), delimiter=delimiter))


def parse_results(
    data: bytes, *, zone: tzinfo = CHINA, received: datetime | None = None
) -> ResultFile:
    """Every row read from a LIS export; rows it cannot read come back as errors, not lost.

    A row without a time takes ``received`` (the import's time). A tube that appears twice
    with the same result keeps its first row (the second is reported as a repeat); twice with
    different results and no reason on the later row, neither is kept: two results that
    disagree are for the lab to settle, and the errors name both lines.
    """
    received = received or datetime.now(zone)
    text, encoding = decode(data)
    first, rows = _table(text)
    cols = _columns(rows[first])
    found = _Rows()
    for number, cells in enumerate(rows[first + 1 :], start=first + 2):
        if not any(c.strip() for c in cells):
            continue
        try:
            found.add(_row(number, cells, cols, zone, received))
        except ValueError as exc:
            found.errors.append(RowError(number, str(exc)))
    kept = sorted(found.kept.values(), key=lambda r: r.line)
    return ResultFile(kept, sorted(found.errors, key=lambda e: e.line), encoding)
