"""The gateway's station list and the day's counts, on both stores (SQLite and PostgreSQL).

The events come from a real Station's outbox (tests/support/gateway_day.py) or, for the
property test, are made to the envelope's shape; status and telemetry are recorded the way the
consumer records what stations publish.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.gateway.counts import (
    CHECKIN,
    COUNTED,
    DECISIONS,
    LANES,
    SEALED,
    Counts,
    Day,
    tally,
    tally_events,
    zone,
)
from edge_agent.gateway.intake import Event, happened_at
from edge_agent.gateway.store import GatewayStore, open_store
from edge_agent.gateway.views import (
    LATE_AFTER_S,
    STATES,
    StationRecord,
    board,
    judge,
    station_json,
)
from firmware.errors import ConfigError
from tests.support.gateway_day import (
    DAY,
    EXPECTED,
    FIRST_HOUR,
    SECOND_HOUR,
    TZ,
    day_total,
    deliver,
    station_day,
)
from tests.support.station import T0


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GatewayStore]:
    if request.param == "sqlite":
        s = open_store(tmp_path / "gateway.db")
    else:
        s = open_store(request.getfixturevalue("pg_url"))
    try:
        yield s
    finally:
        s.close()


def the_day(tz: Any = TZ) -> Day:
    return Day(date.fromisoformat(DAY), tz)


def test_a_station_day_is_counted_per_local_hour_and_in_total(
    store: GatewayStore, tmp_path: Path
) -> None:
    events = station_day(tmp_path / "K03")
    # Delivered five hours late (a dead 4G link): still counted at the hours it happened.
    deliver(store, events, now=T0 + 5 * 3600)
    counted = tally(store, the_day())
    key = ("T01", "K03")
    assert sorted(counted.hours) == [key]
    assert sorted(counted.hours[key]) == [FIRST_HOUR, SECOND_HOUR]
    for hour in (FIRST_HOUR, SECOND_HOUR):
        assert counted.hours[key][hour].as_json() == EXPECTED[hour], hour
    assert counted.station(key).as_json() == day_total()
    assert counted.total().as_json() == day_total()
    hourly = counted.hourly()
    assert len(hourly) == 24
    assert [h.checkins for h in hourly] == [
        {FIRST_HOUR: 6, SECOND_HOUR: 3}.get(h, 0) for h in range(24)
    ]
    # The same events counted in plain Python agree with the database's grouping.
    assert {k: {h: c.as_json() for h, c in v.items()} for k, v in counted.hours.items()} == {
        k: {h: c.as_json() for h, c in v.items()}
        for k, v in tally_events(events, the_day()).hours.items()
    }
    # In UTC the same facts fall at 08:00 and 09:00; the days around hold nothing.
    assert sorted(tally(store, the_day(ZoneInfo("UTC"))).hours[key]) == [8, 9]
    for other in ("2026-11-22", "2026-11-24"):
        assert tally(store, Day(date.fromisoformat(other), TZ)).hours == {}


def test_two_stations_and_a_township_filter(store: GatewayStore, tmp_path: Path) -> None:
    deliver(store, station_day(tmp_path / "K03", "K03"), now=T0)
    deliver(store, station_day(tmp_path / "K04", "K04"), now=T0)
    deliver(store, station_day(tmp_path / "Z01", "Z01", township="T02"), now=T0)
    counted = tally(store, the_day())
    assert sorted(counted.hours) == [("T01", "K03"), ("T01", "K04"), ("T02", "Z01")]
    assert counted.total().checkins == 3 * day_total()["checkins"]
    only = tally(store, the_day(), township="T01")
    assert sorted(only.hours) == [("T01", "K03"), ("T01", "K04")]
    assert only.total().sampled == 2 * day_total()["sampled"]
    city = board(store, the_day(), T0 + 3600, township="T02")  # a city's page for one township
    assert [(x["township"], x["station"]) for x in city["stations"]] == [("T02", "Z01")]
    assert city["totals"]["counts"] == day_total()


# --- the SQL against plain Python, on any events ------------------------------------------

DAYS = {
    "2026-11-23": ("UTC", "Asia/Shanghai", "Asia/Kathmandu", "America/St_Johns"),
    "2026-10-25": ("Europe/Berlin",),  # 25 hours: the clocks go back
    "2026-03-29": ("Europe/Berlin",),  # 23 hours
}

raw_event = st.tuples(
    st.integers(0, 2),  # station
    st.sampled_from([*COUNTED, "sampling.tube.member_added", "sampling.alert.raised"]),
    st.sampled_from([*DECISIONS, "triage"]),  # a decision added to the contract later
    st.sampled_from(LANES),
    st.sampled_from([None, "fever", "red_code", "expired", "already_sampled"]),
    st.integers(0, 12),  # members of a sealed tube
    st.integers(-30 * 3600, 54 * 3600),  # seconds after the day's start in UTC
)


def make_events(township: str, day: str, raw: list[Any]) -> list[Event]:
    start = datetime.fromisoformat(day + "T00:00:00+00:00").timestamp()
    seqs = [0, 0, 0]
    out = []
    for station_i, kind, decision, lane, reason, members, offset in raw:
        seqs[station_i] += 1
        data: dict[str, Any] = {}
        if kind == CHECKIN:
            data = {"decision": decision, "lane": lane, "reason": reason}
        elif kind == SEALED:
            data = {"tube": "T", "members": [f"r{i}" for i in range(members)]}
        t = datetime.fromtimestamp(start + offset, ZoneInfo("UTC"))
        text = t.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        station = f"S{station_i}"
        ev = {
            "id": str(uuid.uuid4()),
            "source": f"urn:sampling:{township}:{station}",
            "type": kind,
            "time": text,
            "seq": seqs[station_i],
            "data": data,
        }
        out.append(
            Event(
                township,
                station,
                seqs[station_i],
                ev["id"],
                kind,
                text,
                happened_at(text),
                json.dumps(ev),
            )
        )
    return out


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    raw=st.lists(raw_event, max_size=60),
    day_zone=st.sampled_from([(d, z) for d, zs in DAYS.items() for z in zs]),
)
def test_the_database_counts_as_plain_python_does(
    store: GatewayStore, raw: list[Any], day_zone: tuple[str, str]
) -> None:
    township = f"P{uuid.uuid4().hex[:8]}"  # one store for every example: each its own township
    events = make_events(township, day_zone[0], raw)
    if events:
        store.store(events, T0)
    day = Day(date.fromisoformat(day_zone[0]), ZoneInfo(day_zone[1]))
    by_sql = tally(store, day, township=township)
    by_python = tally_events((json.loads(e.payload) for e in events), day)
    as_json = lambda t: {k: {h: c.as_json() for h, c in v.items()} for k, v in t.hours.items()}  # noqa: E731
    assert as_json(by_sql) == as_json(by_python)


# --- the station list ---------------------------------------------------------------------

NOW = T0 + 2 * 3600


def status(store: GatewayStore, station: str, state: str, at: float, **extra: Any) -> None:
    body = {"state": state, "at": "2026-11-23T08:00:00.000Z", **extra}
    store.record_station("T01", station, "status", body, at)


def telemetry(store: GatewayStore, station: str, at: float, **over: Any) -> None:
    body: dict[str, Any] = {
        "at": "2026-11-23T10:00:00.000Z",
        "outbox_depth": 3,
        "oldest_undelivered_age_s": 4.5,
        "last_seq": 40,
        "delivered_through": 37,
        "disk_free_mb": 812.0,
        "cpu_temperature_c": 51.2,
        "kiosk_queue_length": 2,
        "alerts": {},
        **over,
    }
    store.record_station("T01", station, "telemetry", body, at)


def test_the_station_list_worst_first_with_each_state_and_why(
    store: GatewayStore, tmp_path: Path
) -> None:
    status(store, "K01", "online", NOW - 600, release="2026.11.2")
    telemetry(store, "K01", NOW - 30)
    status(store, "K02", "online", NOW - 600)
    telemetry(store, "K02", NOW - 20, outbox_depth=240, oldest_undelivered_age_s=2400.0)
    status(store, "K03", "online", NOW - 3600)  # and nothing since: silent for an hour
    status(store, "K04", "online", NOW - 900)
    status(store, "K04", "offline", NOW - 120, reason="stopped")  # or the broker's Last Will
    status(store, "K05", "online", NOW - 300)
    alert = {"since": "2026-11-23T09:58:00.000Z", "detail": "no reading", "seq": 12}
    telemetry(store, "K05", NOW - 10, alerts={"sensor_fault.thermometer": alert})
    k06_events = station_day(tmp_path / "K06", "K06")
    deliver(store, k06_events, now=NOW - 5)  # events, no status yet

    b = board(store, the_day(), NOW)
    names = [s["station"] for s in b["stations"]]
    assert names == ["K03", "K02", "K05", "K04", "K01", "K06"]
    by = {s["station"]: s for s in b["stations"]}
    assert [by[n]["state"] for n in names] == [
        "late",
        "late",
        "alert",
        "offline",
        "online",
        "unknown",
    ]
    assert by["K03"]["late"] == ["silent"] and by["K03"]["silent_s"] == 3600
    assert by["K02"]["late"] == ["undelivered"]
    assert (by["K02"]["outbox_depth"], by["K02"]["oldest_undelivered_age_s"]) == (240, 2400.0)
    assert by["K05"]["alerts"] == ["sensor_fault.thermometer"]
    assert by["K04"]["online"] is False
    k01 = by["K01"]
    assert (k01["release"], k01["disk_free_mb"], k01["cpu_temperature_c"]) == (
        "2026.11.2",
        812.0,
        51.2,
    )
    assert (k01["queue_length"], k01["outbox_depth"], k01["last_seen"]) == (2, 3, NOW - 30)
    k06 = by["K06"]
    assert k06["through"] == len(k06_events) == 23 and k06["online"] is None
    assert k06["counts"] == day_total()
    assert by["K01"]["counts"]["checkins"] == 0
    assert b["totals"]["states"] == {
        "late": 2,
        "alert": 1,
        "offline": 1,
        "online": 1,
        "unknown": 1,
    }
    assert b["totals"]["stations"] == 6
    assert b["totals"]["counts"] == day_total()
    assert [h["checkins"] for h in b["hourly"]][FIRST_HOUR : SECOND_HOUR + 1] == [6, 3]
    json.dumps(b)  # what the API sends


telemetry_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@given(
    tele=st.one_of(
        st.none(),
        st.dictionaries(
            st.sampled_from(
                [
                    "outbox_depth",
                    "oldest_undelivered_age_s",
                    "disk_free_mb",
                    "cpu_temperature_c",
                    "kiosk_queue_length",
                    "alerts",
                ]
            ),
            telemetry_value,
        ),
    ),
    online=st.sampled_from([None, True, False]),
    seen=st.one_of(st.none(), st.floats(0, 2e9)),
)
def test_any_telemetry_gives_a_state_and_valid_json(
    tele: dict[str, Any] | None, online: bool | None, seen: float | None
) -> None:
    rec = StationRecord("T01", "K01", online=online, last_seen=seen, telemetry=tele)
    out = station_json(rec, Counts(), 2e9)
    assert out["state"] in STATES
    text = json.dumps(out, allow_nan=False)  # what the page's JSON.parse accepts
    for key in ("outbox_depth", "oldest_undelivered_age_s", "disk_free_mb", "cpu_temperature_c"):
        value = json.loads(text)[key]
        assert value is None or (isinstance(value, int | float) and value == (tele or {})[key])


def test_silence_is_late_from_exactly_thirty_minutes() -> None:
    rec = StationRecord("T01", "K01", online=True, last_seen=1000.0, telemetry={"alerts": {}})
    assert judge(rec, 1000.0 + LATE_AFTER_S - 1) == ("online", [])
    assert judge(rec, 1000.0 + LATE_AFTER_S) == ("late", ["silent"])
    old = StationRecord(
        "T01",
        "K01",
        online=False,
        last_seen=1000.0,
        telemetry={"oldest_undelivered_age_s": LATE_AFTER_S},
    )
    assert judge(old, 1001.0) == ("late", ["undelivered"])
    assert judge(old, 1000.0 + LATE_AFTER_S) == ("late", ["undelivered", "silent"])
    # Telemetry that does not say a number is no evidence either way.
    for age in (True, "2400", None, [1]):
        odd = StationRecord(
            "T01", "K01", online=True, last_seen=1000.0, telemetry={"oldest_undelivered_age_s": age}
        )
        assert judge(odd, 1001.0) == ("online", []), age
    assert judge(StationRecord("T01", "K09"), 0.0) == ("late", ["silent"])


def test_a_day_and_a_zone_that_do_not_exist_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="not a day"):
        Day.parse("2026-13-01", TZ, T0)
    with pytest.raises(ValueError, match="not a day"):
        Day.parse("yesterday", TZ, T0)
    assert str(Day.parse(None, TZ, T0)) == "2026-11-23"
    assert str(Day.parse("", ZoneInfo("Pacific/Kiritimati"), T0 + 11 * 3600)) == "2026-11-24"
    with pytest.raises(ConfigError, match="unknown time zone"):
        zone("Mars/Olympus_Mons")
    with pytest.raises(ConfigError, match="unknown time zone"):
        zone("../../etc/passwd")
    assert zone("Asia/Shanghai") == TZ
