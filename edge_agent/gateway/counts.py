"""The day's counts: per station and local hour, from the gateway's stored events.

Check-ins by decision and lane, fevers and red codes (check-ins sent to isolation for either),
tubes opened, sealed and voided, boxes dispatched, and residents sampled (the members of the
tubes sealed), per station and per local hour of the event's own ``time``: when it happened
at the station, not when it arrived (a backlog delivered at noon still counts at 9 o'clock).

``tally`` is one grouped query in the store's SQL dialect; ``tally_events`` is the same
arithmetic over event dicts in plain Python, which the tests hold the SQL to.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from firmware.errors import ConfigError

CHECKIN = "sampling.checkin.recorded"
OPENED = "sampling.tube.opened"
SEALED = "sampling.tube.sealed"
VOIDED = "sampling.tube.voided"
DISPATCHED = "sampling.box.dispatched"
COUNTED = (CHECKIN, OPENED, SEALED, VOIDED, DISPATCHED)
DECISIONS = ("pool", "single", "isolate", "refer")
LANES = ("main", "green", "single", "isolation", "staff")
QUARTER_S = 900  # every time zone's offset is a whole number of quarter hours

StationKey = tuple[str, str]


class ReadStore(Protocol):
    """The part of the gateway's store the views read through."""

    @property
    def dialect(self) -> str: ...

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


# --- the day ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Day:
    """A calendar day in the township's time zone, and its hours."""

    day: date
    tz: tzinfo

    @classmethod
    def parse(cls, text: str | None, tz: tzinfo, now: float) -> Day:
        """``YYYY-MM-DD``, or today (in ``tz``) when ``text`` is empty."""
        if not text:
            return cls(datetime.fromtimestamp(now, tz).date(), tz)
        try:
            return cls(date.fromisoformat(text), tz)
        except ValueError:
            raise ValueError(f"not a day (YYYY-MM-DD): {text!r}") from None

    @property
    def start(self) -> float:
        return datetime(self.day.year, self.day.month, self.day.day, tzinfo=self.tz).timestamp()

    @property
    def end(self) -> float:
        nxt = self.day + timedelta(days=1)
        return datetime(nxt.year, nxt.month, nxt.day, tzinfo=self.tz).timestamp()

    def hour_of(self, t: float) -> int:
        return datetime.fromtimestamp(t, self.tz).hour

    def __str__(self) -> str:
        return self.day.isoformat()


def event_time(text: str) -> float:
    """An event's RFC 3339 ``time`` as seconds since the epoch."""
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


# --- counts -------------------------------------------------------------------------------


@dataclass
class Counts:
    """The counted facts of one station (or the township) over an hour or a day."""

    checkins: int = 0
    decisions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DECISIONS, 0))
    lanes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LANES, 0))
    fevers: int = 0
    red_codes: int = 0
    tubes_opened: int = 0
    tubes_sealed: int = 0
    tubes_voided: int = 0
    boxes_dispatched: int = 0
    sampled: int = 0  # residents in the tubes sealed

    def add(self, row: TallyRow) -> None:
        n = row.n
        if row.type == CHECKIN:
            self.checkins += n
            if row.decision is not None:
                self.decisions[row.decision] = self.decisions.get(row.decision, 0) + n
            if row.lane is not None:
                self.lanes[row.lane] = self.lanes.get(row.lane, 0) + n
            if row.reason == "fever":
                self.fevers += n
            elif row.reason == "red_code":
                self.red_codes += n
        elif row.type == OPENED:
            self.tubes_opened += n
        elif row.type == SEALED:
            self.tubes_sealed += n
            self.sampled += row.members
        elif row.type == VOIDED:
            self.tubes_voided += n
        elif row.type == DISPATCHED:
            self.boxes_dispatched += n

    def merge(self, other: Counts) -> None:
        for name in FIGURES:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in ((self.decisions, other.decisions), (self.lanes, other.lanes)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in FIGURES}
        out["decisions"] = dict(self.decisions)
        out["lanes"] = dict(self.lanes)
        return out


FIGURES = (
    "checkins",
    "fevers",
    "red_codes",
    "tubes_opened",
    "tubes_sealed",
    "tubes_voided",
    "boxes_dispatched",
    "sampled",
)


@dataclass(frozen=True)
class TallyRow:
    """``n`` events of one kind at one station in one local hour."""

    township: str
    station: str
    hour: int
    type: str
    decision: str | None = None
    lane: str | None = None
    reason: str | None = None
    n: int = 1
    members: int = 0


@dataclass
class Tally:
    """Counts per station and local hour (0-23) of one day."""

    day: Day
    hours: dict[StationKey, dict[int, Counts]] = field(default_factory=dict)

    def add(self, row: TallyRow) -> None:
        per_hour = self.hours.setdefault((row.township, row.station), {})
        per_hour.setdefault(row.hour, Counts()).add(row)

    def station(self, key: StationKey) -> Counts:
        total = Counts()
        for c in self.hours.get(key, {}).values():
            total.merge(c)
        return total

    def total(self) -> Counts:
        total = Counts()
        for key in self.hours:
            total.merge(self.station(key))
        return total

    def hourly(self, key: StationKey | None = None) -> list[Counts]:
        """24 counts, one per local hour, of one station or of the township."""
        out = [Counts() for _ in range(24)]
        for k, per_hour in self.hours.items():
            if key is None or k == key:
                for hour, c in per_hour.items():
                    out[hour].merge(c)
        return out


def tally_events(events: Iterable[Mapping[str, Any]], day: Day) -> Tally:
    """The day's counts from event dicts (CloudEvents, as stations send them)."""
    out = Tally(day)
    start, end = day.start, day.end
    for ev in events:
        kind = ev.get("type")
        if kind not in COUNTED:
            continue
        t = event_time(str(ev["time"]))
        if not start <= t < end:
            continue
        _, _, township, station = str(ev["source"]).split(":", 3)
        data = ev.get("data") or {}
        members = data.get("members")
        out.add(
            TallyRow(
                township,
                station,
                day.hour_of(t),
                str(kind),
                _text(data.get("decision")) if kind == CHECKIN else None,
                _text(data.get("lane")) if kind == CHECKIN else None,
                _text(data.get("reason")) if kind == CHECKIN else None,
                1,
                len(members) if kind == SEALED and isinstance(members, list) else 0,
            )
        )
    return out


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _data_field(dialect: str, name: str) -> str:
    """SQL for the text of ``data.<name>`` in the stored payload."""
    if dialect == "postgresql":
        return f"((payload::jsonb)->'data'->>'{name}')"
    return f"json_extract(payload, '$.data.{name}')"


def _members_sql(dialect: str) -> str:
    if dialect == "postgresql":
        return (
            "(CASE WHEN jsonb_typeof((payload::jsonb)->'data'->'members') = 'array' "
            "THEN jsonb_array_length((payload::jsonb)->'data'->'members') ELSE 0 END)"
        )
    return "coalesce(json_array_length(payload, '$.data.members'), 0)"


def tally_sql(dialect: str, township: str | None) -> str:
    """The grouped query behind ``tally``: counts per station, quarter hour and kind."""
    quarter = (
        f"floor(happened_at / {QUARTER_S})::bigint"
        if dialect == "postgresql"
        else f"CAST(happened_at / {QUARTER_S} AS INTEGER)"  # the epoch's times are positive
    )
    checkin = f"CASE WHEN type = '{CHECKIN}' THEN {{}} END"
    types = ", ".join(f"'{t}'" for t in COUNTED)
    where = "happened_at >= %s AND happened_at < %s AND type IN (" + types + ")"
    if township is not None:
        where += " AND township = %s"
    return (
        f"SELECT township, station, {quarter} AS q, type, "
        f"{checkin.format(_data_field(dialect, 'decision'))} AS decision, "
        f"{checkin.format(_data_field(dialect, 'lane'))} AS lane, "
        f"{checkin.format(_data_field(dialect, 'reason'))} AS reason, "
        f"count(*), sum(CASE WHEN type = '{SEALED}' THEN {_members_sql(dialect)} ELSE 0 END) "
        f"FROM events WHERE {where} GROUP BY 1, 2, 3, 4, 5, 6, 7"
    )


def tally(store: ReadStore, day: Day, township: str | None = None) -> Tally:
    """The day's counts, aggregated by the database."""
    params: list[Any] = [day.start, day.end]
    if township is not None:
        params.append(township)
    out = Tally(day)
    for tw, st, q, kind, decision, lane, reason, n, members in store.query(
        tally_sql(store.dialect, township), params
    ):
        out.add(
            TallyRow(
                str(tw),
                str(st),
                day.hour_of(int(q) * QUARTER_S),
                str(kind),
                _text(decision),
                _text(lane),
                _text(reason),
                int(n),
                int(members or 0),
            )
        )
    return out


def zone(name: str | None) -> tzinfo:
    """The township's time zone by IANA name (``Asia/Shanghai``); the machine's when empty."""
    if not name:
        local = datetime.now().astimezone().tzinfo
        return local if local is not None else UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("--timezone", [f"unknown time zone {name!r}"]) from None
