"""The kiosk's tables and their migrations: check-ins, tubes and their members, boxes, the
waiting queue, beside the outbox's in the same SQLite file (``edge_agent.outbox``), so a fact
and its event commit in one transaction.

Each entry of :data:`MIGRATIONS` is one schema version, applied once in its own transaction
(``edge_agent.db.migrate``); a released entry never changes, a change is a new entry.
Triggers guard what the rules promise even against a bug elsewhere: a tube that is no
longer open never gains, loses or reorders a member, and a tube barcode is never used twice.
"""

from __future__ import annotations

from edge_agent import outbox
from edge_agent.db import Database, migrate

COMPONENT = "kiosk"

MIGRATIONS: list[str] = [
    """
    CREATE TABLE checkins (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        day TEXT NOT NULL,
        via TEXT NOT NULL CHECK (via IN ('code', 'manual')),
        resident TEXT,
        name TEXT,
        color TEXT,
        cat TEXT NOT NULL DEFAULT '[]',
        readings TEXT NOT NULL DEFAULT '[]',
        temperature_c REAL,
        decision TEXT NOT NULL CHECK (decision IN ('pool', 'single', 'isolate', 'refer')),
        lane TEXT NOT NULL CHECK (lane IN ('main', 'green', 'single', 'isolation', 'staff')),
        reason TEXT,
        staff TEXT,
        event_seq INTEGER NOT NULL,
        purged_at REAL
    );
    CREATE INDEX checkins_day ON checkins(day, decision);
    CREATE TABLE boxes (
        box TEXT PRIMARY KEY,
        dispatched_at REAL NOT NULL,
        day TEXT NOT NULL,
        sampler TEXT NOT NULL
    );
    CREATE TABLE tubes (
        tube TEXT PRIMARY KEY,
        mode TEXT NOT NULL CHECK (mode IN ('pool', 'single')),
        capacity INTEGER NOT NULL CHECK (capacity BETWEEN 1 AND 20),
        state TEXT NOT NULL CHECK (state IN ('open', 'sealed', 'voided', 'dispatched')),
        opened_at REAL NOT NULL,
        opened_by TEXT,
        closed_at REAL,
        closed_day TEXT,
        closed_by TEXT,
        void_reason TEXT,
        box TEXT REFERENCES boxes(box),
        dispatched_at REAL
    );
    CREATE UNIQUE INDEX tubes_one_open_per_mode ON tubes(mode) WHERE state = 'open';
    CREATE TABLE tube_members (
        id INTEGER PRIMARY KEY,
        tube TEXT NOT NULL REFERENCES tubes(tube),
        resident TEXT,
        position INTEGER,
        checkin INTEGER REFERENCES checkins(id),
        added_at REAL NOT NULL,
        removed_at REAL,
        remove_reason TEXT,
        CHECK ((removed_at IS NULL) = (position IS NOT NULL))
    );
    CREATE UNIQUE INDEX tube_members_position ON tube_members(tube, position)
        WHERE position IS NOT NULL;
    CREATE INDEX tube_members_resident ON tube_members(resident, added_at);
    CREATE TABLE waiting (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        mode TEXT NOT NULL CHECK (mode IN ('pool', 'single')),
        resident TEXT NOT NULL UNIQUE,
        checkin INTEGER NOT NULL REFERENCES checkins(id),
        lane TEXT NOT NULL,
        since REAL NOT NULL
    );
    CREATE TRIGGER tube_members_insert_only_open BEFORE INSERT ON tube_members
    WHEN (SELECT state FROM tubes WHERE tube = NEW.tube) IS NOT 'open'
    BEGIN SELECT RAISE(ABORT, 'tube is not open: its group cannot change'); END;
    CREATE TRIGGER tube_members_update_only_open
    BEFORE UPDATE OF tube, position, removed_at, checkin ON tube_members
    WHEN (SELECT state FROM tubes WHERE tube = OLD.tube) IS NOT 'open'
    BEGIN SELECT RAISE(ABORT, 'tube is not open: its group cannot change'); END;
    CREATE TRIGGER tube_members_no_delete BEFORE DELETE ON tube_members
    BEGIN SELECT RAISE(ABORT, 'tube members are never deleted'); END;
    CREATE TRIGGER tubes_no_delete BEFORE DELETE ON tubes
    BEGIN SELECT RAISE(ABORT, 'tubes are never deleted: a barcode stays used'); END;
    CREATE TRIGGER tubes_no_reopen BEFORE UPDATE OF state ON tubes
    WHEN OLD.state IN ('voided', 'dispatched')
      OR (OLD.state = 'sealed' AND NEW.state NOT IN ('voided', 'dispatched'))
    BEGIN SELECT RAISE(ABORT, 'a closed tube does not go back'); END;
    """,
    # 2: a day's check-ins are found from the first id of that day (ids grow as check-ins
    # happen) instead of through a (day, decision) index that every check-in had to update.
    """
    CREATE TABLE checkin_days (
        day TEXT PRIMARY KEY,
        first_checkin INTEGER NOT NULL
    );
    INSERT INTO checkin_days(day, first_checkin) SELECT day, min(id) FROM checkins GROUP BY day;
    DROP INDEX checkins_day;
    """,
    # 3: cheaper writes for every check-in. A CHECK with an IN list builds a small temporary
    # table each time a row is written: the lists become ORs. Tube members are kept in
    # their tube's order (clustered by tube), so the rows of the open tube are together
    # without a (tube, position) index; a trigger keeps positions unique instead.
    """
    CREATE TABLE checkins_v3 (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        day TEXT NOT NULL,
        via TEXT NOT NULL CHECK (via = 'code' OR via = 'manual'),
        resident TEXT,
        name TEXT,
        color TEXT,
        cat TEXT NOT NULL DEFAULT '[]',
        readings TEXT NOT NULL DEFAULT '[]',
        temperature_c REAL,
        decision TEXT NOT NULL CHECK (decision = 'pool' OR decision = 'single'
            OR decision = 'isolate' OR decision = 'refer'),
        lane TEXT NOT NULL CHECK (lane = 'main' OR lane = 'green' OR lane = 'single'
            OR lane = 'isolation' OR lane = 'staff'),
        reason TEXT,
        staff TEXT,
        event_seq INTEGER NOT NULL,
        purged_at REAL
    );
    INSERT INTO checkins_v3 SELECT * FROM checkins;
    DROP TABLE checkins;
    ALTER TABLE checkins_v3 RENAME TO checkins;
    CREATE TABLE tube_members_v3 (
        tube TEXT NOT NULL REFERENCES tubes(tube),
        joined INTEGER NOT NULL,
        resident TEXT,
        position INTEGER,
        checkin INTEGER REFERENCES checkins(id),
        added_at REAL NOT NULL,
        removed_at REAL,
        remove_reason TEXT,
        PRIMARY KEY (tube, joined),
        CHECK ((removed_at IS NULL) = (position IS NOT NULL))
    ) WITHOUT ROWID;
    INSERT INTO tube_members_v3 SELECT tube, row_number() OVER (PARTITION BY tube ORDER BY id),
        resident, position, checkin, added_at, removed_at, remove_reason FROM tube_members;
    DROP TABLE tube_members;
    ALTER TABLE tube_members_v3 RENAME TO tube_members;
    CREATE INDEX tube_members_resident ON tube_members(resident, added_at);
    CREATE TABLE waiting_v3 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        mode TEXT NOT NULL CHECK (mode = 'pool' OR mode = 'single'),
        resident TEXT NOT NULL UNIQUE,
        checkin INTEGER NOT NULL REFERENCES checkins(id),
        lane TEXT NOT NULL,
        since REAL NOT NULL
    );
    INSERT INTO waiting_v3 SELECT * FROM waiting;
    DROP TABLE waiting;
    ALTER TABLE waiting_v3 RENAME TO waiting;
    CREATE TRIGGER tube_members_insert_only_open BEFORE INSERT ON tube_members
    WHEN (SELECT state FROM tubes WHERE tube = NEW.tube) IS NOT 'open'
    BEGIN SELECT RAISE(ABORT, 'tube is not open: its group cannot change'); END;
    CREATE TRIGGER tube_members_update_only_open
    BEFORE UPDATE OF tube, joined, position, removed_at, checkin ON tube_members
    WHEN (SELECT state FROM tubes WHERE tube = OLD.tube) IS NOT 'open'
    BEGIN SELECT RAISE(ABORT, 'tube is not open: its group cannot change'); END;
    CREATE TRIGGER tube_members_no_delete BEFORE DELETE ON tube_members
    BEGIN SELECT RAISE(ABORT, 'tube members are never deleted'); END;
    CREATE TRIGGER tube_members_position_taken BEFORE INSERT ON tube_members
    WHEN NEW.position IS NOT NULL AND EXISTS (SELECT 1 FROM tube_members
        WHERE tube = NEW.tube AND position = NEW.position)
    BEGIN SELECT RAISE(ABORT, 'that position in the tube is taken'); END;
    CREATE TRIGGER tube_members_position_moved_onto_another BEFORE UPDATE OF position
    ON tube_members
    WHEN NEW.position IS NOT NULL AND EXISTS (SELECT 1 FROM tube_members
        WHERE tube = NEW.tube AND position = NEW.position AND joined != NEW.joined)
    BEGIN SELECT RAISE(ABORT, 'that position in the tube is taken'); END;
    """,
    # 4: one trigger checks a new member (tube open, position free): one trigger program
    # per insert instead of two.
    """
    DROP TRIGGER tube_members_insert_only_open;
    DROP TRIGGER tube_members_position_taken;
    CREATE TRIGGER tube_members_insert_checked BEFORE INSERT ON tube_members
    BEGIN
        SELECT RAISE(ABORT, 'tube is not open: its group cannot change')
        WHERE (SELECT state FROM tubes WHERE tube = NEW.tube) IS NOT 'open';
        SELECT RAISE(ABORT, 'that position in the tube is taken')
        WHERE NEW.position IS NOT NULL AND EXISTS (SELECT 1 FROM tube_members
            WHERE tube = NEW.tube AND position = NEW.position);
    END;
    """,
]


def install(db: Database) -> None:
    """Create or upgrade the outbox and the kiosk tables (idempotent)."""
    outbox.install(db)
    migrate(db, COMPONENT, MIGRATIONS)
