"""Reading the lab's result files: the variants labs send, and every row it cannot read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.gateway.results import (
    CHINA,
    PoolResult,
    ResultFileError,
    parse_results,
    parse_time,
)

RECEIVED = datetime(2026, 12, 3, 18, 0, tzinfo=CHINA)


def parse(text: str, encoding: str = "utf-8") -> tuple[list[tuple[str, str]], list[str]]:
    got = parse_results(text.encode(encoding), received=RECEIVED)
    return [(r.tube, str(r.result)) for r in got.results], [str(e) for e in got.errors]


def test_the_documented_columns_in_english() -> None:
    got = parse_results(
        b"tube,result,time\n"
        b"TB2026120300001,negative,2026-12-03T14:05:00+08:00\n"
        b"TB2026120300002,positive,2026-12-03T14:06:00+08:00\n"
        b"TB2026120300003,invalid,2026-12-03T14:07:00+08:00\n",
        received=RECEIVED,
    )
    assert [(r.line, r.tube, r.result) for r in got.results] == [
        (2, "TB2026120300001", PoolResult.NEGATIVE),
        (3, "TB2026120300002", PoolResult.POSITIVE),
        (4, "TB2026120300003", PoolResult.INVALID),
    ]
    assert got.results[1].time == datetime(2026, 12, 3, 14, 6, tzinfo=CHINA)
    assert got.errors == []
    assert got.encoding == "utf-8"


def test_a_chinese_excel_export_in_gbk_with_semicolons_and_local_times() -> None:
    text = "样本编号;检测结果;报告时间\nTB01;阴性;2026/12/03 14:05\nTB02;阳性;2026-12-03 14:06:30\n"
    got = parse_results(text.encode("gbk"), received=RECEIVED)
    assert got.encoding == "gb18030"
    assert [(r.tube, r.result, r.time) for r in got.results] == [
        ("TB01", PoolResult.NEGATIVE, datetime(2026, 12, 3, 14, 5, tzinfo=CHINA)),
        ("TB02", PoolResult.POSITIVE, datetime(2026, 12, 3, 14, 6, 30, tzinfo=CHINA)),
    ]


def test_utf8_with_excel_bom_tabs_any_column_order_and_case() -> None:
    text = "\ufeffResult\tTime\tTube ID\nNEG\t2026-12-03T06:05:00Z\ttb03\n"
    got = parse_results(text.encode("utf-8"), received=RECEIVED)
    assert got.encoding == "utf-8-sig"
    assert [(r.tube, r.result) for r in got.results] == [("TB03", PoolResult.NEGATIVE)]
    assert got.results[0].time == datetime(2026, 12, 3, 6, 5, tzinfo=UTC)


def test_bad_rows_are_named_by_line_and_the_rest_is_kept() -> None:
    kept, errors = parse(
        "tube,result,time\n"
        "TB01,negative,2026-12-03 14:05\n"
        ",negative,2026-12-03 14:05\n"
        "TB02,maybe,2026-12-03 14:05\n"
        "TB03,positive,yesterday\n"
        "\n"
        "TB04,positive,\n"
    )
    assert kept == [("TB01", "negative"), ("TB04", "positive")]
    assert errors == [
        "line 3: no tube id",
        "line 4: result 'maybe' is not negative, positive or invalid",
        "line 5: time 'yesterday' is neither RFC 3339 nor YYYY-MM-DD HH:MM",
    ]


def test_a_row_without_a_time_takes_the_import_time() -> None:
    got = parse_results(b"tube,result\nTB01,negative\n", received=RECEIVED)
    assert got.results[0].time == RECEIVED


def test_a_duplicated_row_is_kept_once_and_reported() -> None:
    kept, errors = parse("tube,result\nTB01,negative\nTB01,neg\n")
    assert kept == [("TB01", "negative")]
    assert errors == ["line 3: tube TB01 repeats line 2; kept once"]


def test_two_conflicting_results_keep_neither_unless_the_later_gives_a_reason() -> None:
    kept, errors = parse(
        "tube,result\nTB01,negative\nTB01,positive\nTB01,negative\nTB02,positive\n"
    )
    assert kept == [("TB02", "positive")]
    assert errors == [
        "line 2: tube TB01 is disputed by line 3; not kept",
        "line 3: tube TB01 is positive here but negative on line 2; neither is kept "
        "(a correction needs a reason)",
        "line 4: tube TB01 is disputed since line 3; not kept",
    ]
    kept, errors = parse("tube,result,reason\nTB01,negative,\nTB01,positive,retest of line 2\n")
    assert kept == [("TB01", "positive")]
    assert errors == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"name,value\nTB01,negative\n", "the header line has no tube or result column"),
        (b"tube,when\nTB01,2026-12-03\n", "the header line has no result column"),
        (b"\xff\xfe\x00t\x00u\x00b\x00e", "neither UTF-8 nor GBK/GB18030"),
    ],
)
def test_a_file_that_cannot_be_read_at_all_says_why(data: bytes, message: str) -> None:
    with pytest.raises(ResultFileError, match=message):
        parse_results(data, received=RECEIVED)


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2099, 12, 31),
        timezones=st.sampled_from([CHINA, UTC, timezone(timedelta(hours=-5))]),
    ).map(lambda d: d.replace(microsecond=0))
)
def test_times_round_trip_in_both_forms(when: datetime) -> None:
    assert parse_time(when.isoformat()) == when
    local = when.astimezone(CHINA)
    assert parse_time(local.strftime("%Y-%m-%d %H:%M:%S")) == local


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"TB[0-9]{6}", fullmatch=True),
            st.sampled_from(["negative", "positive", "invalid", "阴性", "阳性", "无效"]),
        ),
        max_size=30,
    ),
    st.sampled_from([",", ";", "\t"]),
    st.sampled_from(["utf-8", "gb18030"]),
)
def test_every_row_is_either_kept_or_reported(
    rows: list[tuple[str, str]], sep: str, encoding: str
) -> None:
    text = f"管号{sep}结果\n" + "".join(f"{t}{sep}{r}\n" for t, r in rows)
    got = parse_results(text.encode(encoding), received=RECEIVED)
    lines = {r.line for r in got.results} | {e.line for e in got.errors}
    assert lines <= set(range(2, len(rows) + 2))
    # a tube is kept at most once, and every row's line is accounted for
    assert len({r.tube for r in got.results}) == len(got.results)
    assert len(got.results) + len(got.errors) == len(rows)
