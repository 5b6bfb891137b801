"""The delivery core as data: events in, decisions out, no broker and no database.

The cases pin each rule (window, refusal, acks, ack timeout, resend, mark batching and
backoff); the state machine drives the core through any interleaving of appends, publishes,
PUBACKs (good and refused), lost links, gateway acks, full disks and resends against a model
outbox and gateway, and checks that no event is lost, published twice in one pass or out of
order, or marked delivered before the broker (or the gateway) had it.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from edge_agent.delivery import (
    MARK_BATCH,
    MARK_EVERY_S,
    Delivery,
    Limits,
    Marks,
    Puback,
)
from edge_agent.outbox import OutboxRow


def rows(*seqs: int) -> list[OutboxRow]:
    return [OutboxRow(s, f"id-{s}", "sampling.test", b"{}") for s in seqs]


def core(e2e: bool = False, window: int = 3, ack_window: int = 3, timeout: float = 5.0) -> Delivery:
    d = Delivery(Limits.of(e2e, window, ack_window, timeout))
    d.start(0)
    d.connected(0.0, 0, None)
    return d


def seqs(batch: list[OutboxRow]) -> list[int]:
    return [r.seq for r in batch]


# --- cases ------------------------------------------------------------------------------------


def test_the_window_bounds_what_is_in_flight() -> None:
    d = core(window=3)
    assert d.wants_rows()
    d.feed(rows(1, 2, 3, 4, 5), more=False)
    assert seqs(d.next_batch(1.0)) == [1, 2, 3]
    assert not d.wants_rows() and d.next_batch(1.0) == []
    assert d.on_published(1, ok=True) is Puback.ACCEPTED
    assert seqs(d.next_batch(1.1)) == [4]
    for s in (2, 3, 4):
        d.on_published(s, ok=True)
    assert seqs(d.next_batch(1.2)) == [5]
    d.on_published(5, ok=True)
    assert d.wants_rows() and d.next_after == 5


def test_the_brokers_receive_maximum_narrows_the_window() -> None:
    d = core(window=20)
    d.connected(0.0, 0, receive_maximum=5)
    d.feed(rows(*range(1, 11)), more=False)
    assert seqs(d.next_batch(0.0)) == [1, 2, 3]  # two kept for status, telemetry, replies
    d.connected(1.0, 0, receive_maximum=None)
    d.feed(rows(*range(1, 11)), more=False)
    assert len(d.next_batch(1.0)) == 10


def test_a_refused_event_blocks_delivery_until_the_next_connection() -> None:
    d = core(window=3)
    d.feed(rows(1, 2, 3, 4), more=False)
    d.next_batch(0.0)
    assert d.on_published(1, ok=True) is Puback.ACCEPTED
    assert d.on_published(2, ok=False) is Puback.REFUSED
    assert d.on_published(3, ok=True) is Puback.STALE  # never marked: sent again later
    assert d.next_batch(0.0) == [] and not d.wants_rows()
    assert d.marks_due(0.0, force=True) == Marks(0, (1,))
    assert d.connected(1.0, 1, None) is True  # the previous link ended on a refusal
    assert d.next_after == 0 and d.wants_rows()  # from the first not known delivered
    assert d.connected(2.0, 1, None) is False


def test_a_lost_link_forgets_what_was_in_flight() -> None:
    d = core(window=3)
    d.feed(rows(1, 2, 3, 4), more=False)
    d.next_batch(0.0)
    d.link_lost()
    assert d.inflight == {} and not d.buffer
    d.connected(1.0, 0, None)
    d.feed(rows(1, 2, 3, 4), more=False)
    assert seqs(d.next_batch(1.0)) == [1, 2, 3]


def test_end_to_end_the_ack_window_bounds_what_the_gateway_has_not_acknowledged() -> None:
    d = core(e2e=True, window=2, ack_window=4)
    d.feed(rows(1, 2, 3, 4, 5, 6), more=False)
    assert seqs(d.next_batch(0.0)) == [1, 2]
    d.on_published(1, ok=True)
    d.on_published(2, ok=True)
    assert seqs(d.next_batch(0.0)) == [3, 4]
    d.on_published(3, ok=True)
    d.on_published(4, ok=True)
    assert d.next_batch(0.0) == []  # four beyond the gateway's ack: wait for it
    d.on_ack(3)
    d.on_ack(2)  # older: ignored
    assert d.take_ack() == 3 and d.take_ack() is None
    d.accept_ack(3, 1.0)
    assert d.acked_through == 3
    assert seqs(d.next_batch(1.0)) == [5, 6]
    assert d.marks_due(1.0, force=True) == Marks(3, (1, 2, 3, 4))


def test_end_to_end_silence_sends_again_from_the_last_ack_once_pubacks_are_back() -> None:
    d = core(e2e=True, window=2, ack_window=10, timeout=5.0)
    d.feed(rows(1, 2, 3), more=False)
    d.next_batch(0.0)
    assert not d.check_ack_timeout(5.0)
    assert d.check_ack_timeout(5.1)
    assert not d.check_ack_timeout(20.0)  # one rewind at a time
    assert d.next_batch(5.2) == []  # 1 and 2 still in flight
    d.on_published(1, ok=True)
    d.on_published(2, ok=True)
    assert d.next_after == 2 and seqs(list(d.buffer)) == [3]
    assert d.next_batch(5.3) == [] and not d.buffer  # the rewind happened: nothing fed yet
    assert d.next_after == 0 and d.wants_rows() and d.maybe_more


def test_resend_from_rewinds_and_forgets_the_acks_beyond() -> None:
    d = core(e2e=True, window=5, ack_window=10)
    d.feed(rows(1, 2, 3), more=False)
    d.next_batch(0.0)
    for s in (1, 2, 3):
        d.on_published(s, ok=True)
    d.accept_ack(3, 0.0)
    d.resend_from(2)
    assert d.acked_through == 1
    d.next_batch(0.0)
    assert d.next_after == 1 and d.wants_rows()


def test_resend_from_ahead_of_the_pass_skips_nothing() -> None:
    # The gateway asks for 5 on while 1..4 were not sent yet in this pass (found by the
    # state machine below: the pass used to jump forward to 4, skipping 2..4).
    d = core(window=1)
    d.feed(rows(1, 2, 3, 4, 5), more=False)
    assert seqs(d.next_batch(0.0)) == [1]
    d.resend_from(5)
    d.on_published(1, ok=True)
    assert d.next_batch(0.0) == [] and d.next_after == 1 and d.wants_rows()
    d.feed(rows(2, 3), more=False)
    assert seqs(d.next_batch(0.0)) == [2]
    d.resend_from(9)  # then 3 while that rewind waits for 2's PUBACK: back to 2 at most
    d.resend_from(3)
    assert d.rewind_to == 2


def test_marks_wait_for_a_batch_a_pause_or_idle_and_back_off_after_a_failed_write() -> None:
    d = core(window=MARK_BATCH + 10)
    d.feed(rows(*range(1, MARK_BATCH + 5)), more=False)
    d.next_batch(0.0)
    d.on_published(1, ok=True)
    assert d.marks_due(0.0) is None  # events in flight, too few, too soon
    assert d.marks_due(MARK_EVERY_S) == Marks(0, (1,))
    assert d.record_failed(MARK_EVERY_S) == 1.0
    assert d.marks_due(0.5) is None and d.unrecorded()
    assert d.marks_due(0.5, force=True) == Marks(0, (1,))
    assert d.record_failed(0.5) == 2.0
    assert [d.record_failed(0.5) for _ in range(3)] == [4.0, 8.0, 8.0]
    for s in range(2, MARK_BATCH + 1):
        d.on_published(s, ok=True)
    assert d.marks_due(8.4) is None  # the backoff holds even a full batch
    due = d.marks_due(8.5)
    assert due is not None and due.seqs == tuple(range(1, MARK_BATCH + 1))
    assert d.recorded(due.seqs) == 5  # five tries had failed
    assert not d.unrecorded() and d.delivered_count == MARK_BATCH
    assert d.marks_due(100.0, force=True) is None


def test_a_delivered_through_mark_counts_what_it_changed() -> None:
    d = core(e2e=True, window=5, ack_window=10)
    d.accept_ack(4, 0.0)
    assert d.ack_due(0.0) == 4
    d.record_failed(0.0)
    assert d.ack_due(0.5) == 0 and d.ack_due(1.0) == 4
    assert d.recorded_through(4, changed=4) == 1
    assert d.delivered_count == 4 and not d.unrecorded()


# --- any interleaving -------------------------------------------------------------------------


class DeliveryMachine(RuleBasedStateMachine):
    """The agent's calls around the core, against a model outbox, broker and gateway."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.d: Delivery | None = None
        self.delivered: dict[int, bool] = {}  # the outbox: seq -> delivered
        self.puback_ok: set[int] = set()  # seqs the broker ever accepted
        self.gateway: set[int] = set()  # seqs the gateway holds
        self.inflight: list[int] = []  # this connection's publishes awaiting a PUBACK
        self.online = False
        self.disk_full = False
        self.last_published = 0  # in this pass

    @rule(e2e=st.booleans(), window=st.integers(1, 4), ack_window=st.integers(1, 6))
    @precondition(lambda self: self.d is None)
    def start(self, e2e: bool, window: int, ack_window: int) -> None:
        self.d = Delivery(Limits.of(e2e, window, ack_window, 3.0))
        self.d.start(self._mark())

    # the model outbox

    def _mark(self) -> int:
        n = 0
        while self.delivered.get(n + 1, False):
            n += 1
        return n

    def _pending(self, after: int, limit: int) -> list[OutboxRow]:
        start = max(after, self._mark())
        todo = sorted(s for s, done in self.delivered.items() if not done and s > start)
        return rows(*todo[:limit])

    def _gateway_through(self) -> int:
        n = 0
        while n + 1 in self.gateway:
            n += 1
        return n

    @rule(n=st.integers(1, 5))
    def append(self, n: int) -> None:
        last = max(self.delivered, default=0)
        for s in range(last + 1, last + n + 1):
            self.delivered[s] = False
        if self.d is not None:
            self.d.maybe_more = True  # what PRAGMA data_version tells the agent

    # the link

    @rule()
    @precondition(lambda self: self.d is not None and not self.online)
    def connect(self) -> None:
        assert self.d is not None
        self._flush(force=True)
        self.d.connected(self.now, self._mark(), None)
        self.online = True
        self.inflight = []
        self.last_published = self.d.next_after

    @rule()
    @precondition(lambda self: self.online)
    def lose_link(self) -> None:
        assert self.d is not None
        self.online = False
        self.inflight = []
        self.d.link_lost()

    @rule()
    @precondition(lambda self: self.online)
    def fill(self) -> None:
        d = self.d
        assert d is not None
        while True:
            rewind = d.rewind_to
            batch = d.next_batch(self.now)
            if rewind is not None and d.rewind_to is None:
                self.last_published = rewind  # a new pass starts after the rewind's target
            for row in batch:
                assert row.seq > self.last_published, "out of order or twice in one pass"
                assert row.seq not in self.inflight, "published twice in one pass"
                assert not self.inflight or row.seq > self.inflight[-1], "out of order"
                self.inflight.append(row.seq)
                self.last_published = row.seq
            if not d.wants_rows():
                break
            batch = d.limits.batch
            got = self._pending(d.next_after, batch)
            d.feed(got, more=len(got) == batch)
            if not got:
                break

    @rule(data=st.data(), ok=st.booleans(), reaches_gateway=st.booleans())
    @precondition(lambda self: self.online and self.inflight)
    def puback(self, data: st.DataObject, ok: bool, reaches_gateway: bool) -> None:
        assert self.d is not None
        seq = self.inflight.pop(data.draw(st.integers(0, len(self.inflight) - 1)))
        answer = self.d.on_published(seq, ok)
        if ok:
            self.puback_ok.add(seq)
            if reaches_gateway:
                self.gateway.add(seq)
        if answer is Puback.REFUSED:
            self.lose_link()  # the agent closes the link

    @rule()
    @precondition(lambda self: self.online and self.d is not None and self.d.limits.e2e)
    def gateway_acks(self) -> None:
        d = self.d
        assert d is not None
        d.on_ack(self._gateway_through())
        through = d.take_ack()
        if through is not None:
            d.accept_ack(through, self.now)
            if d.ack_due(self.now):
                self._record_ack(through)

    @rule()
    @precondition(lambda self: self.online and self.d is not None)
    def ack_timeout(self) -> None:
        assert self.d is not None
        self.d.check_ack_timeout(self.now)

    @rule(seq=st.integers(1, 30))
    @precondition(lambda self: self.d is not None)
    def resend_from(self, seq: int) -> None:
        d = self.d
        assert d is not None
        if seq > max(self.delivered, default=0):
            return
        self._flush(force=True)
        if d.unrecorded():
            return  # the agent refuses the command
        for s in self.delivered:
            if s >= seq:
                self.delivered[s] = False
        self.gateway = {s for s in self.gateway if s < seq}
        d.resend_from(seq)

    # time, marks and the disk

    @rule(dt=st.sampled_from([0.05, 0.5, 2.0, 10.0]))
    def tick(self, dt: float) -> None:
        self.now += dt
        self._flush()

    @rule(full=st.booleans())
    def disk(self, full: bool) -> None:
        self.disk_full = full

    def _record_ack(self, through: int) -> bool:
        assert self.d is not None
        if self.disk_full:
            self.d.record_failed(self.now)
            return False
        assert through <= self._gateway_through(), "delivered before the gateway had it"
        changed = [s for s in range(1, through + 1) if not self.delivered[s]]
        for s in changed:
            self.delivered[s] = True
        self.d.recorded_through(through, len(changed))
        return True

    def _flush(self, force: bool = False) -> None:
        d = self.d
        if d is None:
            return
        due = d.marks_due(self.now, force)
        if due is None or (due.through and not self._record_ack(due.through)) or not due.seqs:
            return
        if self.disk_full:
            d.record_failed(self.now)
            return
        assert set(due.seqs) <= self.puback_ok, "marked before the broker had it"
        if not d.limits.e2e:
            for s in due.seqs:
                self.delivered[s] = True
        d.recorded(due.seqs)

    @invariant()
    def core_agrees_with_the_connection(self) -> None:
        if self.d is not None and self.online:
            assert sorted(self.d.inflight) == sorted(self.inflight)
            assert len(self.d.inflight) <= self.d.window

    def teardown(self) -> None:
        """A healthy link and disk from here on deliver every event."""
        d = self.d
        if d is None:
            return
        self.disk_full = False
        for _ in range(400):
            if self.delivered and all(self.delivered.values()) and not d.unrecorded():
                break
            if not self.online:
                self.connect()
            self.fill()
            while self.inflight:
                seq = self.inflight.pop(0)
                assert d.on_published(seq, True) is not Puback.REFUSED
                self.puback_ok.add(seq)
                self.gateway.add(seq)
            if d.limits.e2e:
                self.gateway_acks()
            self.now += 10.0
            d.check_ack_timeout(self.now)
            self._flush(force=True)
        assert all(self.delivered.values()), "an event was never delivered"
        if d.limits.e2e:
            assert self._gateway_through() == len(self.delivered)


DeliveryMachine.TestCase.settings = settings(
    max_examples=500, stateful_step_count=60, deadline=None
)
test_any_interleaving_loses_nothing = DeliveryMachine.TestCase
