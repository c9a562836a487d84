"""Futures captures (pu-chained diffs), continuing files and data.binance.vision aggTrades, on the real files."""

import dataclasses
import shutil
from pathlib import Path

import pytest

from btcpred.adapters.loaders import data_vision
from btcpred.adapters.loaders.hftbacktest_ws import HftbacktestWsLoader
from btcpred.batch.recordings import UnsupportedRecording, continues, discover, identify
from btcpred.udfs.events import BestBidAskEvent, DepthDiffEvent, DepthSnapshotEvent, PerpQuoteEvent
from btcpred.udfs.order_book import BookSynchronizer, DiffOutcome
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.shared_data  # whole captures, hours or a day of ../shared/data: the full suite's

CAPTURES = SHARED_DATA / "raw" / "hftbacktest"
AGG_TRADES = SHARED_DATA / "raw" / "data_vision" / "BTCUSD_PERP-aggTrades-2026-05-08.zip"


@pytest.mark.parametrize("name", ["cm_btcusd_perp_20240808_ws.gz", "usdm_btcusdt_20240808_ws.gz"])
def test_the_futures_book_equals_the_exchanges_own_best_levels(name):
    """The book kept by the pu chain, compared with the capture's bookTicker stream (an independent
    exchange feed) wherever both carry the same update id: every price and size equal, no gap."""
    sync = BookSynchronizer("X", recent_capacity=5000)
    after: dict[int, tuple] = {}
    outcomes: dict[DiffOutcome, int] = {}
    tickers = []
    for captured in HftbacktestWsLoader(CAPTURES / name).events():
        event = captured.event
        if isinstance(event, DepthDiffEvent):
            outcome, _ = sync.on_diff(event)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if sync.valid and outcome is DiffOutcome.APPLIED:
                after[event.last_update_id] = (*sync.book.top_bids(1)[0], *sync.book.top_asks(1)[0])
        elif isinstance(event, DepthSnapshotEvent):
            assert sync.on_snapshot(event)
        elif isinstance(event, BestBidAskEvent):
            tickers.append(event)
    compared = [t for t in tickers if t.book_update_id in after]
    assert len(compared) > 500
    for t in compared:
        assert after[t.book_update_id] == (t.bid_price_e8, t.bid_qty_e8, t.ask_price_e8, t.ask_qty_e8), t
    assert DiffOutcome.GAP not in outcomes and outcomes[DiffOutcome.APPLIED] > 6000


def test_a_broken_pu_chain_is_a_gap():
    """Drop one futures diff: the next one's pu is not the local id, so the synchroniser reports a gap."""
    events = [c.event for c in HftbacktestWsLoader(CAPTURES / "usdm_btcusdt_20240808_ws.gz").events()]
    snapshot = next(e for e in events if isinstance(e, DepthSnapshotEvent))
    diffs = [e for e in events if isinstance(e, DepthDiffEvent) and e.last_update_id > snapshot.book_update_id]
    sync = BookSynchronizer("X", recent_capacity=5000)
    for diff in (e for e in events if isinstance(e, DepthDiffEvent) and e.last_update_id <= snapshot.book_update_id):
        sync.on_diff(diff)
    sync.on_diff(diffs[0])
    assert sync.on_snapshot(snapshot)
    assert sync.on_diff(diffs[1])[0] is DiffOutcome.APPLIED  # pu == local id
    outcome, gap = sync.on_diff(diffs[3])  # diffs[2] lost
    assert outcome is DiffOutcome.GAP and gap.expected_update_id == diffs[1].last_update_id + 1
    assert gap.first_update_id == diffs[2].last_update_id + 1  # read as pu + 1: the lost diff's u + 1


def test_files_that_continue_each_other_are_one_recording_and_markets_are_told_apart():
    recordings = {r.name: r for r in discover(CAPTURES)}
    usdm = recordings["usdm_btcusdt_20230404_ws.dat.gz"]
    assert [p.name for p in usdm.continued_by] == ["usdm_btcusdt_20230405_ws.dat.gz"]  # its pu chain goes on
    assert "usdm_btcusdt_20230405_ws.dat.gz" not in recordings
    assert recordings["spot_btcusdt_20230405_ws.dat.gz"].continued_by == ()  # a spot file never continues usdm
    assert {r.venue for r in recordings.values()} == {"binance.com-spot", "binance.com-usdm", "binance.com-coinm"}
    assert recordings["cm_btcusd_perp_20240808_ws.gz"].symbol == "BTCUSD_PERP"
    # spot reads the USD-M capture of its minutes as its leading perpetual; futures recordings have none
    spot = recordings["spot_btcusdt_20240808_ws.gz"]
    assert spot.perp.name == "usdm_btcusdt_20240808_ws.gz"
    assert recordings["usdm_btcusdt_20240808_ws.gz"].perp is None and recordings["cm_btcusd_perp_20240808_ws.gz"].perp is None
    merged = list(spot.events())
    perp_quotes = [e for e in merged if isinstance(e, PerpQuoteEvent)]
    usdm_quotes = [c.event for c in HftbacktestWsLoader(spot.perp.path).events() if isinstance(c.event, BestBidAskEvent)]
    assert [(q.book_update_id, q.bid_price_e8, q.ask_price_e8) for q in perp_quotes] == [
        (q.book_update_id, q.bid_price_e8, q.ask_price_e8) for q in usdm_quotes
    ]  # every one, in stream order
    assert {q.symbol for q in perp_quotes} == {"BTCUSDT"}
    assert [e for e in merged if not isinstance(e, PerpQuoteEvent)] == [
        c.event for c in HftbacktestWsLoader(spot.path).events()
    ]  # spot's own stream unchanged


def test_continuation_rule_by_hand():
    last = DepthDiffEvent("X", 0, 90, 100, (), ())
    assert continues(last, dataclasses.replace(last, first_update_id=101, last_update_id=120))
    assert continues(last, dataclasses.replace(last, first_update_id=95, last_update_id=120))  # overlap: fine
    assert not continues(last, dataclasses.replace(last, first_update_id=102, last_update_id=120))  # 101 lost
    assert not continues(last, dataclasses.replace(last, first_update_id=80, last_update_id=100))  # nothing new


def test_agg_trades_rows_by_hand_and_the_file_is_reported_not_dropped():
    trades = data_vision.identify(AGG_TRADES)
    assert (trades.symbol, trades.day, trades.checksum) == ("BTCUSD_PERP", "2026-05-08", "verified")
    first, second = [c.event for _, c in zip(range(2), trades.events())]
    # 480537903,79972.8,542.0,1123474160,1123474164,1778198400020,false
    assert first.event_time_us == 1778198400020 * 1000
    assert first.trades[0] == first.trades[0].__class__(480537903, 7997280000000, 54200000000, False)
    assert second.trades[0].trade_id == 480537904
    with pytest.raises(UnsupportedRecording, match="trades without a book give no book feature rows"):
        identify(AGG_TRADES)


def test_agg_trades_whose_bytes_do_not_match_the_checksum_are_refused(tmp_path):
    copy = tmp_path / AGG_TRADES.name
    shutil.copy(AGG_TRADES, copy)
    Path(str(copy) + ".CHECKSUM").write_text("0" * 64 + f"  {AGG_TRADES.name}\n")
    with pytest.raises(data_vision.DataVisionError, match="does not match its .CHECKSUM"):
        data_vision.identify(copy)
    with pytest.raises(UnsupportedRecording, match="does not match"):
        identify(copy)
