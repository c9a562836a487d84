"""No event can stop the hot path or damage its state (issue 28): values that fail ``event_rules`` are
dead letters that change nothing, a resent batch of trades counts once, and whatever arbitrary events
and boundaries Hypothesis drives through ``SymbolState``, nothing escapes and its invariants hold."""

import copy

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from btcpred.udfs import event_rules
from btcpred.udfs.events import (
    BestBidAskEvent,
    DepthDiffEvent,
    DepthSnapshotEvent,
    PerpQuoteEvent,
    TradeEntry,
    TradesEvent,
)
from btcpred.udfs.symbol_state import MAX_BOOK_HISTORY, MAX_PENDING_TIMERS, MAX_QUOTES, MAX_TRADES, SymbolState

E8 = 100_000_000
T0 = 1_723_075_200_000_000  # 2024-08-08 00:00 UTC in µs
INTERVAL_US = 500_000
PAST_INT64 = 2**63  # one past int64: the frame decodes (mantissa 2**62, exponent -7 is 2**62 * 10 e8 units)


def anchored() -> SymbolState:
    """A book of two levels a side around 60,000, valid, at update id 100."""
    state = SymbolState("BTCUSDT")
    snapshot = DepthSnapshotEvent(
        "BTCUSDT", 0, 100, ((60_000 * E8, E8), (59_999 * E8, 2 * E8)), ((60_001 * E8, E8), (60_002 * E8, 3 * E8))
    )
    assert state.on_event(snapshot).rejected is None and state.sync.valid
    return state


def observable(state: SymbolState) -> tuple:
    """Everything an event could change but the refusal counters."""
    book = state.sync.book
    return (
        dict(book.bids) if book else None,
        dict(book.asks) if book else None,
        book.last_update_id if book else None,
        state.sync.valid,
        list(state.sync.recent),
        list(state.history.entries),
        list(state.quotes.times),
        list(state.perp.times),
        list(state.trades.points),
        state.last_boundary_us,
        sorted(state.pending_timers),
        state.last_trade_id,
        state.last_diff_time_us,
    )


def diff(first: int, bids=(), asks=(), time_us: int = T0 + 1_000) -> DepthDiffEvent:
    return DepthDiffEvent("BTCUSDT", time_us, first, first, tuple(bids), tuple(asks))


def test_a_diff_with_a_price_past_int64_is_a_dead_letter_and_changes_nothing():
    """Before: ``struct.error`` re-encoding the diff into the ring, raised out of ``on_batch`` (a crash loop)."""
    state = anchored()
    before = observable(state)
    result = state.on_batch([diff(101, bids=[(PAST_INT64, E8)])], [T0 + 2_000], INTERVAL_US)
    assert observable(state) == before and result.writes == [] and result.timers == []
    [dead] = result.dead_writes
    assert dead.key == "dlq:hotpath" and "bid price 9223372036854775808 e8 not in (0, int64]" in dead.fields["reason"]
    assert state.rejected_events == 1


def test_a_diff_that_would_take_the_mid_to_zero_is_refused_and_the_next_cut_is_exact():
    """Before: ``ValueError: math domain error`` at the next boundary, from log of a mid <= 0."""
    state = anchored()
    result = state.on_batch(
        [diff(101, bids=[(0, 5 * E8)]), diff(101, asks=[(-60_001 * E8, E8)])], [T0 + 2_000, T0 + 2_000], INTERVAL_US
    )
    assert len(result.dead_writes) == 2 and state.sync.book.last_update_id == 100
    mid = (60_000 + 60_001) / 2
    assert state.cut(T0 + INTERVAL_US).features["mid"] == mid


def test_an_event_time_far_ahead_of_its_receipt_is_refused_before_it_moves_any_boundary():
    state = anchored()
    receipt = T0 + 5_000
    ahead = diff(101, bids=[(60_000 * E8, 2 * E8)], time_us=receipt + 3600 * 1_000_000)  # an hour ahead
    result = state.on_batch([ahead], [receipt], INTERVAL_US)
    assert result.timers == [] and state.pending_timers == set() and state.sync.book.last_update_id == 100
    assert "is 3600.000 s ahead of its receipt (limit 10 s)" in result.dead_writes[0].fields["reason"]
    just_inside = diff(101, bids=[(60_000 * E8, 2 * E8)], time_us=receipt + 9_999_999)
    assert state.on_batch([just_inside], [receipt], INTERVAL_US).dead_writes == []


def test_a_crossed_quote_and_a_crossed_snapshot_are_refused():
    quote = BestBidAskEvent("BTCUSDT", T0, 7, 60_001 * E8, E8, 60_000 * E8, E8)
    assert event_rules.problem(quote) == f"crossed quote: bid {60_001 * E8} >= ask {60_000 * E8}"
    snapshot = DepthSnapshotEvent("BTCUSDT", 0, 5, ((60_002 * E8, E8),), ((60_001 * E8, E8),))
    assert event_rules.problem(snapshot) == f"crossed snapshot: best bid {60_002 * E8} >= best ask {60_001 * E8}"
    state = SymbolState("BTCUSDT")
    assert state.on_event(snapshot).rejected is not None and state.sync.book is None


def test_a_diff_that_crosses_a_valid_book_invalidates_it_and_asks_for_a_re_anchor():
    state = anchored()
    result = state.on_batch([diff(101, bids=[(60_001 * E8, E8)])], [T0 + 2_000], INTERVAL_US)
    assert not state.sync.valid and state.crossed_books == 1
    [gap] = result.gap_writes
    assert (gap.fields["expected_update_id"], gap.fields["first_update_id"]) == ("101", "101")


def test_a_resent_batch_of_trades_counts_once():
    """The Kinesis writer resends a whole batch after a timeout that Kinesis may have accepted."""
    state = anchored()
    trades = TradesEvent(
        "BTCUSDT", T0 + 100, T0 + 100, (TradeEntry(11, 60_000 * E8, E8, False), TradeEntry(12, 60_001 * E8, 2 * E8, True))
    )
    later = TradesEvent(
        "BTCUSDT", T0 + 200, T0 + 200, (TradeEntry(12, 60_001 * E8, 2 * E8, True), TradeEntry(13, 60_000 * E8, 4 * E8, False))
    )
    state.on_batch([trades, later, trades, later], [T0 + 300] * 4, INTERVAL_US)
    window = state.cut(T0 + INTERVAL_US).windows["1s"]
    assert (window.count, window.vol, window.signed_vol) == (3, 7.0, 1.0 - 2.0 + 4.0)
    assert state.duplicate_trades == 1 + 2 + 2 and state.last_trade_id == 13


# ---- arbitrary events: nothing escapes, invariants hold

prices = st.one_of(st.integers(59_990 * E8, 60_010 * E8), st.integers(-(2**64), 2**64))
quantities = st.one_of(st.integers(0, 10 * E8), st.integers(-(2**64), 2**64))
times = st.one_of(st.integers(T0, T0 + 30_000_000), st.integers(-(2**64), 2**64))
levels = st.lists(st.tuples(prices, quantities), max_size=4).map(tuple)
ids = st.integers(95, 130)

events = st.one_of(
    st.builds(DepthDiffEvent, st.just("BTCUSDT"), times, ids, ids, levels, levels),
    st.builds(DepthSnapshotEvent, st.just("BTCUSDT"), st.one_of(st.just(0), times), ids, levels, levels),
    st.builds(
        TradesEvent,
        st.just("BTCUSDT"),
        times,
        times,
        st.lists(st.builds(TradeEntry, st.integers(-5, 40), prices, quantities, st.booleans()), max_size=3).map(tuple),
    ),
    st.builds(BestBidAskEvent, st.just("BTCUSDT"), times, ids, prices, quantities, prices, quantities),
    st.builds(PerpQuoteEvent, st.just("BTCUSDT"), times, ids, prices, quantities, prices, quantities),
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("batch"), st.lists(events, min_size=1, max_size=5)),
        st.tuples(st.just("boundary"), st.integers(T0, T0 + 40_000_000)),
    ),
    max_size=25,
)


def check_invariants(state: SymbolState) -> None:
    book = state.sync.book
    if book is not None:
        assert list(book.bids) == sorted(book.bids) and list(book.asks) == sorted(book.asks)
        assert all(
            0 < p <= event_rules.INT64_MAX and 0 < q <= event_rules.INT64_MAX
            for side in (book.bids, book.asks)
            for p, q in side.items()
        )
        if state.sync.valid and book.bids and book.asks:
            assert book.bids.peekitem(-1)[0] < book.asks.peekitem(0)[0], "a valid book is never crossed"
    assert len(state.history.entries) <= MAX_BOOK_HISTORY and len(state.quotes) <= MAX_QUOTES
    assert len(state.perp) <= MAX_QUOTES and len(state.trades.points) <= MAX_TRADES
    assert len(state.pending_timers) <= MAX_PENDING_TIMERS and len(state.sync.recent) <= state.sync.recent_capacity


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps, start_anchored=st.booleans())
def test_arbitrary_events_and_boundaries_never_escape_and_keep_the_invariants(steps, start_anchored):
    state = anchored() if start_anchored else SymbolState("BTCUSDT")
    for kind, payload in steps:
        if kind == "batch":
            before = copy.deepcopy(state)
            result = state.on_batch(payload, [T0 + 15_000_000] * len(payload), INTERVAL_US)
            if len(result.dead_writes) == len(payload) and all(
                "refused: " in w.fields["reason"] and "raised" not in w.fields["reason"] for w in result.dead_writes
            ):
                assert observable(state) == observable(before), "refused events changed the state"
            assert not any("raised" in w.fields["reason"] for w in result.dead_writes), result.dead_writes
        else:
            writes = state.on_boundary(payload, T0, INTERVAL_US)
            assert not any(w.key == "dlq:hotpath" for w in writes), writes
        check_invariants(state)


def test_features_carry_their_market_time_on_our_clock_from_the_observed_receipt_lag():
    """``market_wall_us`` = boundary + (receipt - event time), the smallest lag of the last record: a job
    catching up cuts boundaries whose market time is long past on our clock (issue 28, item 5)."""
    state = anchored()
    d1, d2 = diff(101, bids=[(60_000 * E8, 2 * E8)], time_us=T0 + 100_000), diff(102, time_us=T0 + 200_000)
    state.on_batch([d1, d2], [T0 + 100_000 + 80_000, T0 + 200_000 + 50_000], INTERVAL_US)
    assert state.receipt_lag_us == 50_000
    writes = state.on_boundary(T0 + INTERVAL_US, T0 + 9_000_000)
    feat = next(w for w in writes if w.key == "feat:{BTCUSDT}").fields
    assert feat["market_wall_us"] == str(T0 + INTERVAL_US + 50_000) and feat["emitted_at_us"] == str(T0 + 9_000_000)


def test_a_frame_far_ahead_of_its_receipt_is_refused_before_it_can_stamp_the_watermark():
    """The watermark is stamped before ``key_by`` from each record's oldest event: the time rule runs in
    ``split_record`` too, or one frame a day ahead would move every key's boundaries by a day."""
    from btcpred.udfs import envelope, sbe
    from btcpred.udfs.records import JointEventTime, split_record

    receipt = T0 + 5_000
    ahead = sbe.encode(diff(101, bids=[(60_000 * E8, E8)], time_us=receipt + 86_400_000_000))
    fine = sbe.encode(diff(102, bids=[(60_000 * E8, E8)], time_us=receipt - 40_000))
    text = envelope.batch_to_text([envelope.Envelope(envelope.Source.WEBSOCKET, receipt, f) for f in (ahead, fine)])
    split = split_record(text, receipt)
    [dead] = split.dead_letters
    assert dead.fields["reason"].startswith("DepthDiffEvent refused: event time") and dead.fields["record"] == ahead.hex()
    [batch] = split.batches
    assert batch.frames == [fine] and batch.spot_time_us == receipt - 40_000
    assert JointEventTime().stamp(batch, 0.0) == (receipt - 40_000) // 1000


@settings(max_examples=500, deadline=None)
@given(
    quote=st.builds(BestBidAskEvent, st.just("BTCUSDT"), times, ids, prices, quantities, prices, quantities),
    receipt=st.one_of(st.none(), st.just(0), st.integers(T0, T0 + 20_000_000)),
)
def test_the_quotes_fast_check_agrees_with_the_rules(quote, receipt):
    """``quote_passes`` (the quick path of ``on_batch``) passes exactly the quotes ``problem`` passes."""
    assert event_rules.quote_passes(quote, receipt, event_rules.DEFAULT_MAX_LEAD_US) == (
        event_rules.problem(quote, receipt) is None
    )
