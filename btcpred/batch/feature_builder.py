"""2 s feature vectors and 10 s labels from a recording, with the hot path's own code.

Events go through ``btcpred.udfs.symbol_state.SymbolState`` (the state machine
the Flink operator wraps) and boundaries are cut with ``SymbolState.cut``, so a
batch feature equals the feature the job wrote to Redis for the same data.

Label: the log mid-price return from the feature time ``t`` to ``t + 10 s``,
where the mid at a time is the freshest mid in force then (``udfs.features.freshest_mid``:
the real-time best bid/ask's where that stream is live, else the book's after the last
book update with event time <= that time), the same price the features' ``mid`` is,
so label, persistence and the served base price agree. A label never uses a price from
after ``t + 10 s``, and is marked unreliable when the book it uses is older
than ``max_label_age_ms`` (sampled data has holes).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from btcpred.udfs.events import (
    BestBidAskEvent,
    DepthDiffEvent,
    DepthSnapshotEvent,
    MarketEvent,
    PerpQuoteEvent,
    TradesEvent,
    to_float,
)
from btcpred.udfs.features import FEATURE_NAMES, HORIZON_US, PREDICTION_STEP_US, freshest_mid
from btcpred.udfs.symbol_state import SymbolState

INTERVAL_US = PREDICTION_STEP_US
SETTLE_US = 1_000_000  # a boundary is cut once events 1 s past it arrive (the job waits 200 ms)
MAX_BOOK_AGE_US = 3_000_000  # features from a book older than this get a lower quality score
MAX_LABEL_AGE_US = 3_000_000


@dataclass(frozen=True, slots=True)
class FeatureRow:
    """One row of the feature store."""

    ts_ms: int  # exchange time the features describe (a multiple of the interval)
    features: dict[str, float | None]  # FEATURE_NAMES, in order; None: not in the recording (quote features)
    mid: float
    book_update_id: int
    book_valid: bool
    book_age_ms: float
    label_mid: float | None
    label_return: float | None  # log(label_mid / mid)
    label_age_ms: float | None
    data_quality: float  # share of the quality checks passed, 0..1

    @property
    def trainable(self) -> bool:
        return self.data_quality >= 1.0 and self.label_return is not None


@dataclass(frozen=True, slots=True)
class MidTimeline:
    """Every book update's time and mid, for as-of lookups."""

    times_us: list[int]
    mids: list[float]

    def as_of(self, time_us: int) -> tuple[int, float] | None:
        """(update time, mid) of the book in force at ``time_us``."""
        idx = bisect.bisect_right(self.times_us, time_us)
        return (self.times_us[idx - 1], self.mids[idx - 1]) if idx else None


def label_for(timeline: MidTimeline, ts_us: int, mid: float, horizon_us: int = HORIZON_US) -> tuple[float, float, float] | None:
    """(label mid, log return, age of the label's book in µs) for a feature at ``ts_us``.

    The age says how long before ``ts_us + horizon`` that book was last updated:
    on complete diff streams it is small, on sampled data it exposes holes.
    """
    found = timeline.as_of(ts_us + horizon_us)
    if found is None or found[1] <= 0 or mid <= 0:
        return None
    update_us, label_mid = found
    return label_mid, math.log(label_mid / mid), float(ts_us + horizon_us - update_us)


def _event_time_us(event: MarketEvent) -> int:
    return event.transact_time_us if isinstance(event, TradesEvent) else event.event_time_us


@dataclass(slots=True)
class Replay:
    """What one pass over a recording collects: boundary cuts, the mid timeline, book samples, trade minutes."""

    cuts: list  # (Snapshot, time of the book update in force at the boundary)
    timeline: MidTimeline
    book_samples: list  # (time ms, top-20 bids, top-20 asks) as of each whole second, e8 units
    trade_minutes: dict  # minute start ms -> [count, qty, notional]


def replay(
    events: Iterable[MarketEvent],
    symbol: str,
    interval_us: int = INTERVAL_US,
    settle_us: int = SETTLE_US,
    sample_us: int = 1_000_000,
) -> Replay:
    """Run the hot path's state machine over a recording in stream order.

    A boundary is cut once the recording is ``settle_us`` past it; the book is
    sampled as of each whole ``sample_us`` before the first event after it is applied.
    """
    state = SymbolState(symbol)
    out = Replay([], MidTimeline([], []), [], {})
    clock = 0
    next_boundary = 0
    next_sample = 0
    for event in events:
        if (
            not isinstance(event, (DepthDiffEvent, DepthSnapshotEvent, TradesEvent, BestBidAskEvent, PerpQuoteEvent))
            or event.symbol != symbol
        ):
            continue
        t = _event_time_us(event)
        if next_boundary == 0:
            next_boundary = (t // interval_us + 1) * interval_us
            next_sample = (t // sample_us + 1) * sample_us
        clock = max(clock, t)
        while next_boundary + settle_us < clock:
            _cut(state, next_boundary, out.cuts)
            next_boundary += interval_us
        if state.sync.book is not None and next_sample < t:
            book = state.sync.book
            out.book_samples.append(((t // sample_us) * sample_us // 1000, book.top_bids(20), book.top_asks(20)))
        while next_sample < t:
            next_sample += sample_us
        before = state.history.entries[-1] if state.history.entries else None
        quotes_before = state.quotes.last_update_id
        state.on_event(event)
        after = state.history.entries[-1] if state.history.entries else None
        moved = after is not None and after is not before
        quoted = after is not None and state.quotes.last_update_id != quotes_before
        if moved or quoted:  # the price in force changed: the book's top or the real-time quote
            at = after.top.time_us if moved else state.quotes.times[-1]
            out.timeline.times_us.append(at)
            out.timeline.mids.append(freshest_mid(at, after.top, state.quotes))
        if isinstance(event, TradesEvent):
            minute = out.trade_minutes.setdefault(event.transact_time_us // 60_000_000 * 60_000, [0, 0.0, 0.0])
            for trade in event.trades:
                qty, price = to_float(trade.qty_e8), to_float(trade.price_e8)
                minute[0] += 1
                minute[1] += qty
                minute[2] += qty * price
    while next_boundary and next_boundary <= clock:
        _cut(state, next_boundary, out.cuts)
        next_boundary += interval_us
    order = sorted(range(len(out.timeline.times_us)), key=out.timeline.times_us.__getitem__)  # stable: ties keep their order
    out.timeline.times_us[:] = [out.timeline.times_us[i] for i in order]
    out.timeline.mids[:] = [out.timeline.mids[i] for i in order]
    return out


def _cut(state: SymbolState, boundary_us: int, cuts: list) -> None:
    entry = state.history.entry_at(boundary_us)
    snap = state.cut(boundary_us)
    if snap is not None and entry is not None:
        cuts.append((snap, entry.top.time_us))


def build_rows(run: Replay, horizon_us: int = HORIZON_US) -> Iterator[FeatureRow]:
    """Feature rows with labels and quality score for every boundary of ``run``."""
    timeline = run.timeline
    for snap, book_time_us in run.cuts:
        f = snap.features
        mid = f["mid"]
        book_age_us = snap.time_us - book_time_us
        label = label_for(timeline, snap.time_us, mid, horizon_us)
        checks = [
            f["book_valid"] == 1.0,
            book_age_us <= MAX_BOOK_AGE_US,
            f["spread_bp"] > 0,
            label is not None and label[2] <= MAX_LABEL_AGE_US,
        ]
        yield FeatureRow(
            ts_ms=snap.time_us // 1000,
            features={name: f.get(name) for name in FEATURE_NAMES},  # quote and perp features: None without the stream
            mid=mid,
            book_update_id=int(f["book_update_id"]),
            book_valid=f["book_valid"] == 1.0,
            book_age_ms=book_age_us / 1000.0,
            label_mid=label[0] if label else None,
            label_return=label[1] if label else None,
            label_age_ms=label[2] / 1000.0 if label else None,
            data_quality=sum(checks) / len(checks),
        )
