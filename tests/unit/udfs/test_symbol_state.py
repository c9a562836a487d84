"""The job's per-symbol state machine on the real capture, without Flink."""

import dataclasses
import math
import pickle

from btcpred.udfs import envelope, sbe
from btcpred.udfs.events import BestBidAskEvent, DepthDiffEvent, DepthSnapshotEvent, PerpQuoteEvent, TradeEntry, TradesEvent
from btcpred.udfs.symbol_state import SymbolState


def test_book_writes_follow_sync_and_boundaries_emit_seed_fields(spot_slice):
    st = SymbolState("BTCUSDT")
    snapshot = next(c.event for c in spot_slice if isinstance(c.event, DepthSnapshotEvent))
    ob_writes = 0
    for c in spot_slice[:1000]:
        if isinstance(c.event, DepthSnapshotEvent):
            continue
        result = st.on_event(c.event)
        assert result.gap is None
        ob_writes += len(result.writes)
    # the book appears only once a snapshot arrives in band
    assert st.sync.book is None and ob_writes == 0
    receipt_us = snapshot.event_time_us + 77  # received 77 µs after the exchange stamped it
    writes = st.on_event(snapshot, receipt_time_us=receipt_us).writes
    assert writes[0].receipt_time_us == receipt_us
    assert [w.key for w in writes] == ["ob:{BTCUSDT}"]
    assert writes[0].fields["last_update_id"] == str(st.sync.book.last_update_id)
    last_time = 0
    for c in spot_slice[1000:6000]:
        if not isinstance(c.event, DepthSnapshotEvent):
            st.on_event(c.event)
            if isinstance(c.event, (DepthDiffEvent, TradesEvent)):
                last_time = max(last_time, c.event.event_time_us)
    boundary = (last_time // 500_000) * 500_000
    out = {w.key: w for w in st.on_boundary(boundary, wall_us=123)}
    assert set(out) == {"tr:{BTCUSDT}:1s", "tr:{BTCUSDT}:5s", "feat:{BTCUSDT}", "feathist:{BTCUSDT}"}
    assert set(out["tr:{BTCUSDT}:1s"].fields) == {"count", "vol", "signed_vol", "vwap_minus_mid", "last_ts_us"}
    assert out["tr:{BTCUSDT}:5s"].ttl_s == 300 and out["feat:{BTCUSDT}"].ttl_s == 120
    feat = out["feat:{BTCUSDT}"].fields
    assert feat["ts"] == str(boundary) and feat["emitted_at_us"] == "123" and feat["book_valid"] == "1.0"
    # pruning keeps only what the 5 s window can still reach
    assert all(p.time_us > boundary - 5_000_000 for p in st.trades.points)


def test_gap_marks_features_invalid(spot_slice):
    st = SymbolState("BTCUSDT")
    snapshot = next(c.event for c in spot_slice if isinstance(c.event, DepthSnapshotEvent))
    st.on_event(snapshot)
    diffs = [
        c.event for c in spot_slice if isinstance(c.event, DepthDiffEvent) and c.event.last_update_id > snapshot.book_update_id
    ]
    st.on_event(diffs[0])
    gap = st.on_event(diffs[2]).gap
    assert gap is not None and gap.expected_update_id == diffs[0].last_update_id + 1
    feat = {w.key: w for w in st.on_boundary(diffs[2].event_time_us, 0)}["feat:{BTCUSDT}"].fields
    assert feat["book_valid"] == "0.0"


def test_trade_older_than_the_last_cut_boundary_is_late_not_counted(spot_slice):
    st = SymbolState("BTCUSDT")
    st.on_event(next(c.event for c in spot_slice if isinstance(c.event, DepthSnapshotEvent)))
    trade = next(c.event for c in spot_slice if isinstance(c.event, TradesEvent))
    st.on_boundary(trade.transact_time_us, 0)
    assert st.on_event(trade).late is True
    assert len(st.trades.points) == 0
    later = TradesEvent(trade.symbol, trade.event_time_us + 1, trade.transact_time_us + 1, trade.trades)
    assert st.on_event(later).late is False and len(st.trades.points) == 1


def test_a_diff_or_quote_behind_the_last_cut_is_applied_and_counted_late(spot_slice):
    """The book must take every diff, but a boundary cut before it arrived missed it: counted, so a
    live book that fell behind its own boundaries shows on a gauge instead of only in a replay's
    disagreement. A stale quote (dropped) is not late; one in time is not counted."""
    st = SymbolState("BTCUSDT")
    snapshot = next(c.event for c in spot_slice if isinstance(c.event, DepthSnapshotEvent))
    st.on_event(snapshot)
    diffs = [
        c.event for c in spot_slice if isinstance(c.event, DepthDiffEvent) and c.event.last_update_id > snapshot.book_update_id
    ]
    quote = next(c.event for c in spot_slice if isinstance(c.event, BestBidAskEvent))
    st.on_event(diffs[0])
    st.on_quote(quote)
    assert st.late_book_events == 0
    st.on_boundary(diffs[1].event_time_us, 0)  # cut at the next diff's own time: that diff is behind it
    result = st.on_event(diffs[1])
    assert result.gap is None and st.sync.book.last_update_id == diffs[1].last_update_id  # applied
    assert st.late_book_events == 1
    st.on_quote(quote)  # not newer than the last: stale, dropped, not late
    assert st.late_book_events == 1 and st.stale_quotes == 1
    newer_but_behind = dataclasses.replace(quote, book_update_id=quote.book_update_id + 1)
    st.on_quote(newer_but_behind)
    assert st.late_book_events == 2
    assert pickle.loads(pickle.dumps(st)).late_book_events == 2  # kept in keyed state


def test_a_boundary_fires_once_even_if_its_timer_fires_twice(spot_slice):
    st = SymbolState("BTCUSDT")
    st.on_event(next(c.event for c in spot_slice if isinstance(c.event, DepthSnapshotEvent)))
    diff = next(
        c.event
        for c in spot_slice
        if isinstance(c.event, DepthDiffEvent) and c.event.last_update_id > st.sync.book.last_update_id
    )
    st.on_event(diff)
    boundary = (diff.event_time_us // 500_000 + 1) * 500_000
    assert len(st.on_boundary(boundary, 0)) == 4
    assert st.on_boundary(boundary, 0) == []
    assert st.on_boundary(boundary - 500_000, 0) == []
    assert len(st.on_boundary(boundary + 500_000, 0)) == 4


def test_coalesce_keeps_last_hash_and_every_stream_entry():
    from btcpred.udfs.redis_writes import RedisWrite, coalesce

    ws = [
        RedisWrite("hash", "ob:X", {"v": "1"}),
        RedisWrite("xadd", "s", {"n": "1"}),
        RedisWrite("hash", "ob:X", {"v": "2"}),
        RedisWrite("xadd", "s", {"n": "2"}),
        RedisWrite("hash", "feat:X", {}),
    ]
    assert [(w.key, w.fields) for w in coalesce(ws)] == [
        ("s", {"n": "1"}),
        ("ob:X", {"v": "2"}),
        ("s", {"n": "2"}),
        ("feat:X", {}),
    ]


def test_stale_diffs_are_counted_and_leave_the_book_alone(spot_slice):
    st = SymbolState("BTCUSDT")
    st.on_event(next(c.event for c in spot_slice if isinstance(c.event, DepthSnapshotEvent)))
    diff = next(
        c.event
        for c in spot_slice
        if isinstance(c.event, DepthDiffEvent) and c.event.last_update_id > st.sync.book.last_update_id
    )
    assert st.on_event(diff).writes
    assert st.on_event(diff).writes == [] and st.stale_diffs == 1
    assert st.sync.book.last_update_id == diff.last_update_id


def fire_boundaries(
    arrivals_us: list[int], interval_us: int = 500_000, out_of_orderness_us: int = 200_000, registrations: list[int] | None = None
) -> list[int]:
    """Drives the job's timer logic the way Flink does: one timer per time, fired in order once the watermark passes."""
    st = SymbolState("BTCUSDT")
    pending: set[int] = set()
    fired: list[int] = []
    registrations = [] if registrations is None else registrations
    max_seen = 0

    def register(boundary: int | None) -> None:
        if boundary is not None:
            registrations.append(boundary)
            pending.add(boundary)

    for t in arrivals_us:
        register(st.timer_to_register(t, interval_us))
        max_seen = max(max_seen, t)
        watermark = max_seen - out_of_orderness_us
        while pending and min(pending) <= watermark:
            due = min(pending)
            pending.remove(due)
            fired.append(due)
            st.cut(due)  # what on_boundary does first: the boundary is cut
            register(st.following_timer(due, interval_us))
    return fired


def test_a_stream_running_ahead_of_another_skips_no_boundary():
    # depth diffs every 100 ms; a trade from the other stream arrives 600 ms ahead of the diff beside it
    diffs = list(range(0, 3_000_000, 100_000))
    arrivals = diffs[:5] + [1_100_000] + diffs[5:]  # at 400 ms, with boundary 500 ms pending, comes the 1.1 s trade
    fired = fire_boundaries(arrivals)
    assert fired == list(range(500_000, 2_500_001, 500_000)), fired


def test_each_boundary_is_registered_once_and_a_late_event_registers_none():
    registrations: list[int] = []
    # 300 ms arrives after boundary 500 ms was cut: its boundary is not registered again
    fired = fire_boundaries([0, 100_000, 100_000, 900_000, 950_000, 300_000, 1_600_000], registrations=registrations)
    assert fired == [500_000, 1_000_000], fired
    assert sorted(registrations) == [500_000, 1_000_000, 1_500_000, 2_000_000], registrations  # each once


def test_a_batch_writes_the_book_once_and_equal_to_per_diff_writing(spot_slice):
    """The job applies a record's diffs with write_book=False and writes ob: once at the end:
    that hash must equal the last of the per-diff writes, and the features must not change."""
    snapshot = next(c.event for c in spot_slice if isinstance(c.event, DepthSnapshotEvent))
    diffs = [
        c.event for c in spot_slice if isinstance(c.event, DepthDiffEvent) and c.event.last_update_id > snapshot.book_update_id
    ][:40]
    per_diff, batched = SymbolState("BTCUSDT"), SymbolState("BTCUSDT")
    per_diff.on_event(snapshot)
    batched.on_event(snapshot)
    last_write = None
    t0 = diffs[0].event_time_us  # receipts: our clock, i µs after the first diff's exchange time
    for i, diff in enumerate(diffs):
        last_write = per_diff.on_event(diff, receipt_time_us=t0 + i).writes[-1]
        result = batched.on_event(diff, receipt_time_us=t0 + i, write_book=False)
        assert result.writes == [] and result.book_time_us == diff.event_time_us
    assert batched.book_write(diffs[-1].event_time_us, t0 + len(diffs) - 1) == last_write
    assert last_write.fields["last_update_id"] == str(diffs[-1].last_update_id)
    boundary = (diffs[-1].event_time_us // 500_000 + 1) * 500_000
    assert batched.on_boundary(boundary, 0) == per_diff.on_boundary(boundary, 0)


def test_state_pickles_to_an_equal_state_and_restores_the_old_book_format(spot_slice):
    import pickle

    import cloudpickle
    from sortedcontainers import SortedDict

    from btcpred.udfs.order_book import OrderBook

    st = SymbolState("BTCUSDT")
    for c in spot_slice[:3000]:
        st.on_event(c.event)
        if c.event.event_time_us:
            st.timer_to_register(c.event.event_time_us, 500_000)
    copy = pickle.loads(cloudpickle.dumps(st))  # PyFlink's state coder is cloudpickle
    assert copy.sync.book == st.sync.book and list(copy.sync.recent) == list(st.sync.recent)
    assert list(copy.history.entries) == list(st.history.entries) and copy.trades.points == st.trades.points
    assert copy.pending_timers == st.pending_timers and copy.last_diff_time_us == st.last_diff_time_us
    old = OrderBook.__new__(OrderBook)  # a checkpoint written before the int64 arrays: (dict, dict, id)
    old.__setstate__((dict(st.sync.book.bids), dict(st.sync.book.asks), st.sync.book.last_update_id))
    assert old == st.sync.book and isinstance(old.bids, SortedDict)


def test_on_batch_writes_the_book_once_reports_each_gap_and_the_timers(spot_slice):
    """What the job's operator runs per record: one ob: hash equal to the per-diff path's last,
    a gap record for the dropped diff, and each boundary needing a timer once."""
    snapshot = next(c.event for c in spot_slice if isinstance(c.event, DepthSnapshotEvent))
    diffs = [
        c.event for c in spot_slice if isinstance(c.event, DepthDiffEvent) and c.event.last_update_id > snapshot.book_update_id
    ][:30]
    record = diffs[:10] + diffs[11:]  # diff 10 lost: one gap
    per_diff, batched = SymbolState("BTCUSDT"), SymbolState("BTCUSDT")
    per_diff.on_event(snapshot)
    batched.on_event(snapshot)
    t0 = record[0].event_time_us  # receipts: our clock, i µs after the first diff's exchange time
    last = [per_diff.on_event(d, receipt_time_us=t0 + i).writes[-1] for i, d in enumerate(record)][-1]
    result = batched.on_batch(record, [t0 + i for i in range(len(record))], 500_000)
    assert result.writes == [last] and result.changed
    assert [(w.fields["expected_update_id"], w.fields["first_update_id"]) for w in result.gap_writes] == [
        (str(diffs[9].last_update_id + 1), str(diffs[11].first_update_id))
    ]
    assert result.late_writes == []
    expected = sorted({(d.event_time_us // 500_000 + 1) * 500_000 for d in record})
    assert result.timers == expected and batched.pending_timers == set(expected)
    assert batched.on_batch(record[-1:], [0], 500_000).timers == []  # registered once


def _anchored_state(spot_slice, n_events: int) -> tuple[SymbolState, int]:
    """A state anchored on the capture's snapshot with ``n_events`` events applied; their last event time."""
    st = SymbolState("BTCUSDT")
    snapshot = next(c.event for c in spot_slice if isinstance(c.event, DepthSnapshotEvent))
    st.on_event(snapshot)
    last = 0
    for c in spot_slice[:n_events]:
        if not isinstance(c.event, DepthSnapshotEvent):
            st.on_event(c.event)
            last = max(last, c.event.event_time_us)
    return st, last


def _feathist_times(writes) -> list[int]:
    return [int(w.fields["ts"]) for w in writes if w.key == "feathist:{BTCUSDT}"]


def test_a_timer_that_overtakes_an_earlier_one_cuts_both_in_order_with_the_same_values(spot_slice):
    """The savepoint flake: boundary N's registration reached the JVM after N+500 ms had fired,
    so N fired second and was a no-op, and its feathist entry was never written."""
    in_order, overtaken = _anchored_state(spot_slice, 3000)[0], None
    overtaken, last = _anchored_state(spot_slice, 3000)
    n = (last // 500_000 - 2) * 500_000
    for st in (in_order, overtaken):
        assert _feathist_times(st.on_boundary(n - 500_000, 0, 500_000)) == [n - 500_000]
    expected = in_order.on_boundary(n, 0, 500_000) + in_order.on_boundary(n + 500_000, 0, 500_000)
    got = overtaken.on_boundary(n + 500_000, 0, 500_000)  # N's timer has not fired yet
    assert _feathist_times(got) == [n, n + 500_000]
    assert got == expected  # cut late, the overtaken boundary has exactly the values it would have had
    assert overtaken.on_boundary(n, 0, 500_000) == []  # its registration arrives at last: nothing twice
    assert overtaken.boundaries_skipped == 0


def test_catch_up_is_bounded_and_counts_what_it_skips(spot_slice):
    from btcpred.udfs.symbol_state import MAX_CATCH_UP

    st, last = _anchored_state(spot_slice, 2000)
    n = (last // 500_000) * 500_000
    st.on_boundary(n, 0, 500_000)
    far = n + 1000 * 500_000  # an event time far ahead ran the watermark past 1000 boundaries
    times = _feathist_times(st.on_boundary(far, 0, 500_000))
    assert times == list(range(far - (MAX_CATCH_UP - 1) * 500_000, far + 1, 500_000))
    assert st.boundaries_skipped == 1000 - MAX_CATCH_UP
    # a time off the interval grid (or the first cut ever) cuts only itself
    assert _feathist_times(st.on_boundary(far + 700_000, 0, 500_000)) == [far + 700_000]


def test_state_written_before_a_field_was_appended_restores_with_its_default(spot_slice):
    import pickle

    from btcpred.udfs.pickling import _restore

    st, _ = _anchored_state(spot_slice, 500)
    st.boundaries_skipped, st.stale_quotes, st.stale_perp_quotes = 7, 3, 2
    st.quotes.add(BestBidAskEvent("BTCUSDT", 1, 1, 100, 1, 101, 1))
    st.perp.add(PerpQuoteEvent("BTCUSDT", 1, 1, 100, 1, 101, 1))
    names = [f.name for f in dataclasses.fields(SymbolState)]
    old_state = st._pickled_state()[: names.index("boundaries_skipped")]  # the layout before it and the quotes existed
    copy = _restore(SymbolState, pickle.dumps(old_state))
    assert copy.boundaries_skipped == 0 and copy.stale_quotes == 0 and not len(copy.quotes)
    assert copy.stale_perp_quotes == 0 and not len(copy.perp)
    before_perp = _restore(SymbolState, pickle.dumps(st._pickled_state()[: names.index("perp")]))  # the quotes' layout
    assert len(before_perp.quotes) == len(st.quotes) > 0 and before_perp.stale_quotes == 3 and not len(before_perp.perp)
    assert copy.sync.book == st.sync.book and copy.symbol == "BTCUSDT"
    assert copy.cut(st.last_diff_time_us) is not None  # and it cuts features without quotes


def _snapshot_of(book, event_time_us: int) -> DepthSnapshotEvent:
    return DepthSnapshotEvent("BTCUSDT", event_time_us, book.last_update_id, tuple(book.bids.items()), tuple(book.asks.items()))


def test_a_snapshot_holding_the_dropped_updates_heals_the_gap_wherever_it_comes_from(spot_slice):
    """The fault test's sequence: two diffs dropped; the gap diff marks the book stale; a drift check's
    snapshot taken after the drop (at the last dropped id, or past the gap) lands first and heals the
    book; the gap path's later snapshot lands after it and keeps it valid. Features are flagged stale
    exactly from the gap diff until the first of those snapshots."""
    from btcpred.udfs.order_book import OrderBook

    snapshot = next(c.event for c in spot_slice if isinstance(c.event, DepthSnapshotEvent))
    diffs = [
        c.event for c in spot_slice if isinstance(c.event, DepthDiffEvent) and c.event.last_update_id > snapshot.book_update_id
    ][:60]
    exchange = OrderBook.from_snapshot(snapshot)  # the exchange's own book, every diff applied
    books = []
    for d in diffs:
        exchange.apply_levels(d)
        books.append(_snapshot_of(exchange, d.event_time_us))
    for healer_index in (11, 14):  # at the last dropped diff (below the gap diff's id) / past the gap diff
        st = SymbolState("BTCUSDT")
        st.on_event(snapshot)
        validity = []
        for i, d in enumerate(diffs):
            if i in (10, 11):
                continue  # dropped by the exchange's stream
            result = st.on_event(d)
            assert (result.gap is not None) == (i == 12)
            if i == 16:  # the drift check's snapshot lands (stream behind REST: diffs past it already applied)
                assert st.on_event(books[healer_index]).writes
            if i == 20:  # the gap path's later snapshot lands too
                assert st.on_event(books[18]).writes
            validity.append((i, st.sync.valid, st.history.entries[-1].valid))
        assert [i for i, valid, _ in validity if not valid] == [12, 13, 14, 15]
        assert all(valid == entry_valid for _, valid, entry_valid in validity)  # features see what the book is
        assert st.sync.book == OrderBook.from_snapshot(books[-1])  # and it is the exchange's book


def test_best_bid_ask_updates_feed_the_quote_features_and_stale_ones_are_dropped(spot_slice):
    st, _ = _anchored_state(spot_slice, 500)
    t = st.last_diff_time_us
    mid = st.history.entries[-1].top.mid
    e8 = 100_000_000
    bid, ask = int((mid - 0.5) * e8), int((mid + 0.5) * e8)
    uid, stale = st.quotes.last_update_id + 10, st.stale_quotes  # the capture's own quotes came first
    assert st.on_event(BestBidAskEvent("BTCUSDT", t, uid, bid, 3 * e8, ask, 1 * e8)).changed
    st.on_event(BestBidAskEvent("BTCUSDT", t, uid - 1, bid - e8, e8, ask, e8))  # older than the last: dropped
    assert st.stale_quotes == stale + 1 and st.quotes.last_update_id == uid and st.quotes.bids[-1] == bid / e8
    f = st.cut(t + 1).features
    assert f["quote_imbalance"] == (3 - 1) / 4
    assert abs(f["quote_lead_bp"]) < 1e-9  # same mid as the depth book


def test_perpetual_quotes_feed_only_the_cross_market_features(spot_slice):
    """A PerpQuoteEvent lands in the perpetual's history, never in the spot quotes; a record's perpetual
    quotes take on_batch's short way like spot quotes; stale ones are dropped and counted apart."""
    st, _ = _anchored_state(spot_slice, 500)
    t = st.last_diff_time_us
    mid = st.history.entries[-1].top.mid
    spot_quotes, spot_stale = len(st.quotes), st.stale_quotes
    e8 = 100_000_000
    p0, p1 = int((mid + 10) * e8), int((mid + 11) * e8)  # the perpetual trades 10 USD above spot, then 11
    result = st.on_batch(
        [
            PerpQuoteEvent("BTCUSDT", t - 5_000_000, 7, p0 - e8, e8, p0 + e8, e8),
            PerpQuoteEvent("BTCUSDT", t - 1, 9, p1 - e8, e8, p1 + e8, e8),
            PerpQuoteEvent("BTCUSDT", t, 8, 1, 1, 2, 1),
        ],
        [0, 0, 0],
        500_000,
    )
    assert result.changed and not result.writes and not result.gap_writes
    assert len(st.perp) == 2 and st.stale_perp_quotes == 1
    assert len(st.quotes) == spot_quotes and st.stale_quotes == spot_stale
    f = st.cut(t).features
    spot_5s = f["ret_5s"]
    assert abs(f["perp_lead_5s_bp"] - (math.log((mid + 11) / (mid + 10)) - spot_5s) * 1e4) < 1e-9


def test_the_watermark_time_waits_for_the_slower_of_spot_and_the_perpetual():
    from btcpred.udfs.records import DecodedBatch, JointEventTime

    def spot(ms):
        return DecodedBatch("BTCUSDT", [TradesEvent("BTCUSDT", ms * 1000, ms * 1000, ())], [0])

    def perp(ms):
        return DecodedBatch("BTCUSDT", [PerpQuoteEvent("BTCUSDT", ms * 1000, ms, 1, 1, 2, 1)], [0])

    joint = JointEventTime()
    assert joint.stamp(perp(1_000), 0.0) == 0  # no spot time yet: nothing to cut
    assert joint.stamp(spot(1_100), 0.1) == 1_000  # spot ahead: the perpetual holds it back
    assert joint.stamp(perp(1_600), 0.2) == 1_100  # the perpetual ahead: spot holds it back
    assert joint.stamp(spot(1_500), 0.3) == 1_500
    assert joint.stamp(spot(1_400), 0.4) == 1_500  # an older record does not move it back
    assert joint.stamp(spot(60_000), 2.2) == 1_600  # the perpetual a minute behind but heard from 2.0 s ago: waited for
    assert joint.stamp(spot(60_001), 2.21) == 60_001  # silent for over 2 s of wall time: dead, no longer waited for
    assert joint.stamp(perp(1_700), 2.3) == 1_700  # it speaks again: waited for again (the watermark never goes back)
    assert joint.stamp(DecodedBatch("BTCUSDT", [], []), 2.4) == 1_700  # a record without event time (REST snapshot)
    assert JointEventTime().stamp(spot(2_000), 100.0) == 2_000  # no perpetual configured: spot alone
    both = JointEventTime()  # one record of both streams (envelope version 3): each stream counts its oldest event
    mixed = DecodedBatch(
        "BTCUSDT", [*perp(3_200).events, *spot(3_400).events, *perp(3_000).events, *spot(3_500).events], [0, 0, 0, 0]
    )
    assert both.stamp(mixed, 0.0) == 3_000 and (both.spot_ms, both.perp_ms) == (3_400, 3_000)


def test_one_symbols_record_never_makes_the_next_symbols_record_of_the_same_window_late():
    """The ingestor packs a linger window into one record per symbol, one after the other, and every
    key of a subtask shares its watermark. A window spanning 300 ms of event time (a slow put; 15 ms
    of wall time at 20x): stamped with its newest event, BTCUSDT's record put the watermark (200 ms
    out of order allowed) at 1,100 ms, past ETHUSDT's trade at 1,000 ms in the record right behind it."""
    from btcpred.udfs.records import DecodedBatch, JointEventTime

    def window(symbol):
        return DecodedBatch(symbol, [TradesEvent(symbol, ms * 1000, ms * 1000, ()) for ms in (1_000, 1_150, 1_300)], [0] * 3)

    joint, out_of_orderness_ms = JointEventTime(), 200
    watermark = joint.stamp(window("BTCUSDT"), 0.0) - out_of_orderness_ms
    assert watermark < min(e.transact_time_us // 1000 for e in window("ETHUSDT").events)
    assert joint.stamp(window("ETHUSDT"), 0.0) == 1_000


def test_a_record_is_split_by_symbol_before_key_by_and_decoded_after_it():
    """``split_record`` (before the shuffle) keys frames and stamps their times without decoding;
    ``decode_batch`` (after it) decodes them; together they are ``decode_record``, and a raw batch
    stamps the watermark time its decoded events would."""
    import struct

    from btcpred.udfs.records import JointEventTime, decode_batch, decode_record, split_record

    S = envelope.Source
    trade = lambda sym, ms: sbe.encode(TradesEvent(sym, ms * 1000, ms * 1000, (TradeEntry(1, 100 * 10**8, 10**8, False),)))  # noqa: E731
    quote = lambda sym, ms: sbe.encode(BestBidAskEvent(sym, ms * 1000, 7, 100 * 10**8, 10**8, 101 * 10**8, 10**8))  # noqa: E731
    bad_exponent = (
        struct.pack("<HHHH", 50, 10001, 1, 0) + struct.pack("<qqbbqqqq", 5_000_000, 1, -40, -8, 1, 1, 1, 1) + b"\x07BTCUSDT"
    )
    entries = [
        (S.WEBSOCKET, trade("BTCUSDT", 1_000)),
        (S.PERP_QUOTE, quote("BTCUSDT", 1_300)),
        (S.WEBSOCKET, quote("ETHUSDT", 1_100)),
        (S.WEBSOCKET, b"\x12\x00\x10\x27"),  # truncated: dead at once
        (S.PERP_QUOTE, trade("BTCUSDT", 1_200)),  # a perpetual quote that is a trade: dead at once
        (S.WEBSOCKET, bad_exponent),  # structure fine, a value not: dead after the shuffle
        (S.WEBSOCKET, quote("BTCUSDT", 1_050)),
    ]
    text = envelope.batch_to_text([envelope.Envelope(source, i, frame) for i, (source, frame) in enumerate(entries)])

    split = split_record(text, 0)
    assert [(b.symbol, b.receipts, list(b.sources), b.spot_time_us, b.perp_time_us) for b in split.batches] == [
        ("BTCUSDT", [0, 1, 5, 6], [S.WEBSOCKET, S.PERP_QUOTE, S.WEBSOCKET, S.WEBSOCKET], 1_000_000, 1_300_000),
        ("ETHUSDT", [2], [S.WEBSOCKET], 1_100_000, 0),
    ]
    assert [w.fields["reason"].split(":")[0] for w in split.dead_letters] == ["sbe truncated", "envelope"]

    counts = dict.fromkeys(("TradesEvent", "BestBidAskEvent", "PerpQuoteEvent", "DepthDiffEvent", "DepthSnapshotEvent"), 0)
    batch, dead = decode_batch(pickle.loads(pickle.dumps(split.batches[0])), 0, counts)
    assert [type(e).__name__ for e in batch.events] == ["TradesEvent", "PerpQuoteEvent", "BestBidAskEvent"]
    assert batch.receipts == [0, 1, 6] and [w.fields["reason"].split(":")[0] for w in dead] == ["sbe bad_exponent"]
    assert counts["TradesEvent"] == counts["PerpQuoteEvent"] == counts["BestBidAskEvent"] == 1

    whole = decode_record(text, 0)
    assert [b.events for b in whole.batches][0] == batch.events and len(whole.dead_letters) == 3
    joint = JointEventTime()  # each stream's oldest: spot's 1,000 ms trade (its 5,000 ms frame is read before its values)
    assert [b.event_times() for b in split.batches] == [(1_000_000, 1_300_000), (1_100_000, 0)]
    assert joint.stamp(split.batches[0], 0.0) == 1_000 and (joint.spot_ms, joint.perp_ms) == (1_000, 1_300)
