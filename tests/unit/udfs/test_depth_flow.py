"""Multi-level order-flow imbalance against hand-computed values."""

import pytest

from btcpred.udfs.depth_flow import DepthFlow, side_flow
from btcpred.udfs.features import BookHistory, BookTop, compute_snapshot, level_one_ofi
from btcpred.udfs.trade_window import TradeBuffer

S = 1_000_000


def test_each_level_follows_the_level_one_rule():
    prev_bids = ((100.0, 2.0), (99.0, 5.0), (98.0, 1.0))
    cur_bids = ((100.0, 3.0), (98.5, 4.0), (98.0, 0.5))
    # level 1 same price: +3 - 2; level 2 price down: -5 (old size pulled); level 3 same: +0.5 - 1
    assert side_flow(prev_bids, cur_bids, True) == [1.0, -5.0, -0.5]
    prev_asks = ((101.0, 1.0), (102.0, 2.0))
    cur_asks = ((101.5, 2.0), (102.0, 6.0))
    # level 1 price up: +old size 1; level 2 same: -6 + 2
    assert side_flow(prev_asks, cur_asks, False) == [1.0, -4.0]
    e1 = level_one_ofi(100.0, 2.0, 101.0, 1.0, 100.0, 3.0, 101.5, 2.0)
    assert e1 == side_flow(prev_bids, cur_bids, True)[0] + side_flow(prev_asks, cur_asks, False)[0]


def test_sums_over_five_and_ten_levels_and_a_missing_level_adds_nothing():
    flow = DepthFlow()
    bids = tuple((100.0 - i, 1.0) for i in range(10))
    asks = tuple((101.0 + i, 1.0) for i in range(10))
    flow.add(0, bids, asks)  # the first state: no flow
    more_bids = tuple((p, q + (1.0 if i in (0, 6) else 0.0)) for i, (p, q) in enumerate(bids))
    flow.add(S, more_bids, asks[:3])  # +1 at levels 1 and 7; the asks lost levels 4-10: nothing
    assert flow.sums(0, S) == (1.0, 2.0)  # (0, 1 s]: the update at 1 s
    assert flow.sums(S, 2 * S) == (0.0, 0.0)


def test_a_window_before_the_first_update_is_absent():
    flow = DepthFlow()
    flow.add(5 * S, ((100.0, 1.0),), ((101.0, 1.0),))
    assert flow.sums(4 * S, 6 * S) is None
    assert flow.sums(5 * S, 6 * S) == (0.0, 0.0)
    flow.drop_oldest(1)  # a cap cut: what went cannot be summed over
    assert flow.sums(5 * S, 6 * S) is None


def test_normalised_by_the_time_weighted_depth_of_the_same_levels():
    history, flow = BookHistory(), DepthFlow()
    levels0 = (tuple((100.0 - i, 1.0) for i in range(10)), tuple((101.0 + i, 1.0) for i in range(10)))
    levels1 = (tuple((100.0 - i, 3.0) for i in range(10)), levels0[1])  # every bid level grows by 2
    for t, (bids, asks) in ((0, levels0), (S, levels1)):
        cum_b = [sum(q for _, q in bids[:n]) for n in (1, 5, 10)]
        cum_a = [sum(q for _, q in asks[:n]) for n in (1, 5, 10)]
        history.add(BookTop(t, t + 1, bids[0][0], asks[0][0], tuple(cum_b), tuple(cum_a)))
        flow.add(t, bids, asks)
    f = compute_snapshot(2 * S, history, TradeBuffer(), depth_flow=flow).features
    # (1 s, 2 s]: no update inside, so no flow
    assert f["ofi_l5_norm_1s"] == 0.0
    # (-3 s, 2 s] reaches before the first update (0 s): absent
    assert "ofi_l5_norm_5s" not in f
    f = compute_snapshot(S + S // 2, history, TradeBuffer(), depth_flow=flow).features
    # (0.5 s, 1.5 s]: the update at 1 s adds 2 at each bid level: 10 over 5 levels, 20 over 10.
    # Depth over 5 levels, (bid + ask) / 2: 5 for 0.5 s, then (15 + 5) / 2 = 10 for 0.5 s => 7.5
    assert f["ofi_l5_norm_1s"] == pytest.approx(10 / 7.5)
    # over 10 levels: 10 then 20 => 15
    assert f["ofi_l10_norm_1s"] == pytest.approx(20 / 15)
