"""Binance diff-stream rules on the real 2024-08-08 spot capture, plus synthetic faults."""

from btcpred.udfs.events import DepthDiffEvent, DepthSnapshotEvent
from btcpred.udfs.order_book import BookSynchronizer, DiffOutcome, OrderBook


def diffs_and_snapshot(spot_slice):
    diffs = [c.event for c in spot_slice if isinstance(c.event, DepthDiffEvent)]
    snapshot = next(c.event for c in spot_slice if isinstance(c.event, DepthSnapshotEvent))
    return diffs, snapshot


def reference_book(snapshot, diffs):
    """Independent dict replay: start at the snapshot, apply every later diff."""
    bids = {p: q for p, q in snapshot.bids}
    asks = {p: q for p, q in snapshot.asks}
    for d in diffs:
        if d.last_update_id <= snapshot.book_update_id:
            continue
        for side, levels in ((bids, d.bids), (asks, d.asks)):
            for p, q in levels:
                if q:
                    side[p] = q
                else:
                    side.pop(p, None)
    return bids, asks


def test_real_capture_syncs_without_gaps_and_matches_reference(spot_slice):
    diffs, snapshot = diffs_and_snapshot(spot_slice)
    sync = BookSynchronizer("BTCUSDT")
    outcomes = []
    for d in diffs[:5]:
        outcomes.append(sync.on_diff(d)[0])
    assert outcomes == [DiffOutcome.BUFFERED] * 5
    assert sync.on_snapshot(snapshot)
    for d in diffs[5:]:
        outcome, gap = sync.on_diff(d)
        assert outcome == DiffOutcome.APPLIED and gap is None
    bids, asks = reference_book(snapshot, diffs)
    assert dict(sync.book.bids) == bids and dict(sync.book.asks) == asks
    assert sync.book.last_update_id == diffs[-1].last_update_id
    assert sync.valid and sync.gaps_total == 0
    # top of book is crossed-free on real data
    assert sync.book.top_bids(1)[0][0] < sync.book.top_asks(1)[0][0]


def test_first_diff_after_snapshot_straddles_its_update_id(spot_slice):
    diffs, snapshot = diffs_and_snapshot(spot_slice)
    first = next(d for d in diffs if d.last_update_id > snapshot.book_update_id)
    assert first.first_update_id <= snapshot.book_update_id + 1 <= first.last_update_id


def test_dropped_diff_is_a_gap_and_snapshot_reanchors(spot_slice):
    diffs, snapshot = diffs_and_snapshot(spot_slice)
    sync = BookSynchronizer("BTCUSDT")
    sync.on_snapshot(snapshot)
    live = [d for d in diffs if d.last_update_id > snapshot.book_update_id]
    for d in live[:10]:
        sync.on_diff(d)
    expected = live[9].last_update_id + 1
    # live[10] is lost on the wire
    outcome, gap = sync.on_diff(live[11])
    assert outcome == DiffOutcome.GAP
    assert (gap.expected_update_id, gap.first_update_id, gap.last_update_id) == (
        expected,
        live[11].first_update_id,
        live[11].last_update_id,
    )
    assert not sync.valid and sync.gaps_total == 1
    # a newer exchange snapshot (the book at live[15]) re-anchors
    bids, asks = reference_book(snapshot, live[:16])
    fresh = DepthSnapshotEvent("BTCUSDT", 0, live[15].last_update_id, tuple(bids.items()), tuple(asks.items()))
    for d in live[12:20]:
        sync.on_diff(d)
    assert sync.on_snapshot(fresh)
    assert sync.valid
    ref_bids, ref_asks = reference_book(snapshot, live[:20])
    assert dict(sync.book.bids) == ref_bids and dict(sync.book.asks) == ref_asks
    assert sync.book.last_update_id == live[19].last_update_id


def test_stale_and_duplicate_diffs_are_ignored(spot_slice):
    diffs, snapshot = diffs_and_snapshot(spot_slice)
    sync = BookSynchronizer("BTCUSDT")
    sync.on_snapshot(snapshot)
    live = [d for d in diffs if d.last_update_id > snapshot.book_update_id]
    sync.on_diff(live[0])
    sync.on_diff(live[1])
    before = (dict(sync.book.bids), sync.book.last_update_id)
    assert sync.on_diff(live[1])[0] == DiffOutcome.STALE
    assert sync.on_diff(live[0])[0] == DiffOutcome.STALE
    assert (dict(sync.book.bids), sync.book.last_update_id) == before


def test_snapshot_older_than_buffered_diffs_is_refused_and_book_kept():
    sync = BookSynchronizer("BTCUSDT", recent_capacity=2)
    d = lambda first, last, price: DepthDiffEvent("BTCUSDT", 0, first, last, ((price, 1),), ())  # noqa: E731
    for i in range(3):
        sync.on_diff(d(10 + i, 10 + i, 100 + i))
    old = DepthSnapshotEvent("BTCUSDT", 0, 5, ((1, 1),), ((999, 1),))
    assert sync.on_snapshot(old) is False
    assert sync.book is None and not sync.valid


def test_quantity_zero_removes_level_and_top_is_sorted():
    book = OrderBook.from_snapshot(DepthSnapshotEvent("X", 0, 1, ((100, 1), (101, 2), (99, 3)), ((105, 1), (103, 2))))
    book.apply_levels(DepthDiffEvent("X", 0, 2, 2, ((101, 0),), ((104, 5),)))
    assert book.top_bids(10) == [(100, 1), (99, 3)]
    assert book.top_asks(2) == [(103, 2), (104, 5)]


def test_book_pickles_for_flink_state():
    import pickle

    book = OrderBook.from_snapshot(DepthSnapshotEvent("X", 0, 7, ((100, 1),), ((105, 1),)))
    clone = pickle.loads(pickle.dumps(book))
    assert clone == book and clone.top_asks(1) == [(105, 1)]
    sync = BookSynchronizer("X", book=book, valid=True)
    assert pickle.loads(pickle.dumps(sync)).book == book
