"""LinkStats: the probe statistics of one directed link, fed explicit times (no sleeps)."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.probe import DEGRADED, DOWN, UNKNOWN, UP, LinkStats, ProbeSettings


def reply(stats: LinkStats, seq: int, sent: float, rtt_ms: float) -> float | None:
    """Send probe `seq` at `sent` and receive its reply `rtt_ms` later."""
    stats.sent(seq, sent)
    return stats.received(seq, sent + rtt_ms / 1000.0)


def replies(stats: LinkStats, rtts: list[float], start_seq: int = 0, start: float = 0.0) -> None:
    for i, rtt in enumerate(rtts):
        reply(stats, start_seq + i, start + i, rtt)


def lose(stats: LinkStats, seqs: range, start: float = 0.0) -> None:
    """Send probes one second apart and let each of them time out."""
    for i, seq in enumerate(seqs):
        stats.sent(seq, start + i)
    stats.expire(start + len(seqs) + stats.settings.timeout_s + 1)


# --- fresh state ----------------------------------------------------------------------------


def test_fresh_link_is_unknown_and_unmeasured():
    stats = LinkStats()
    assert stats.state == UNKNOWN
    assert not stats.measured
    assert stats.srtt is None
    assert stats.min_rtt is None
    assert stats.loss == 0.0
    assert stats.jitter == 0.0
    assert stats.age(100.0) == -1.0


def test_default_settings_are_used_when_none_given():
    assert LinkStats().settings == ProbeSettings()
    custom = ProbeSettings(window=7)
    assert LinkStats(custom).outcomes.maxlen == 7


# --- RTT, smoothing, minimum ----------------------------------------------------------------


def test_received_returns_rtt_in_ms():
    stats = LinkStats()
    stats.sent(1, 10.0)
    assert stats.received(1, 10.25) == pytest.approx(250.0)
    assert stats.samples == 1
    assert stats.last_reply == 10.25


def test_first_reply_sets_srtt_then_ewma_with_alpha():
    stats = LinkStats(ProbeSettings(alpha=0.25))
    reply(stats, 1, 0.0, 100.0)
    assert stats.srtt == pytest.approx(100.0)
    reply(stats, 2, 1.0, 200.0)
    assert stats.srtt == pytest.approx(100.0 + 0.25 * (200.0 - 100.0))
    reply(stats, 3, 2.0, 50.0)
    assert stats.srtt == pytest.approx(125.0 + 0.25 * (50.0 - 125.0))


def test_default_alpha_is_tcp_srtt():
    stats = LinkStats()
    replies(stats, [80.0, 160.0])
    assert stats.srtt == pytest.approx(80.0 + 0.125 * 80.0)


def test_min_rtt_over_last_min_window_replies():
    stats = LinkStats(ProbeSettings(min_window=3, min_window_s=0.5))  # replies 1 s apart
    replies(stats, [10.0, 50.0, 40.0])
    assert stats.min_rtt == pytest.approx(10.0)
    replies(stats, [60.0], start_seq=3, start=3.0)
    # the 10 ms reply is now 4 replies old: the minimum is taken over 50, 40, 60
    assert stats.min_rtt == pytest.approx(40.0)
    replies(stats, [70.0, 80.0], start_seq=4, start=4.0)
    assert stats.min_rtt == pytest.approx(60.0)


def test_one_clean_sample_corrects_min_rtt_after_queueing_burst():
    stats = LinkStats(ProbeSettings(min_window=5, min_window_s=0.5))
    replies(stats, [20.0] * 5 + [400.0] * 4)
    srtt_after_burst = stats.srtt
    replies(stats, [21.0], start_seq=9, start=9.0)
    assert stats.min_rtt == pytest.approx(21.0)
    assert stats.srtt > 100.0  # the smoothed RTT is still far off
    assert srtt_after_burst > stats.srtt


def test_losses_do_not_enter_min_window():
    stats = LinkStats(ProbeSettings(min_window=2))
    replies(stats, [30.0, 10.0])
    lose(stats, range(10, 15), start=10.0)
    assert stats.min_rtt == pytest.approx(10.0)


# --- jitter ----------------------------------------------------------------------------------


def test_jitter_rfc3550_between_consecutive_rtts():
    stats = LinkStats()
    reply(stats, 1, 0.0, 100.0)
    assert stats.jitter == 0.0  # one sample has no variation
    reply(stats, 2, 1.0, 132.0)
    assert stats.jitter == pytest.approx(32.0 / 16)
    reply(stats, 3, 2.0, 100.0)
    j = 2.0 + (32.0 - 2.0) / 16
    assert stats.jitter == pytest.approx(j)
    reply(stats, 4, 3.0, 100.0)
    assert stats.jitter == pytest.approx(j + (0.0 - j) / 16)


def test_constant_rtt_has_no_jitter():
    stats = LinkStats()
    replies(stats, [42.0] * 20)
    assert stats.jitter == pytest.approx(0.0, abs=1e-9)


# --- loss ------------------------------------------------------------------------------------


def test_expire_counts_only_probes_older_than_timeout():
    stats = LinkStats(ProbeSettings(timeout_s=2.0))
    stats.sent(1, 0.0)
    stats.sent(2, 1.0)
    assert stats.expire(2.0) == 0  # exactly the timeout is not yet late
    assert stats.expire(2.5) == 1
    assert stats.lost == 1
    assert 2 in stats.outstanding and 1 not in stats.outstanding
    assert stats.expire(3.5) == 1
    assert stats.lost == 2
    assert stats.expire(100.0) == 0


def test_windowed_loss_rate():
    stats = LinkStats(ProbeSettings(window=4))
    replies(stats, [10.0, 10.0, 10.0])
    lose(stats, range(3, 4), start=3.0)
    assert stats.loss == pytest.approx(1 / 4)
    replies(stats, [10.0, 10.0, 10.0], start_seq=4, start=10.0)
    assert stats.loss == pytest.approx(1 / 4)  # F, T, T, T
    replies(stats, [10.0], start_seq=7, start=20.0)
    # the window holds 4 outcomes: the loss has aged out
    assert stats.loss == 0.0
    assert stats.lost == 1  # the lifetime counter stays


def test_late_reply_after_expiry_proves_the_link_alive_and_was_no_loss():
    """The probe was missed (it counted towards the run of misses that finds a dead link),
    but the reply resets that run, takes the miss back out of the loss rate and its RTT
    teaches the timeout that the link got slower."""
    stats = LinkStats(ProbeSettings(timeout_s=1.0))
    stats.sent(6, 0.0)
    assert stats.received(6, 0.1) is not None
    stats.sent(7, 0.5)
    assert stats.expire(2.0) == 1
    assert stats.loss == 0.5 and stats.lost == 1 and stats.consecutive_lost == 1
    assert stats.received(7, 2.1) == pytest.approx(1600.0)
    assert stats.received(7, 2.2) is None  # once only
    assert stats.loss == 0.0 and stats.lost == 0
    assert stats.consecutive_lost == 0
    # srtt 100 + 1500 / 8 ms, jitter 1500 / 16 ms: a timeout of 662.5 ms, up from 120
    assert stats.timeout() == pytest.approx(0.6625)


def test_a_late_reply_whose_miss_left_the_window_changes_only_the_count():
    stats = LinkStats(ProbeSettings(timeout_s=1.0, window=2))
    stats.sent(1, 0.0)
    assert stats.expire(1.5) == 1
    replies(stats, [10.0, 10.0], start_seq=2, start=2.0)
    assert stats.loss == 0.0 and stats.lost == 1
    assert stats.received(1, 5.0) is not None
    assert stats.lost == 0 and list(stats.outcomes) == [(2, True), (3, True)]


def test_duplicate_reply_returns_none():
    stats = LinkStats()
    stats.sent(3, 0.0)
    assert stats.received(3, 0.05) == pytest.approx(50.0)
    assert stats.received(3, 0.06) is None
    assert stats.samples == 1
    assert list(stats.outcomes) == [(3, True)]


def test_unknown_seq_returns_none():
    stats = LinkStats()
    stats.sent(1, 0.0)
    assert stats.received(99, 0.1) is None
    assert stats.samples == 0
    assert 1 in stats.outstanding


def test_reply_before_send_time_is_ignored():
    stats = LinkStats()
    stats.sent(1, 10.0)
    assert stats.received(1, 9.0) is None
    assert stats.samples == 0
    assert stats.srtt is None


def test_reply_just_in_time_counts():
    stats = LinkStats(ProbeSettings(timeout_s=2.0))
    stats.sent(1, 0.0)
    assert stats.expire(2.0) == 0
    assert stats.received(1, 2.0) == pytest.approx(2000.0)
    assert stats.loss == 0.0


# --- states ----------------------------------------------------------------------------------


def test_up_after_a_clean_reply():
    stats = LinkStats()
    reply(stats, 1, 0.0, 30.0)
    assert stats.state == UP


def test_down_after_down_after_consecutive_losses():
    stats = LinkStats(ProbeSettings(down_after=3, timeout_s=1.0))
    replies(stats, [20.0] * 5)
    for i, seq in enumerate(range(10, 13)):
        stats.sent(seq, 10.0 + i)
        stats.expire(10.0 + i + 1.5)
        expected = DOWN if i == 2 else DEGRADED
        assert stats.state == expected, (i, stats.state)
    assert stats.consecutive_lost == 3


def test_down_without_any_reply():
    stats = LinkStats(ProbeSettings(down_after=2))
    lose(stats, range(2))
    assert stats.state == DOWN
    assert stats.measured  # a dead link is known to be dead


def test_losses_separated_by_a_reply_are_not_consecutive():
    stats = LinkStats(ProbeSettings(down_after=3, degraded_loss=1.0))
    replies(stats, [20.0])
    lose(stats, range(1, 3), start=1.0)
    reply(stats, 10, 20.0, 20.0)
    lose(stats, range(11, 13), start=30.0)
    assert stats.consecutive_lost == 2
    assert stats.state == UP


def test_reply_ends_down_and_link_is_up_once_losses_leave_window():
    stats = LinkStats(ProbeSettings(window=5, down_after=3, up_after=1))
    replies(stats, [20.0] * 3)
    lose(stats, range(3, 6), start=3.0)
    assert stats.state == DOWN
    reply(stats, 6, 20.0, 20.0)
    assert stats.consecutive_lost == 0
    assert stats.state != DOWN
    # the window still remembers the losses: degraded, not down
    assert stats.state == DEGRADED
    replies(stats, [20.0] * 4, start_seq=7, start=21.0)
    assert stats.loss == 0.0
    assert stats.state == UP


def test_reply_after_down_is_up_when_loss_threshold_allows():
    stats = LinkStats(ProbeSettings(down_after=3, up_after=1, degraded_loss=1.0))
    lose(stats, range(3))
    assert stats.state == DOWN
    reply(stats, 3, 10.0, 15.0)
    assert stats.state == UP


def test_a_down_link_needs_up_after_replies_in_a_row_to_come_back():
    stats = LinkStats(ProbeSettings(down_after=3, up_after=3, degraded_loss=1.0))
    lose(stats, range(3))
    reply(stats, 3, 10.0, 15.0)
    reply(stats, 4, 11.0, 15.0)
    assert stats.state == DOWN
    lose(stats, range(5, 6), start=12.0)  # one miss restarts the count
    reply(stats, 6, 20.0, 15.0)
    reply(stats, 7, 21.0, 15.0)
    assert stats.state == DOWN
    reply(stats, 8, 22.0, 15.0)
    assert stats.state == UP


def test_the_timeout_is_the_smoothed_rtt_plus_four_jitters_or_the_margin():
    cfg = ProbeSettings(timeout_s=2.0, jitter_factor=4.0, margin_s=0.02, min_timeout_s=0.05,
                        alpha=0.125)
    stats = LinkStats(cfg)
    assert stats.timeout() == 2.0  # nothing known yet
    replies(stats, [100.0, 100.0])
    assert stats.timeout() == pytest.approx(0.12)  # no jitter: the margin
    replies(stats, [260.0], start_seq=2, start=2.0)
    srtt, jitter = 100 + 160 / 8, 160 / 16
    assert stats.jitter == pytest.approx(jitter)
    assert stats.timeout() == pytest.approx((srtt + 4 * jitter) / 1000)
    fast = LinkStats(cfg)
    replies(fast, [5.0] * 3)
    assert fast.timeout() == pytest.approx(0.05)  # the floor
    slow = LinkStats(cfg)
    replies(slow, [5000.0])
    assert slow.timeout() == 2.0  # the cap


def test_liveness_replies_move_the_timeout_not_the_minimum():
    stats = LinkStats(ProbeSettings(alpha=0.5))
    replies(stats, [40.0] * 3)
    stats.sent(10, 5.0, sample=False)
    assert stats.received(10, 5.2) == pytest.approx(200.0)
    assert stats.srtt == pytest.approx(120.0) and stats.min_rtt == pytest.approx(40.0)
    assert stats.samples == 3


def test_a_dead_link_is_down_after_down_after_probe_intervals():
    """At 100 ms probes over a 40 ms link, three misses in a row take about three intervals
    plus the timeout from the failure."""
    stats = LinkStats(ProbeSettings(down_after=3))
    t = 0.0
    for seq in range(20):
        reply(stats, seq, t, 40.0)
        t += 0.1
    failed_at = next_probe = t
    seq = 100
    while stats.state != DOWN:
        assert t - failed_at < 1.0, "not detected within a second"
        if t >= next_probe - 1e-9:
            stats.sent(seq, t)
            seq += 1
            next_probe += 0.1
        t += 0.01
        stats.expire(t)
    # the third probe after the failure leaves at +0.2 s and is missed 40 ms + 20 ms later
    # (no jitter: the margin; the timeout's floor, 50 ms, is below that)
    assert t - failed_at == pytest.approx(0.2 + 0.06, abs=0.011)


def test_degraded_by_loss_above_threshold():
    stats = LinkStats(ProbeSettings(degraded_loss=0.1, window=10))
    replies(stats, [20.0] * 9)
    lose(stats, range(9, 10), start=9.0)
    assert stats.loss == pytest.approx(0.1)
    assert stats.state == UP  # at the threshold is not above it
    reply(stats, 20, 30.0, 20.0)
    lose(stats, range(21, 22), start=31.0)
    assert stats.loss == pytest.approx(0.2)
    assert stats.state == DEGRADED


def test_degraded_by_jitter_above_threshold():
    stats = LinkStats(ProbeSettings(degraded_jitter_ms=5.0))
    rtts = [20.0, 200.0] * 5
    replies(stats, rtts)
    assert stats.jitter > 5.0
    assert stats.loss == 0.0
    assert stats.state == DEGRADED


# --- measured and age ------------------------------------------------------------------------


def test_measured_after_min_samples_replies():
    stats = LinkStats(ProbeSettings(min_samples=3))
    replies(stats, [10.0, 10.0])
    assert not stats.measured
    replies(stats, [10.0], start_seq=2, start=2.0)
    assert stats.measured


def test_losses_below_down_after_do_not_make_measured():
    stats = LinkStats(ProbeSettings(min_samples=3, down_after=3))
    lose(stats, range(2))
    assert not stats.measured


def test_age_since_last_reply():
    stats = LinkStats()
    stats.sent(1, 100.0)
    stats.received(1, 100.5)
    assert stats.age(103.0) == pytest.approx(2.5)
    stats.sent(2, 103.0)
    stats.expire(110.0)
    assert stats.age(110.0) == pytest.approx(9.5)  # losses do not refresh the age


# --- properties ------------------------------------------------------------------------------

events = st.lists(
    st.one_of(
        st.tuples(st.just("reply"), st.floats(0.0, 1500.0)),
        st.tuples(st.just("lose"), st.just(0.0)),
    ),
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(events, st.integers(1, 20), st.integers(1, 30), st.floats(0.01, 1.0))
def test_statistics_match_a_straightforward_model(evs, min_window, window, alpha):
    cfg = ProbeSettings(timeout_s=2.0, window=window, min_window=min_window, alpha=alpha)
    stats = LinkStats(cfg)
    now = 0.0
    rtts: list[float] = []
    outcomes: list[bool] = []
    run = ok_run = 0
    down = False
    for seq, (kind, rtt) in enumerate(evs):
        stats.sent(seq, now)
        if kind == "reply":
            got = stats.received(seq, now + rtt / 1000.0)
            assert got == pytest.approx(rtt, abs=1e-6)
            rtts.append(got)
            outcomes.append(True)
            run = 0
            ok_run += 1
            down = down and ok_run < cfg.up_after
        else:
            assert stats.expire(now + 2.5) == 1
            outcomes.append(False)
            run += 1
            ok_run = 0
            down = down or run >= cfg.down_after
        now += 10.0
    assert stats.samples == len(rtts)
    assert stats.lost == outcomes.count(False)
    assert stats.consecutive_lost == run
    recent = outcomes[-window:]
    assert stats.loss == pytest.approx(recent.count(False) / len(recent) if recent else 0.0)
    assert 0.0 <= stats.loss <= 1.0
    assert stats.jitter >= 0.0
    if rtts:
        assert stats.min_rtt == pytest.approx(min(rtts[-min_window:]))
        assert min(rtts) - 1e-6 <= stats.srtt <= max(rtts) + 1e-6
        assert stats.jitter <= max(rtts) - min(rtts) + 1e-6
    else:
        assert stats.min_rtt is None and stats.srtt is None
    if down:
        assert stats.state == DOWN
    elif not rtts:
        assert stats.state == UNKNOWN
    else:
        assert stats.state in (UP, DEGRADED)
    assert not stats.outstanding
    assert all(math.isfinite(x) for _, x in stats.recent)


def test_fast_probes_keep_the_minimum_over_the_time_window():
    """At 100 ms probes the minimum still covers ten seconds of replies, not one: a link's
    latency estimate does not follow every burst of queueing."""
    stats = LinkStats(ProbeSettings(min_window=10, min_window_s=10.0))
    t = 0.0
    for i in range(200):
        reply(stats, i, t, 20.0 if i == 50 else 30.0)
        t += 0.1
        if i == 140:  # 9 s after the clean sample
            assert stats.min_rtt == pytest.approx(20.0)
    assert stats.min_rtt == pytest.approx(30.0)  # 15 s after it
    assert len(stats.recent) <= 101


def test_liveness_probes_watch_the_link_but_leave_the_rtt_statistics_alone():
    stats = LinkStats(ProbeSettings(down_after=3))
    reply(stats, 1, 0.0, 30.0)
    stats.sent(2, 1.0, sample=False)
    assert stats.received(2, 1.005) == pytest.approx(5.0)  # a lucky fast reply
    assert stats.min_rtt == pytest.approx(30.0) and stats.samples == 1
    for seq in range(3, 6):  # three liveness probes missed: down all the same
        stats.sent(seq, 2.0 + seq, sample=False)
        stats.expire(2.0 + seq + 2.5)
    assert stats.state == DOWN
