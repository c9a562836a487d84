from btcpred.udfs.events import DepthDiffEvent, DepthSnapshotEvent
from btcpred.udfs.order_book import BookSynchronizer, OrderBook, book_drift

E8 = 100_000_000


def snap(update_id, bids, asks):
    return DepthSnapshotEvent(
        "BTCUSDT", 0, update_id, tuple((p * E8, q * E8) for p, q in bids), tuple((p * E8, q * E8) for p, q in asks)
    )


def test_drift_counts_levels_missing_or_sized_differently_on_either_side():
    live = OrderBook.from_snapshot(snap(10, [(100, 1), (99, 2), (98, 3)], [(101, 1), (102, 2)]))
    ref = OrderBook.from_snapshot(snap(10, [(100, 1), (99, 5)], [(101, 1), (102, 2), (103, 1)]))
    d = book_drift(live, ref)
    # bids: 99 sized 2 vs 5, 98 only live; asks: 103 only in the reference -> 3 of 3 + 3 prices
    assert (d.levels_compared, d.levels_mismatched, d.update_id) == (6, 3, 10)
    assert book_drift(live, live).levels_mismatched == 0


def test_snapshot_on_a_valid_book_records_drift_then_replaces_the_book():
    sync = BookSynchronizer("BTCUSDT")
    assert sync.on_snapshot(snap(10, [(100, 1)], [(101, 1)]))
    assert sync.last_drift is None  # nothing valid to compare with yet
    sync.on_diff(DepthDiffEvent("BTCUSDT", 1, 11, 11, ((100 * E8, 2 * E8),), ()))
    # the exchange says level 100 holds 3 at update 11: our book (2) drifted by one level
    assert sync.on_snapshot(snap(11, [(100, 3)], [(101, 1)]))
    assert sync.last_drift.levels_mismatched == 1 and sync.last_drift.update_id == 11
    assert sync.book.bids[100 * E8] == 3 * E8  # corrected at once
