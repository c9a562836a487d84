"""Windows and features against values computed by hand."""

import math

import pytest

from btcpred.udfs.events import BestBidAskEvent, DepthSnapshotEvent, PerpQuoteEvent, TradeEntry, TradesEvent
from btcpred.udfs.features import (
    DEEP_OFI_FEATURES,
    FEATURE_NAMES,
    PERP_FEATURES,
    QUOTE_FEATURES,
    BookHistory,
    BookTop,
    QuoteHistory,
    book_top,
    compute_snapshot,
    order_flow_contribution,
)
from btcpred.udfs.long_context import CONTEXT_FEATURES
from btcpred.udfs.order_book import OrderBook
from btcpred.udfs.trade_window import TradeBuffer, trade_points

S = 1_000_000  # one second in µs
E8 = 100_000_000


def trade(time_us, price, qty, buyer_is_maker, trade_id=1):
    return TradesEvent("BTCUSDT", time_us, time_us, (TradeEntry(trade_id, price * E8, qty * E8, buyer_is_maker),))


def scenario():
    history = BookHistory()
    history.add(BookTop(0, 1, best_bid=100.0, best_ask=102.0, bid_depth=(3.0, 3.0, 3.0), ask_depth=(1.0, 1.0, 1.0)))
    history.add(BookTop(1 * S, 2, best_bid=102.0, best_ask=104.0, bid_depth=(1.0, 2.5, 4.0), ask_depth=(2.0, 3.0, 6.0)))
    trades = TradeBuffer()
    for ev in (
        trade(S // 2, 999, 9, False),  # exactly at the 1 s window's open end: excluded from 1 s
        trade(6 * S // 10, 103, 1, False),  # taker buy
        trade(12 * S // 10, 102, 3, True),  # taker sell
        trade(15 * S // 10, 104, 2, False),  # taker buy, exactly at the boundary: included
        trade(16 * S // 10, 1, 1, False),  # after the boundary: excluded
    ):
        for point in trade_points(ev):
            trades.add(point)
    return history, trades


def test_one_second_window_by_hand():
    history, trades = scenario()
    snap = compute_snapshot(15 * S // 10, history, trades)
    w = snap.windows["1s"]
    assert w.count == 3
    assert w.vol == pytest.approx(6.0, abs=1e-12)
    assert w.signed_vol == pytest.approx(1 - 3 + 2, abs=1e-12)
    assert w.vwap_minus_mid == pytest.approx((103 + 306 + 208) / 6 - 103, abs=1e-12)
    assert w.last_ts_us == 15 * S // 10


def test_five_second_window_includes_older_trade():
    history, trades = scenario()
    w = compute_snapshot(15 * S // 10, history, trades).windows["5s"]
    assert w.count == 4
    assert w.vol == pytest.approx(15.0)
    assert w.signed_vol == pytest.approx(9 + 1 - 3 + 2)


def test_features_by_hand():
    history, trades = scenario()
    history.add(BookTop(14 * S // 10, 3, 102.0, 104.0, (1.0, 2.5, 4.0), (2.0, 3.0, 6.0)), valid=False)
    f = compute_snapshot(15 * S // 10, history, trades).features
    assert f["mid"] == 103.0
    assert f["ret_1s"] == pytest.approx(math.log(103 / 101), abs=1e-15)  # mid at 0.5 s is the t=0 book
    assert f["ret_5s"] == 0.0  # no book 5 s back yet
    assert f["spread_bp"] == pytest.approx(2 / 103 * 1e4)
    assert f["book_valid"] == 0.0  # the book in force at 1.5 s is the one after the gap at 1.4 s
    assert f["book_update_id"] == 3
    assert compute_snapshot(13 * S // 10, history, trades).features["book_valid"] == 1.0


def test_order_flow_features_by_hand():
    history, trades = scenario()
    f = compute_snapshot(15 * S // 10, history, trades).features
    assert f["depth_imbalance_1"] == pytest.approx((1 - 2) / 3)
    assert f["depth_imbalance_5"] == pytest.approx((2.5 - 3) / 5.5)
    assert f["depth_imbalance_10"] == pytest.approx((4 - 6) / 10)
    assert f["microprice_minus_mid"] == pytest.approx((102 * 2 + 104 * 1) / 3 - 103)
    # bid up: +new bid size 1; ask up: +old ask size 1  => e = 2 for the update at t=1 s
    assert (f["ofi_1s"], f["ofi_2s"], f["ofi_5s"]) == (2.0, 2.0, 2.0)
    assert f["realized_vol_5s"] == pytest.approx(abs(math.log(103 / 101)))
    assert f["trade_intensity_5s"] == pytest.approx(4 / 5)
    assert f["signed_flow_1s"] == pytest.approx(0 / 6, abs=1e-12)
    assert f["signed_flow_5s"] == pytest.approx(9 / 15)
    # taker buys at 0.6 and 1.5 s, a sell at 1.2 s in (0.5, 1.5]; the buy at 0.5 s joins in 5 s
    assert f["count_imbalance_1s"] == pytest.approx((2 - 1) / 3)
    assert f["count_imbalance_5s"] == pytest.approx((3 - 1) / 4)
    absent = QUOTE_FEATURES + PERP_FEATURES + DEEP_OFI_FEATURES + CONTEXT_FEATURES
    assert set(FEATURE_NAMES) - set(absent) <= set(f)
    # no such stream, no multi-level flow or context kept: absent, never a made-up zero
    assert not set(absent) & set(f)


def test_scale_free_features_by_hand():
    history, trades = scenario()
    f = compute_snapshot(15 * S // 10, history, trades).features
    # 1 s window (0.5, 1.5]: the book in force at 0.5 s (best sizes 3 and 1: mean 2) holds for
    # 0.5 s, the update at 1 s (1 and 2: mean 1.5) for 0.5 s => mean best size 1.75; OFI 2.
    assert f["ofi_norm_1s"] == pytest.approx(2 / 1.75)
    # 2 s and 5 s windows reach before the first book: the book of t=0 (mean 2) holds 1 s, the
    # one of t=1 s (mean 1.5) 0.5 s => (2 * 1 + 1.5 * 0.5) / 1.5.
    assert f["ofi_norm_2s"] == f["ofi_norm_5s"] == pytest.approx(2 / ((2 * 1 + 1.5 * 0.5) / 1.5))


def test_a_reanchor_that_repeats_the_book_leaves_the_features_unchanged():
    """The live job re-anchors (a snapshot equal to the book it replaces); a batch replay of the same
    data does not. The extra, identical book state must not move any feature: that was the savepoint
    test's ofi_norm mismatch when the mean size counted states instead of time."""
    history, trades = scenario()
    plain = compute_snapshot(15 * S // 10, history, trades).features
    reanchored, _ = scenario()
    again = reanchored.entries[-1].top
    reanchored.add(BookTop(12 * S // 10, again.update_id + 5, again.best_bid, again.best_ask, again.bid_depth, again.ask_depth))
    after = compute_snapshot(15 * S // 10, reanchored, trades).features
    assert after.pop("book_update_id") == 7 and plain.pop("book_update_id") == 2  # the snapshot's id, rightly
    assert after == plain


def test_scale_free_features_do_not_change_with_the_unit_of_quantity():
    """The same book counted in contracts of 0.01 coin: OFI scales by 100, its normalised form does not."""

    def snap(unit):
        history = BookHistory()
        history.add(BookTop(0, 1, 100.0, 102.0, (3.0 * unit,) * 3, (1.0 * unit,) * 3))
        history.add(BookTop(S, 2, 102.0, 104.0, (1.0 * unit, 2.5 * unit, 4.0 * unit), (2.0 * unit, 3.0 * unit, 6.0 * unit)))
        return compute_snapshot(15 * S // 10, history, TradeBuffer()).features

    coins, contracts = snap(1.0), snap(100.0)
    assert contracts["ofi_1s"] == pytest.approx(100 * coins["ofi_1s"])
    for name in ("ofi_norm_1s", "ofi_norm_5s", "depth_imbalance_1"):
        assert contracts[name] == pytest.approx(coins[name])


def test_ofi_norm_of_an_empty_book_side_is_finite():
    history = BookHistory()
    history.add(BookTop(0, 1, 100.0, 102.0, (0.0,) * 3, (0.0,) * 3))
    f = compute_snapshot(S, history, TradeBuffer()).features
    assert f["ofi_norm_1s"] == 0.0  # no update, mean size 0 counts as 1: no division by zero


def test_ofi_signs_for_falling_book():
    prev = BookTop(0, 1, 100.0, 101.0, (2.0,) * 3, (3.0,) * 3)
    down = BookTop(1, 2, 99.0, 100.0, (5.0,) * 3, (7.0,) * 3)
    # bid fell: -old bid size 2; ask fell: -new ask size 7
    assert order_flow_contribution(prev, down) == -9.0
    same = BookTop(2, 3, 100.0, 101.0, (4.0,) * 3, (1.0,) * 3)
    # unchanged prices: bid size change (+4-2) minus ask size change (1-3)
    assert order_flow_contribution(prev, same) == (4 - 2) - (1 - 3)


def test_empty_window_reports_zeros():
    history, _ = scenario()
    w = compute_snapshot(S, history, TradeBuffer()).windows["1s"]
    assert (w.count, w.vol, w.signed_vol, w.vwap_minus_mid, w.last_ts_us) == (0, 0.0, 0.0, 0.0, 0)


def test_no_snapshot_before_first_book():
    history, trades = scenario()
    assert compute_snapshot(-1, history, trades) is None


def test_out_of_order_trade_is_inserted_in_time_order():
    buf = TradeBuffer()
    for t in (trade(3, 1, 1, False), trade(1, 1, 1, False), trade(2, 1, 1, False)):
        buf.add(trade_points(t)[0])
    assert [p.time_us for p in buf.points] == [1, 2, 3]
    buf.prune_before(2)
    assert [p.time_us for p in buf.points] == [3]


def test_history_prune_keeps_the_entry_in_force_at_the_horizon():
    history = BookHistory()
    for i in range(20):
        history.add(BookTop(i * S, i, 1.0, 2.0, (1.0,) * 3, (1.0,) * 3))
    history.prune(19 * S)
    assert history.at(13 * S).update_id == 13
    assert history.entries[0].top.time_us == 13 * S


def test_book_top_sums_ten_levels():
    bids = tuple((100 * E8 - i * E8, E8) for i in range(12))
    asks = tuple((101 * E8 + i * E8, 2 * E8) for i in range(3))
    top = book_top(OrderBook.from_snapshot(DepthSnapshotEvent("X", 0, 9, bids, asks)), 5)
    assert (top.best_bid, top.best_ask, top.update_id) == (100.0, 101.0, 9)
    assert top.bid_depth == (1.0, 5.0, 10.0) and top.ask_depth == (2.0, 6.0, 6.0)


def quote(time_us, update_id, bid, bid_qty, ask, ask_qty):
    return BestBidAskEvent("BTCUSDT", time_us, update_id, bid * E8, bid_qty * E8, ask * E8, ask_qty * E8)


def test_quote_features_by_hand():
    """The scenario's depth book (mid 103 from 1 s) beside a best bid/ask stream that moved up at 1.2 s."""
    history, trades = scenario()
    quotes = QuoteHistory()
    assert quotes.add(quote(2 * S // 10, 7, 102, 1, 104, 2))  # mid 103, size (1 + 2) / 2 = 1.5
    assert quotes.add(quote(12 * S // 10, 9, 103, 3, 104, 1))  # mid 103.5, size 2
    assert not quotes.add(quote(13 * S // 10, 8, 90, 1, 91, 1))  # an older bookUpdateId: stale, dropped
    f = compute_snapshot(15 * S // 10, history, trades, quotes).features
    assert f["quote_imbalance"] == pytest.approx((3 - 1) / 4)
    microprice = (103 * 1 + 104 * 3) / 4
    assert f["quote_microprice_offset_bp"] == pytest.approx((microprice - 103.5) / 103.5 * 1e4)
    assert f["quote_lead_bp"] == pytest.approx((103.5 - 103) / 103 * 1e4)
    # OFI of the 1.2 s update: bid up, +3 (new bid size); ask unchanged, -1 (new) + 2 (old) => 4
    # 1 s window (0.5, 1.5]: size 1.5 for 0.7 s, 2 for 0.3 s => time-weighted mean 1.65
    assert f["quote_ofi_norm_1s"] == pytest.approx(4 / 1.65)
    # 5 s window: nothing before 0.2 s, so 1.5 for 1.0 s and 2 for 0.3 s
    assert f["quote_ofi_norm_5s"] == pytest.approx(4 / ((1.5 * 1.0 + 2 * 0.3) / 1.3))
    before_first_quote = compute_snapshot(S // 10, history, trades, quotes).features
    assert not set(QUOTE_FEATURES) & set(before_first_quote)


def test_quote_history_keeps_what_the_look_back_needs_and_survives_pickling():
    import pickle

    quotes = QuoteHistory()
    for i in range(100):  # one quote every 100 ms for 10 s
        quotes.add(quote(i * S // 10, i, 100 + i % 3, 1, 104, 2))
    expected = compute_snapshot(99 * S // 10, *scenario(), quotes).features
    quotes.prune(99 * S // 10)
    assert quotes.times[0] <= 99 * S // 10 - 6 * S < quotes.times[1]  # the quote in force 6 s back is kept
    restored = pickle.loads(pickle.dumps(quotes))
    assert compute_snapshot(99 * S // 10, *scenario(), restored).features == expected


def perp_quote(time_us, update_id, bid, ask):
    return PerpQuoteEvent("BTCUSDT", time_us, update_id, int(bid * E8), 5 * E8, int(ask * E8), 5 * E8)


def test_perp_lead_features_by_hand():
    """The perpetual's mid minus the spot book's mid change, as log returns in bp, over 1 s and 5 s."""
    history, trades = scenario()  # spot mid 101 from 0 s, 103 from 1 s
    history.add(BookTop(55 * S // 10, 3, 103.0, 105.0, (1.0, 1.0, 1.0), (1.0, 1.0, 1.0)))  # 104 from 5.5 s
    perp = QuoteHistory()
    assert perp.add(perp_quote(S // 2, 10, 99, 101))  # mid 100
    assert perp.add(perp_quote(48 * S // 10, 11, 101, 103))  # mid 102
    assert perp.add(perp_quote(59 * S // 10, 12, 104, 106))  # mid 105
    assert not perp.add(perp_quote(59 * S // 10, 12, 1, 2))  # the same bookUpdateId again: dropped
    f = compute_snapshot(6 * S, history, trades, None, perp).features
    spot = math.log(104 / 103)  # spot mid at 5 s and at 1 s was 103
    assert f["perp_lead_1s_bp"] == pytest.approx((math.log(105 / 102) - spot) * 1e4, rel=1e-12)
    assert f["perp_lead_5s_bp"] == pytest.approx((math.log(105 / 100) - spot) * 1e4, rel=1e-12)
    assert not set(QUOTE_FEATURES) & set(f)  # the spot quote features read only the spot stream


def test_perp_lead_is_absent_without_look_back_or_when_the_feed_stalls():
    history, trades = scenario()
    perp = QuoteHistory()
    perp.add(perp_quote(S // 2, 10, 99, 101))
    perp.add(perp_quote(59 * S // 10, 12, 104, 106))
    assert not set(PERP_FEATURES) & set(compute_snapshot(5 * S, history, trades, None, perp).features)  # none at 0 s
    assert set(PERP_FEATURES) <= set(compute_snapshot(109 * S // 10, history, trades, None, perp).features)  # 5.0 s old
    stalled = compute_snapshot(1095 * S // 100, history, trades, None, perp).features  # newest quote 5.05 s old
    assert not set(PERP_FEATURES) & set(stalled) and stalled["mid"] == 103.0
