"""Property test of the tube lifecycle: random sampler and resident actions, invariants after each.

Invariants: positions in every tube run 1..n without gaps; a sealed (or dispatched) group never
changes; nobody is in two live tubes; a resident waits only while the open tube of their kind
is full or absent; the outbox's seq runs without gaps and every event keeps the contract; the
events alone replay to the same groups the database holds.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from kiosk_ui.errors import RuleViolation
from tests.support.contract import check_outbox
from tests.support.station import open_station, resident

SUBS = [f"r{i:02d}" for i in range(14)]


class TubeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="tubes-"))
        self.rig = open_station(self.dir, {"pool_size": 3})
        self.s = self.rig.station
        self.next_tube = 0
        self.next_box = 0
        self.sealed: dict[str, tuple[str, ...]] = {}

    def teardown(self) -> None:
        self.s.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _tube(self) -> str:
        self.next_tube += 1
        return f"TB{self.next_tube:08d}"

    @rule(sub=st.sampled_from(SUBS), color=st.sampled_from(["green", "green", "yellow", "red"]))
    def check_in(self, sub: str, color: str) -> None:
        r = self.s.check_in(resident(sub, color), [36.6])
        if r.tube is not None:
            assert r.position is not None and r.position <= (r.capacity or 0)

    @rule(fever=st.sampled_from(SUBS))
    def check_in_with_fever(self, fever: str) -> None:
        r = self.s.check_in(resident(fever), [38.0, 38.5])
        assert r.decision == "isolate" and r.tube is None

    @rule(single=st.booleans())
    def scan_tube(self, single: bool) -> None:
        try:
            r = self.s.scan(self._tube(), "S1", mode="single" if single else "pool")
        except RuleViolation as exc:
            assert exc.code in ("tube_full", "tube_still_open")
            return
        assert r.tube is not None and r.tube.count == len(r.joined)

    @rule(single=st.booleans())
    def seal(self, single: bool) -> None:
        t = self.s.open_tube("single" if single else "pool")
        if t is None:
            return
        try:
            after = self.s.seal("S1", tube=t.tube)
        except RuleViolation as exc:
            assert exc.code == "tube_empty" and t.count == 0
            return
        assert after.tube.members == t.members
        self.sealed[t.tube] = t.members

    @rule(pick=st.integers(0, 19))
    def remove(self, pick: int) -> None:
        t = self.s.open_tube()
        if t is None or not t.members:
            return
        who = t.members[pick % len(t.members)]
        after = self.s.remove(who, "left", "S1")
        assert after is not None and who not in after.tube.members

    @rule()
    def void(self) -> None:
        t = self.s.open_tube()
        if t is not None:
            self.s.void("dropped", "S1")

    @rule()
    def void_a_sealed_one(self) -> None:
        ready = self.s.sealed_tubes()
        if ready:
            self.s.void("label smeared", "S1", tube=ready[0].tube)
            del self.sealed[ready[0].tube]

    @rule()
    def dispatch(self) -> None:
        if not self.s.sealed_tubes():
            return
        self.next_box += 1
        self.s.dispatch(f"BX{self.next_box:06d}", "S1")

    @rule(text=st.sampled_from(["HC1:ABC", "nonsense", "BX"]))
    def bad_scan(self, text: str) -> None:
        with pytest.raises(RuleViolation):
            self.s.scan(text, "S1")

    @rule()
    def reuse_the_first_tube(self) -> None:
        if self.next_tube == 0:
            return
        with pytest.raises(RuleViolation) as info:
            self.s.scan("TB00000001", "S1")
        assert info.value.code == "tube_already_used"

    @invariant()
    def positions_run_without_gaps(self) -> None:
        conn = self.s.db.conn
        for (tube,) in conn.execute("SELECT tube FROM tubes").fetchall():
            got = [
                p
                for (p,) in conn.execute(
                    "SELECT position FROM tube_members WHERE tube = ? AND position IS NOT NULL "
                    "ORDER BY position",
                    (tube,),
                )
            ]
            assert got == list(range(1, len(got) + 1))
            t = self.s.tube(tube)
            assert t is not None and t.count <= t.capacity

    @invariant()
    def sealed_groups_never_change(self) -> None:
        for tube, members in self.sealed.items():
            t = self.s.tube(tube)
            assert t is not None and t.state in ("sealed", "dispatched")
            assert t.members == members

    @invariant()
    def nobody_is_in_two_live_tubes_or_both_in_a_tube_and_waiting(self) -> None:
        conn = self.s.db.conn
        rows = conn.execute(
            "SELECT m.resident FROM tube_members m JOIN tubes t ON t.tube = m.tube "
            "WHERE m.position IS NOT NULL AND t.state = 'open'"
        ).fetchall()
        in_open = [r for (r,) in rows]
        assert len(in_open) == len(set(in_open))
        waiting = {w.resident for m in ("pool", "single") for w in self.s.waiting(m)}
        assert not waiting & set(in_open)

    @invariant()
    def residents_wait_only_when_there_is_no_room(self) -> None:
        for mode in ("pool", "single"):
            if self.s.waiting(mode):
                t = self.s.open_tube(mode)
                assert t is None or t.full

    @invariant()
    def the_outbox_keeps_the_contract_and_replays_to_the_same_groups(self) -> None:
        events = check_outbox(self.s.db.conn)
        groups: dict[str, list[str]] = {}
        for e in events:
            d = e["data"]
            if e["type"] == "sampling.tube.opened":
                groups[d["tube"]] = []
            elif e["type"] == "sampling.tube.member_added":
                assert d["position"] == len(groups[d["tube"]]) + 1
                groups[d["tube"]].append(d["resident"])
            elif e["type"] == "sampling.tube.member_removed":
                groups[d["tube"]].remove(d["resident"])
                assert groups[d["tube"]] == d["members"]
            elif e["type"] == "sampling.tube.sealed":
                assert groups[d["tube"]] == d["members"]
        for tube, members in groups.items():
            t = self.s.tube(tube)
            assert t is not None and list(t.members) == members


TubeMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_tube_lifecycle_properties = pytest.mark.timeout(120)(TubeMachine.TestCase)
