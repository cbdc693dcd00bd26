"""End-to-end reliable channel messages (relay/reliable.py): the origin's OutStream and the
destination's InStream, alone and together over a simulated lossy, reordering, duplicating
network with a simulated clock."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from relay.reliable import Copy, InStream, OutStream, ReliableSettings

SETTINGS = ReliableSettings(min_rto_s=1.0, max_rto_s=8.0, give_up_s=100.0, window=16,
                            gap_timeout_s=10.0)


def flat(_: str) -> float:
    return 0.0  # every destination: the minimum RTO


def out_stream(**kw) -> OutStream:
    return OutStream(dataclasses.replace(SETTINGS, **kw))


def in_stream(**kw) -> InStream:
    return InStream(dataclasses.replace(SETTINGS, **kw))


def groups(copies: list[Copy]) -> dict[int, set[str]]:
    """{base: destinations} of the copies of one message."""
    assert len({c.seq for c in copies}) <= 1
    assert len({c.base for c in copies}) == len(copies), "one copy per base"
    return {c.base: set(c.destinations) for c in copies}


# --- OutStream: sending, acknowledgements, copies grouped by base ----------------------------


def test_first_message_goes_to_every_destination_in_one_copy_marked_with_its_base():
    out = out_stream()
    copies = out.send(b"m1", ["fra", "ams"], 0.0, flat)
    assert copies == [Copy(1, 1, frozenset({"fra", "ams"}), b"m1")]
    assert out.next_seq == 2
    assert out.base == {"fra": 1, "ams": 1}
    assert out.acked == {"fra": 0, "ams": 0}
    assert set(out.pending) == {1} and out.pending[1].waiting == {"fra", "ams"}


def test_messages_are_numbered_1_2_3():
    out = out_stream()
    seqs = [out.send(b"x", ["fra"], 0.0, flat)[0].seq for _ in range(5)]
    assert seqs == [1, 2, 3, 4, 5]


def test_acks_settle_pending_and_acked_destinations_share_the_base_0_copy():
    out = out_stream()
    out.send(b"m1", ["fra", "ams"], 0.0, flat)
    out.on_ack("fra", 1)
    assert out.pending[1].waiting == {"ams"}
    # fra has acknowledged: continuing (base 0); ams has not: still marked with its base 1
    assert groups(out.send(b"m2", ["fra", "ams"], 0.1, flat)) == {0: {"fra"}, 1: {"ams"}}
    out.on_ack("ams", 2)  # cumulative: settles 1 and 2 for ams
    assert set(out.pending) == {2} and out.pending[2].waiting == {"fra"}
    out.on_ack("fra", 2)
    assert out.pending == {}
    assert out.next_deadline() is None
    assert out.send(b"m3", ["fra", "ams"], 0.2, flat) == [
        Copy(3, 0, frozenset({"fra", "ams"}), b"m3")]


def test_late_joiner_gets_its_own_copy_with_base_seq_until_it_acks():
    out = out_stream()
    out.send(b"m1", ["fra"], 0.0, flat)
    out.on_ack("fra", 1)
    assert groups(out.send(b"m2", ["fra", "ams"], 1.0, flat)) == {0: {"fra"}, 2: {"ams"}}
    assert out.base["ams"] == 2 and out.acked["ams"] == 1
    # still not acknowledged: the next message (and retransmissions) keep base 2
    assert groups(out.send(b"m3", ["fra", "ams"], 1.1, flat)) == {0: {"fra"}, 2: {"ams"}}
    retransmitted = out.due(2.0, flat)  # m2 (sent at 1.0) is due, m3 (1.1) is not
    assert {c.seq for c in retransmitted} == {2}
    assert groups(retransmitted) == {0: {"fra"}, 2: {"ams"}}
    out.on_ack("ams", 1)  # below its base: nothing to settle, no change
    assert out.acked["ams"] == 1
    out.on_ack("ams", 2)
    assert out.acked["ams"] == 2
    # acknowledged once: it joins the base-0 group, one copy for both
    assert groups(out.send(b"m4", ["fra", "ams"], 1.2, flat)) == {0: {"fra", "ams"}}


def test_retransmissions_after_the_late_joiner_acked_are_continuing_copies():
    out = out_stream()
    out.send(b"m1", ["fra"], 0.0, flat)
    out.on_ack("fra", 1)
    out.send(b"m2", ["fra", "ams"], 0.0, flat)
    out.send(b"m3", ["fra", "ams"], 0.0, flat)
    out.on_ack("fra", 3)
    out.on_ack("ams", 2)
    copies = out.due(1.0, flat)
    assert copies == [Copy(3, 0, frozenset({"ams"}), b"m3")]


def test_three_bases_at_once_one_copy_each_sorted_by_base():
    out = out_stream()
    out.send(b"m1", ["a1"], 0.0, flat)
    out.on_ack("a1", 1)
    out.send(b"m2", ["a1", "b2"], 0.0, flat)
    copies = out.send(b"m3", ["a1", "b2", "c3"], 0.0, flat)
    assert [(c.base, set(c.destinations)) for c in copies] == [
        (0, {"a1"}), (2, {"b2"}), (3, {"c3"})]
    assert all(c.seq == 3 and c.body == b"m3" for c in copies)


def test_send_without_destinations_consumes_a_number_but_keeps_nothing():
    out = out_stream()
    assert out.send(b"m1", [], 0.0, flat) == []
    assert out.pending == {} and out.next_seq == 2
    assert out.send(b"m2", ["fra"], 0.0, flat) == [Copy(2, 2, frozenset({"fra"}), b"m2")]


# --- OutStream: acknowledgements that must be ignored ----------------------------------------


def test_ack_from_an_unknown_destination_is_ignored():
    out = out_stream()
    out.send(b"m1", ["fra"], 0.0, flat)
    out.on_ack("nowhere", 5)
    assert "nowhere" not in out.acked and "nowhere" not in out.base
    assert out.pending[1].waiting == {"fra"}


def test_stale_and_repeated_acks_are_ignored():
    out = out_stream()
    for i in range(4):
        out.send(b"m%d" % i, ["fra", "ams"], 0.0, flat)
    out.on_ack("fra", 3)
    out.on_ack("fra", 2)  # stale (reordered)
    out.on_ack("fra", 3)  # repeated
    out.on_ack("fra", 0)
    assert out.acked["fra"] == 3
    assert sorted(s for s, p in out.pending.items() if "fra" in p.waiting) == [4]
    assert sorted(out.pending) == [1, 2, 3, 4]  # ams has acknowledged nothing


def test_ack_beyond_the_last_sent_message_is_capped():
    out = out_stream()
    out.send(b"m1", ["fra"], 0.0, flat)
    out.send(b"m2", ["fra"], 0.0, flat)
    out.on_ack("fra", 1000)
    assert out.acked["fra"] == 2
    assert out.pending == {}
    # a later message is still waited for
    out.send(b"m3", ["fra"], 0.0, flat)
    assert out.pending[3].waiting == {"fra"}
    out.on_ack("fra", 2)  # not news any more
    assert 3 in out.pending


# --- OutStream: retransmission, backoff, giving up -------------------------------------------


def test_retransmission_timing_doubles_up_to_max_rto():
    out = out_stream(min_rto_s=1.0, max_rto_s=8.0, give_up_s=1000.0)
    first = out.send(b"m1", ["fra"], 0.0, flat)
    assert out.next_deadline() == pytest.approx(1.0)
    assert out.due(0.999, flat) == []
    times = []
    now = 0.0
    for _ in range(7):
        now = out.next_deadline()
        copies = out.due(now, flat)
        assert copies == first  # the same copy, again
        times.append(now)
    assert times == pytest.approx([1.0, 3.0, 7.0, 15.0, 23.0, 31.0, 39.0])
    assert out.pending[1].retries == 7
    assert out.due(now + 7.999, flat) == []


def test_rto_is_the_slowest_waiting_destination_clamped_to_the_limits():
    rtos = {"near": 0.05, "far": 3.0, "moon": 500.0}
    out = out_stream(min_rto_s=1.0, max_rto_s=8.0)
    out.send(b"m1", ["near", "far"], 0.0, rtos.__getitem__)
    assert out.next_deadline() == pytest.approx(3.0)  # the slowest destination decides
    out.on_ack("far", 1)
    out.due(3.0, rtos.__getitem__)
    # only "near" is still waited for: max(0.05, min_rto 1.0) * 2**1
    assert out.next_deadline() == pytest.approx(5.0)
    out2 = out_stream(min_rto_s=1.0, max_rto_s=8.0)
    out2.send(b"m1", ["moon"], 0.0, rtos.__getitem__)
    assert out2.next_deadline() == pytest.approx(8.0)  # capped at max_rto


def test_due_returns_only_the_messages_whose_deadline_passed():
    out = out_stream(min_rto_s=1.0)
    out.send(b"m1", ["fra"], 0.0, flat)
    out.send(b"m2", ["fra"], 0.5, flat)
    assert [c.seq for c in out.due(1.0, flat)] == [1]
    assert [c.seq for c in out.due(1.5, flat)] == [2]
    assert out.due(1.6, flat) == []
    assert out.next_deadline() == pytest.approx(3.0)


def test_nothing_is_retransmitted_to_a_destination_that_acknowledged():
    out = out_stream()
    out.send(b"m1", ["fra", "ams"], 0.0, flat)
    out.on_ack("fra", 1)
    assert groups(out.due(1.0, flat)) == {1: {"ams"}}


def test_gives_up_after_give_up_s_and_counts_each_waiting_destination():
    out = out_stream(min_rto_s=1.0, max_rto_s=2.0, give_up_s=10.0)
    out.send(b"m1", ["fra", "ams", "sin"], 0.0, flat)
    out.on_ack("sin", 1)
    retransmitted = []
    now = 0.0
    while out.pending:
        now = out.next_deadline()
        retransmitted += out.due(now, flat)
        assert now < 20
    assert now >= 10.0
    assert all(c.seq == 1 and set(c.destinations) == {"fra", "ams"} for c in retransmitted)
    assert len(retransmitted) >= 4
    assert out.expired == 2  # (message, destination) pairs: fra and ams, not sin
    assert out.due(now + 100, flat) == []
    assert out.expired == 2


def test_give_up_is_per_message():
    out = out_stream(min_rto_s=1.0, max_rto_s=1.0, give_up_s=5.0)
    out.send(b"m1", ["fra"], 0.0, flat)
    out.send(b"m2", ["fra"], 3.0, flat)
    for t in range(1, 7):
        out.due(float(t), flat)
    assert sorted(out.pending) == [2] and out.expired == 1
    out.due(8.0, flat)
    assert out.pending == {} and out.expired == 2


# --- OutStream: destinations leaving ---------------------------------------------------------


def test_removed_destination_gets_no_more_retransmissions():
    out = out_stream()
    out.send(b"m1", ["fra", "ams"], 0.0, flat)
    out.send(b"m2", ["fra", "ams"], 0.0, flat)
    out.set_destinations(["fra"])
    assert "ams" not in out.base and "ams" not in out.acked
    copies = out.due(1.0, flat)
    assert [c.seq for c in copies] == [1, 2]
    assert all(set(c.destinations) == {"fra"} for c in copies)
    out.on_ack("ams", 2)  # late ack from the departed destination: ignored
    assert "ams" not in out.acked
    out.set_destinations([])
    assert out.pending == {} and out.due(100.0, flat) == []
    assert out.expired == 0  # leaving is not giving up


def test_send_to_a_smaller_set_drops_the_missing_destinations():
    out = out_stream()
    out.send(b"m1", ["fra", "ams"], 0.0, flat)
    assert out.send(b"m2", ["fra"], 0.0, flat) == [Copy(2, 1, frozenset({"fra"}), b"m2")]
    assert out.pending[1].waiting == {"fra"}
    assert "ams" not in out.base


def test_destination_that_rejoins_starts_at_a_new_base():
    out = out_stream()
    out.send(b"m1", ["fra", "ams"], 0.0, flat)
    out.on_ack("fra", 1)
    out.on_ack("ams", 1)
    out.send(b"m2", ["fra"], 0.0, flat)
    assert groups(out.send(b"m3", ["fra", "ams"], 0.0, flat)) == {0: {"fra"}, 3: {"ams"}}
    assert out.base["ams"] == 3 and out.acked["ams"] == 2


# --- InStream --------------------------------------------------------------------------------


def test_in_order_delivery_and_cumulative_ack():
    ins = in_stream()
    assert ins.cumulative == 0
    assert ins.receive(1, 1, b"a", 0.0) == [(1, b"a")]
    assert ins.receive(2, 0, b"b", 0.0) == [(2, b"b")]
    assert ins.cumulative == 2
    assert ins.duplicates == 0 and ins.skipped == 0


def test_out_of_order_is_buffered_and_released_in_order():
    ins = in_stream()
    assert ins.receive(3, 1, b"c", 0.0) == []
    assert ins.receive(2, 1, b"b", 0.0) == []
    assert ins.cumulative == 0
    assert ins.receive(1, 1, b"a", 0.0) == [(1, b"a"), (2, b"b"), (3, b"c")]
    assert ins.cumulative == 3 and ins.buffer == {} and ins.gap_since is None


def test_duplicates_are_counted_and_never_delivered_twice():
    ins = in_stream()
    ins.receive(1, 1, b"a", 0.0)
    assert ins.receive(1, 1, b"a", 0.0) == []
    assert ins.receive(1, 0, b"a", 0.0) == []
    ins.receive(3, 0, b"c", 0.0)
    assert ins.receive(3, 0, b"c", 0.0) == []  # a duplicate of a buffered one
    assert ins.duplicates == 3
    assert ins.receive(2, 0, b"b", 0.0) == [(2, b"b"), (3, b"c")]


def test_first_copy_with_base_0_starts_at_its_own_seq():
    ins = in_stream()
    assert ins.receive(40, 0, b"x", 0.0) == [(40, b"x")]
    assert ins.cumulative == 40


def test_late_joiner_starts_at_its_base():
    ins = in_stream()
    assert ins.receive(7, 5, b"7", 0.0) == []  # 5 and 6 are still to come
    assert ins.cumulative == 4
    assert ins.receive(5, 5, b"5", 0.0) == [(5, b"5")]
    assert ins.receive(4, 0, b"4", 0.0) == []  # before the base: never delivered
    assert ins.duplicates == 1
    assert ins.receive(6, 5, b"6", 0.0) == [(6, b"6"), (7, b"7")]


def test_a_higher_base_restarts_the_stream_there():
    ins = in_stream()
    ins.receive(1, 1, b"1", 0.0)
    ins.receive(4, 0, b"4", 0.0)  # 2 and 3 missing
    assert ins.receive(12, 10, b"12", 1.0) == []
    assert ins.next_seq == 10 and set(ins.buffer) == {12}  # 4 can never be completed
    assert ins.receive(10, 10, b"10", 1.0) == [(10, b"10")]
    assert ins.receive(11, 10, b"11", 1.0) == [(11, b"11"), (12, b"12")]
    assert ins.receive(3, 0, b"3", 1.0) == []  # from before the restart
    assert ins.cumulative == 12 and ins.skipped == 0


def test_a_base_not_above_next_seq_changes_nothing():
    ins = in_stream()
    ins.receive(1, 1, b"1", 0.0)
    ins.receive(2, 1, b"2", 0.0)
    assert ins.receive(4, 3, b"4", 0.0) == []  # base 3 == next_seq: no restart
    assert ins.receive(3, 2, b"3", 0.0) == [(3, b"3"), (4, b"4")]


def test_window_limits_how_far_ahead_is_buffered():
    ins = in_stream(window=3)
    ins.receive(1, 1, b"1", 0.0)  # next is 2: buffers 2..4
    assert ins.receive(5, 0, b"5", 0.0) == []
    assert 5 not in ins.buffer and ins.duplicates == 0
    assert ins.receive(4, 0, b"4", 0.0) == []
    assert set(ins.buffer) == {4}
    assert ins.receive(2, 0, b"2", 0.0) == [(2, b"2")]
    assert ins.receive(5, 0, b"5", 0.0) == []  # within the window now
    assert ins.receive(3, 0, b"3", 0.0) == [(3, b"3"), (4, b"4"), (5, b"5")]


def test_gap_is_skipped_after_gap_timeout():
    ins = in_stream(gap_timeout_s=10.0)
    ins.receive(1, 1, b"1", 0.0)
    ins.receive(4, 0, b"4", 2.0)
    ins.receive(5, 0, b"5", 3.0)
    assert ins.gap_since == 2.0
    assert ins.expire(11.999) == []
    assert ins.expire(12.0) == [(4, b"4"), (5, b"5")]
    assert ins.skipped == 2  # 2 and 3
    assert ins.cumulative == 5 and ins.gap_since is None
    assert ins.receive(3, 0, b"3", 13.0) == []  # the origin gave up on it; too late now
    assert ins.duplicates == 1


def test_expire_without_a_gap_does_nothing():
    ins = in_stream(gap_timeout_s=1.0)
    assert ins.expire(100.0) == []
    ins.receive(1, 1, b"1", 0.0)
    assert ins.expire(100.0) == [] and ins.skipped == 0 and ins.cumulative == 1


def test_gap_timer_restarts_when_the_oldest_gap_closes_but_another_remains():
    ins = in_stream(gap_timeout_s=10.0)
    ins.receive(1, 1, b"1", 0.0)
    ins.receive(3, 0, b"3", 0.0)
    ins.receive(5, 0, b"5", 0.0)
    assert ins.receive(2, 0, b"2", 8.0) == [(2, b"2"), (3, b"3")]
    assert ins.gap_since == 8.0
    assert ins.expire(12.0) == []  # 4's gap opened at 8
    assert ins.expire(18.0) == [(5, b"5")]
    assert ins.skipped == 1


def test_skip_goes_only_to_the_next_buffered_message():
    ins = in_stream(gap_timeout_s=10.0)
    ins.receive(1, 1, b"1", 0.0)
    ins.receive(3, 0, b"3", 0.0)
    ins.receive(6, 0, b"6", 0.0)
    assert ins.expire(10.0) == [(3, b"3")]
    assert ins.skipped == 1 and ins.next_seq == 4
    assert ins.gap_since == 10.0  # a new gap (4, 5) opens now
    assert ins.expire(19.0) == []
    assert ins.expire(20.0) == [(6, b"6")] and ins.skipped == 3


def test_with_default_settings_a_destination_skips_only_after_the_origin_gave_up():
    """The origin retransmits a lost message until give_up_s; the destination, which has the
    next message, must wait at least that long before skipping it (else a retransmission that
    does arrive comes too late and is dropped as a duplicate)."""
    rs = ReliableSettings()
    out, ins = OutStream(rs), InStream(rs)
    out.send(b"lost", ["fra"], 0.0, lambda d: 0.1)
    (second,) = out.send(b"next", ["fra"], 0.01, lambda d: 0.1)
    assert ins.receive(second.seq, second.base, second.body, 0.06) == []
    gave_up = skipped = None
    for i in range(1, 2000):  # ticks every 50 ms, the relay's rate; message 1 is always lost
        now = i * 0.05
        out.due(now, lambda d: 0.1)
        if gave_up is None and 1 not in out.pending:
            gave_up = now
        if ins.expire(now):
            skipped = now
            break
    assert gave_up is not None and skipped is not None
    assert gave_up >= rs.give_up_s
    assert skipped >= gave_up
    assert ins.skipped == 1
    # the destination could not acknowledge 2 before skipping 1: the origin gave up on both
    assert out.expired == 2 and out.pending == {}


def test_expire_after_a_restart_that_emptied_the_buffer_does_not_raise():
    ins = in_stream(window=4, gap_timeout_s=10.0)
    ins.receive(1, 1, b"1", 0.0)
    ins.receive(4, 0, b"4", 0.0)  # gap: gap_since = 0
    # the origin restarted us at 50; this copy is beyond the window, so it is not buffered
    assert ins.receive(100, 50, b"100", 1.0) == []
    assert ins.buffer == {}
    assert ins.expire(100.0) == []  # raises ValueError: min() arg is an empty sequence


def test_restart_at_a_base_restarts_the_gap_timer():
    ins = in_stream(gap_timeout_s=35.0)
    ins.receive(1, 1, b"1", 0.0)
    ins.receive(3, 0, b"3", 0.0)  # a gap opens at 0
    ins.receive(11, 10, b"11", 20.0)  # restarted at 10; 10 itself not here yet
    # 10 was first sent at about 20: the origin retransmits it until about 50
    assert ins.expire(36.0) == []  # actual: skips 10 and delivers 11
    assert ins.skipped == 0
    assert ins.receive(10, 10, b"10", 36.5) == [(10, b"10"), (11, b"11")]


# --- origin and destinations over a simulated network ----------------------------------------


class Net:
    """One OutStream, InStreams per destination, datagrams in flight per destination."""

    def __init__(self, rs: ReliableSettings, dests: list[str]) -> None:
        self.rs = rs
        self.out = OutStream(rs)
        self.ins = {d: InStream(rs) for d in dests}
        self.flight: list[tuple] = []
        self.delivered: dict[str, list[tuple[int, bytes]]] = {d: [] for d in dests}
        self.now = 0.0
        self.expired_for: dict[str, set[int]] = {d: set() for d in dests}
        self.rto = lambda d: 0.05
        self.restarts = 0  # copies that restarted a destination at a higher base
        self.retransmitted = 0

    def emit(self, copies: list[Copy]) -> None:
        for c in copies:
            assert c.base == 0 or c.base <= c.seq
            for d in sorted(c.destinations):
                self.flight.append(("msg", d, c.seq, c.base, c.body))

    def send(self, body: bytes, dests: list[str]) -> None:
        self.emit(self.out.send(body, dests, self.now, self.rto))

    def tick(self, dt: float) -> None:
        self.now += dt
        before = {s: set(p.waiting) for s, p in self.out.pending.items()}
        copies = self.out.due(self.now, self.rto)
        self.retransmitted += len(copies)
        self.emit(copies)
        for s, waiting in before.items():
            if s not in self.out.pending:  # only giving up removes pending in due()
                for d in waiting:
                    self.expired_for[d].add(s)
        for d, ins in self.ins.items():
            self.delivered[d] += ins.expire(self.now)

    def process(self, item: tuple) -> None:
        if item[0] == "msg":
            _, d, seq, base, body = item
            ins = self.ins[d]
            self.restarts += ins.next_seq is not None and base > ins.next_seq
            self.delivered[d] += ins.receive(seq, base, body, self.now)
            if ins.cumulative > 0:
                self.flight.append(("ack", d, ins.cumulative))
        else:
            _, d, cumulative = item
            self.out.on_ack(d, cumulative)

    def check_out_invariants(self) -> None:
        out = self.out
        for seq, p in out.pending.items():
            assert p.waiting, "a pending message waits for someone"
            for d in p.waiting:
                assert out.acked[d] < seq, "waiting for a destination that acknowledged it"
        if out.base and all(out.acked[d] == out.next_seq - 1 for d in out.base):
            assert out.pending == {}, "every destination acknowledged everything"

    def settle(self, limit: int = 20000) -> None:
        """The clean phase: deliver everything in order, retransmit until nothing is pending,
        and let destinations skip what the origin gave up on."""
        for _ in range(limit):
            if self.flight:
                self.process(self.flight.pop(0))
            elif self.out.pending:
                self.tick(max(0.0, self.out.next_deadline() - self.now))
            elif any(ins.buffer for ins in self.ins.values()):
                self.tick(self.rs.gap_timeout_s)
            else:
                return
            self.check_out_invariants()
        pytest.fail("the clean phase did not settle")


OPS = ("send", "deliver", "deliver", "deliver", "dup", "drop", "tick")
LOSSY_OPS = ("send", "send", "deliver", "deliver", "dup", "drop", "drop", "drop", "tick", "tick")


def op_lists(ops: tuple[str, ...] = OPS):
    return st.lists(st.tuples(st.sampled_from(ops), st.integers(0, 10**6)),
                    min_size=20, max_size=150)


def lossy_phase(net: Net, ops, bodies, members_at, max_dt: float) -> int:
    """Run the drawn operations; returns how many messages were sent."""
    sent = 0
    for op, k in ops:
        if op == "send" and sent < len(bodies):
            net.send(bodies[sent], members_at(sent))
            sent += 1
        elif op in ("deliver", "dup", "drop") and net.flight:
            i = k % len(net.flight)
            item = net.flight[i] if op == "dup" else net.flight.pop(i)
            if op != "drop":
                net.process(item)
        elif op == "tick":
            net.tick((k % 1000) / 1000 * max_dt)
        net.check_out_invariants()
    return sent


@settings(max_examples=150, deadline=None)
@given(
    n_msgs=st.integers(1, 20),
    joins=st.lists(st.integers(0, 19), min_size=1, max_size=4),
    window=st.integers(1, 8),
    ops=op_lists(),
)
def test_lossy_network_delivers_each_message_once_in_order_since_joining(
        n_msgs, joins, window, ops):
    dests = [f"d{i}" for i in range(len(joins))]
    join_at = {d: j % n_msgs for d, j in zip(dests, joins, strict=True)}  # first message index
    rs = ReliableSettings(min_rto_s=0.1, max_rto_s=0.8, give_up_s=1e9, window=window,
                          gap_timeout_s=2e9)
    net = Net(rs, dests)
    bodies = [b"m%d" % i for i in range(n_msgs)]

    def members_at(i: int) -> list[str]:
        return [d for d in dests if join_at[d] <= i]

    sent = lossy_phase(net, ops, bodies, members_at, max_dt=1.0)
    for i in range(sent, n_msgs):  # whatever is left is sent during the clean phase
        net.send(bodies[i], members_at(i))
    net.settle()

    for d in dests:
        first = join_at[d]
        expected = [(i + 1, bodies[i]) for i in range(first, n_msgs)]
        assert net.delivered[d] == expected, d
        assert net.ins[d].skipped == 0 and net.ins[d].buffer == {}
        assert net.out.acked[d] == n_msgs
    event(f"duplicates: {any(ins.duplicates for ins in net.ins.values())}")
    event(f"retransmitted: {net.retransmitted > 0}")
    assert net.out.pending == {}
    assert net.out.next_deadline() is None
    assert net.out.expired == 0


@settings(max_examples=100, deadline=None)
@given(
    n_dests=st.integers(1, 3),
    membership=st.lists(st.integers(0, 7), min_size=1, max_size=15),
    ops=op_lists(),
)
def test_destinations_leaving_and_rejoining_still_get_an_ordered_stream(
        n_dests, membership, ops):
    """Membership is drawn per message (a bit mask). A destination delivers in increasing
    order, only what was sent to it, each once, and everything since it last joined."""
    dests = [f"d{i}" for i in range(n_dests)]
    members = [[d for i, d in enumerate(dests) if mask >> i & 1] for mask in membership]
    rs = ReliableSettings(min_rto_s=0.1, max_rto_s=0.8, give_up_s=1e9, window=4,
                          gap_timeout_s=2e9)
    net = Net(rs, dests)
    bodies = [b"m%d" % i for i in range(len(members))]
    sent = lossy_phase(net, ops, bodies, members.__getitem__, max_dt=1.0)
    for i in range(sent, len(members)):
        net.send(bodies[i], members[i])
    net.settle()

    for d in dests:
        sent_to = [i + 1 for i, m in enumerate(members) if d in m]
        seqs = [s for s, _ in net.delivered[d]]
        assert seqs == sorted(set(seqs)), "in order, each once"
        assert set(seqs) <= set(sent_to), "only what was sent to it"
        assert all(body == bodies[s - 1] for s, body in net.delivered[d])
        if d in members[-1]:
            last_join = len(members)
            while last_join > 1 and d in members[last_join - 2]:
                last_join -= 1
            since = list(range(last_join, len(members) + 1))
            assert set(since) <= set(seqs), "everything since it last joined"
    event(f"restarted at a higher base: {net.restarts > 0}")
    assert net.out.pending == {}
    assert net.out.expired == 0


@settings(max_examples=150, deadline=None)
@given(
    n_msgs=st.integers(1, 15),
    joins=st.lists(st.integers(0, 14), min_size=1, max_size=3),
    ops=op_lists(LOSSY_OPS),
)
def test_giving_up_and_skipping_keep_order_and_account_for_every_message(n_msgs, joins, ops):
    """With long outages the origin gives up and destinations skip; a destination never skips
    a message the origin has not given up on, and every message is delivered or expired."""
    dests = [f"d{i}" for i in range(len(joins))]
    join_at = {d: j % n_msgs for d, j in zip(dests, joins, strict=True)}
    max_dt = 3.0
    rs = ReliableSettings(min_rto_s=0.2, max_rto_s=1.0, give_up_s=4.0, window=6,
                          gap_timeout_s=4.0 + 1.0 + max_dt + 0.5)
    net = Net(rs, dests)
    bodies = [b"m%d" % i for i in range(n_msgs)]

    def members_at(i: int) -> list[str]:
        return [d for d in dests if join_at[d] <= i]

    sent = lossy_phase(net, ops, bodies, members_at, max_dt=max_dt)
    for i in range(sent, n_msgs):
        net.send(bodies[i], members_at(i))
    net.settle()

    for d in dests:
        expected = set(range(join_at[d] + 1, n_msgs + 1))
        seqs = [s for s, _ in net.delivered[d]]
        assert seqs == sorted(set(seqs)), "in order, each once"
        assert set(seqs) <= expected
        missing = expected - set(seqs)
        assert missing <= net.expired_for[d], "lost without the origin giving up"
        ins = net.ins[d]
        assert ins.buffer == {}
        if seqs:
            skipped = set(range(join_at[d] + 1, seqs[-1] + 1)) - set(seqs)
            assert ins.skipped == len(skipped)
            assert skipped <= net.expired_for[d], "skipped what the origin still sent"
    event(f"gave up: {net.out.expired > 0}")
    event(f"skipped: {any(ins.skipped for ins in net.ins.values())}")
    assert net.out.pending == {}
    assert net.out.expired == sum(len(s) for s in net.expired_for.values())
