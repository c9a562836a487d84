"""A trades-only market's features, by hand, on a tape of five trades."""

import math

import pytest

from btcpred.udfs.trade_features import LONGEST_US, TRADE_FEATURE_NAMES, TradeTape, trade_snapshot

pytestmark = pytest.mark.unit

S = 1_000_000  # one second in microseconds


def tape_of(*trades):
    tape = TradeTape()
    for t in trades:
        assert tape.add(*t)
    return tape


def test_features_by_hand():
    t0 = 0
    tape = tape_of(
        (t0, 100.0, 1.0, True),  # the price in force 300 s back
        (t0 + LONGEST_US - 20 * S, 101.0, 2.0, False),  # a sell, 20 s before the boundary
        (t0 + LONGEST_US - 4 * S, 102.0, 3.0, True),  # a buy, 4 s before
        (t0 + LONGEST_US - S // 2, 101.0, 1.0, True),  # a buy, 0.5 s before
        (t0 + LONGEST_US + S, 999.0, 9.0, True),  # after the boundary: never seen by it
    )
    snap = trade_snapshot(t0 + LONGEST_US, tape)
    f = snap.features
    assert snap.price == 101.0 and set(f) == set(TRADE_FEATURE_NAMES)
    assert f["trade_ret_1s"] == pytest.approx(math.log(101 / 102))  # in force 1 s back: the 4 s-old buy
    assert f["trade_ret_5s"] == pytest.approx(math.log(101 / 101))  # 5 s back: the 20 s-old sell
    assert f["trade_ret_30s"] == pytest.approx(math.log(101 / 100))
    assert f["trade_ret_300s"] == pytest.approx(math.log(101 / 100))  # the first trade is exactly 300 s back
    assert f["trade_flow_1s"] == pytest.approx(1.0)  # one buy of 1
    assert f["trade_flow_5s"] == pytest.approx(1.0)  # buys of 3 and 1
    assert f["trade_flow_30s"] == pytest.approx((3 + 1 - 2) / 6)
    assert f["trade_flow_300s"] == pytest.approx((3 + 1 - 2) / 6)  # the first trade sits on the window's open edge: out
    assert f["trade_count_imbalance_5s"] == pytest.approx(1.0)
    assert f["trade_count_imbalance_30s"] == pytest.approx((2 - 1) / 3)
    assert f["trade_intensity_ratio"] == pytest.approx(((2 + 1) / 5) / ((3 + 1) / 300))
    sq = [math.log(101 / 100) ** 2, math.log(102 / 101) ** 2, math.log(101 / 102) ** 2]
    assert f["trade_vol_30s"] == pytest.approx(math.sqrt(sum(sq)))
    assert f["trade_vol_300s"] == pytest.approx(math.sqrt(sum(sq)))


def test_no_row_before_the_tape_reaches_back_the_longest_look_back():
    tape = tape_of((10, 100.0, 1.0, True), (20 * S, 100.0, 1.0, False))
    assert trade_snapshot(LONGEST_US, tape) is None  # the first trade is 10 us short of 300 s back
    assert trade_snapshot(LONGEST_US + 10, tape) is not None


def test_a_trade_out_of_order_or_without_a_price_is_refused_and_changes_nothing():
    tape = tape_of((5 * S, 100.0, 1.0, True))
    for bad in (
        (4 * S, 100.0, 1.0, True),
        (6 * S, 0.0, 1.0, True),
        (6 * S, float("nan"), 1.0, True),
        (6 * S, 100.0, -1.0, True),
        (6 * S, float("inf"), 1.0, True),
    ):
        assert not tape.add(*bad)
    assert tape.times == [5 * S] and tape.cum_vol == [1.0]


def test_pruning_keeps_every_window_the_same():
    trades = [(i * S // 2, 100.0 + (i % 7) - 3, 1.0 + i % 3, i % 2 == 0) for i in range(4000)]
    whole, pruned = tape_of(*trades), tape_of(*trades)
    at = 1900 * S
    pruned.prune_before(at - LONGEST_US)
    assert pruned.offset > 0 and len(pruned.times) < len(whole.times)
    assert trade_snapshot(at, pruned).features == pytest.approx(trade_snapshot(at, whole).features)
