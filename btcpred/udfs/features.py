"""Feature vectors at event-time boundaries, identical in the Flink job and batch.

The book side is recorded as a history of top-of-book summaries, one per applied
depth diff, so features "as of time T" use exactly the book after the last diff
with event time <= T, whatever the arrival order or watermark lag. The real-time
best bid/ask stream is recorded the same way in a second history (``QuoteHistory``):
depth diffs arrive conflated every 100 ms, quotes at every change of the top.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections import deque
from dataclasses import dataclass
from itertools import chain
from operator import add, mul, sub

from btcpred.udfs.depth_flow import LEVEL_GROUPS, DepthFlow
from btcpred.udfs.events import BestBidAskEvent, PerpQuoteEvent, to_float
from btcpred.udfs.long_context import CONTEXT_FEATURES, LongContext
from btcpred.udfs.order_book import OrderBook
from btcpred.udfs.pickling import fast_state
from btcpred.udfs.trade_window import TradeBuffer, WindowStats

# What is predicted, once for the whole system: the mid 10 s after a feature vector's data time,
# every 2 s. Labels, the purge between train and test, the overlap of consecutive errors, online
# scoring and the horizon an artifact declares all read these.
HORIZON_US = 10_000_000
PREDICTION_STEP_US = 2_000_000

DEPTH_LEVELS = (1, 5, 10)  # depth imbalance is reported over the top 1, 5 and 10 levels
WINDOWS_US = {"1s": 1_000_000, "5s": 5_000_000}
OFI_HORIZONS_US = {"1s": 1_000_000, "2s": 2_000_000, "5s": 5_000_000}
DEEP_OFI_HORIZONS_US = {"1s": 1_000_000, "5s": 5_000_000}
# Order-flow imbalance over the top 5 and top 10 levels (``depth_flow``), in units of the window's
# time-weighted depth over the same levels: scale-free like ``ofi_norm_*``.
DEEP_OFI_FEATURES = tuple(f"ofi_l{levels}_norm_{name}" for levels in LEVEL_GROUPS for name in DEEP_OFI_HORIZONS_US)
QUOTE_OFI_HORIZONS_US = {"1s": 1_000_000, "5s": 5_000_000}
REALIZED_VOL_US = 5_000_000
HISTORY_US = 6_000_000  # longest look-back (5 s) plus one boundary step of slack

# From the real-time best bid/ask stream, scale-free as well, but only where a recording has that
# stream (binance.com captures and the system's own archive; not the 1 Hz Binance.US book): a
# boundary before the first quote has none of them (absent in ``feat:``, NULL in the feature store),
# so a model reads them only when trained on data that has them.
QUOTE_FEATURES = (
    "quote_imbalance",
    "quote_microprice_offset_bp",
    "quote_lead_bp",
    "quote_ofi_norm_1s",
    "quote_ofi_norm_5s",
)
# Cross-market: how much more the perpetual future's mid moved than the spot book's over the last
# 1 s / 5 s, in bp (log returns). The perpetual is where BTC price discovery mostly happens, so
# spot tends to follow the difference. Only where a perpetual's best bid/ask stream is configured
# beside spot (``exchange.perp_ws_url``) and its quote in force is recent (``PERP_MAX_AGE_US``);
# absent otherwise, like the quote features.
PERP_FEATURES = ("perp_lead_1s_bp", "perp_lead_5s_bp")
PERP_HORIZONS_US = {"1s": 1_000_000, "5s": 5_000_000}
PERP_MAX_AGE_US = 5_000_000  # a perpetual quote older than this at a boundary is a dead feed, not a price
# The market's price ("mid": base of every prediction, persistence, labels, scoring) is the freshest
# mid in force: the real-time best bid/ask's where that stream is live, else the depth book's, which
# is conflated to 100 ms and trails it. A quote further behind the book's top than this is a stalled
# stream, not the price.
QUOTE_STALE_US = 1_000_000
# Model inputs, in order. The model registry stores this list with every model. Two inputs left in
# 2026-12 (migration 0008) as duplicates: ``vol_imbalance`` was ``depth_imbalance_10`` under another
# name, and ``microprice_offset_bp`` is half the spread times ``depth_imbalance_1``, so it carried
# the venue's spread level (500x smaller on binance.com than on Binance.US) and nothing else; its
# venue-free form, the offset in half-spreads, is ``depth_imbalance_1`` itself.
FEATURE_NAMES = (
    "ret_1s",
    "ret_5s",
    "spread_bp",
    "depth_imbalance_1",
    "depth_imbalance_5",
    "depth_imbalance_10",
    "microprice_minus_mid",
    "ofi_1s",
    "ofi_2s",
    "ofi_5s",
    "realized_vol_5s",
    "trade_intensity_5s",
    "signed_flow_1s",
    "signed_flow_5s",
    "ofi_norm_1s",
    "ofi_norm_2s",
    "ofi_norm_5s",
    "count_imbalance_1s",
    "count_imbalance_5s",
    *DEEP_OFI_FEATURES,
    *CONTEXT_FEATURES,
    *QUOTE_FEATURES,
    *PERP_FEATURES,
)
# Inputs without a venue's units: returns, shares and imbalances, OFI in units of the
# window's own top-of-book depth, the micro-price offset in basis points. A model on
# these can be trained on one venue and read another's numbers on the same scale.
# (spread_bp is scale-free too, but its level is the venue's tick size: 0.002 bp on
# binance.com BTCUSDT, ~1 bp on Binance.US.)
SCALE_FREE_FEATURES = (
    "ret_1s",
    "ret_5s",
    "depth_imbalance_1",
    "depth_imbalance_5",
    "depth_imbalance_10",
    "ofi_norm_1s",
    "ofi_norm_2s",
    "ofi_norm_5s",
    "realized_vol_5s",
    *DEEP_OFI_FEATURES,
)


def same_feature(a: float | str | None, b: float | str | None, tol: float = 1e-9) -> bool:
    """The parity rule between two computations of one feature (the job's ``feat:`` strings, batch
    floats): both absent (a quote feature before the stream's first quote), or both present and
    equal within ``tol``, relative or absolute."""
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(float(a), float(b), rel_tol=tol, abs_tol=tol)


@fast_state
@dataclass(frozen=True, slots=True)
class BookTop:
    """What features need from one book state: best prices and cumulative depth."""

    time_us: int
    update_id: int
    best_bid: float
    best_ask: float
    bid_depth: tuple[float, ...]  # cumulative quantity over the top DEPTH_LEVELS levels
    ask_depth: tuple[float, ...]

    @property
    def mid(self) -> float:
        return (self.best_bid + self.best_ask) / 2.0

    @property
    def microprice(self) -> float:
        """Best prices weighted by the opposite side's size (Stoikov's micro-price, level 1)."""
        bq, aq = self.bid_depth[0], self.ask_depth[0]
        return (self.best_bid * aq + self.best_ask * bq) / (bq + aq) if bq + aq > 0 else self.mid


def book_top(book: OrderBook, time_us: int) -> BookTop | None:
    return top_of(book.top_bids(DEPTH_LEVELS[-1]), book.top_asks(DEPTH_LEVELS[-1]), book.last_update_id, time_us)


def top_of(bids: list[tuple[int, int]], asks: list[tuple[int, int]], update_id: int, time_us: int) -> BookTop | None:
    """The ``BookTop`` of a book's best levels (e8 units), None while a side is empty."""
    if not bids or not asks:
        return None

    def cumulative(levels: list[tuple[int, int]]) -> tuple[float, ...]:
        return tuple(to_float(sum(q for _, q in levels[:n])) for n in DEPTH_LEVELS)

    return BookTop(time_us, update_id, to_float(bids[0][0]), to_float(asks[0][0]), cumulative(bids), cumulative(asks))


def level_one_ofi(
    prev_bid: float,
    prev_bid_qty: float,
    prev_ask: float,
    prev_ask_qty: float,
    bid: float,
    bid_qty: float,
    ask: float,
    ask_qty: float,
) -> float:
    """One update's order-flow imbalance at the best level (Cont, Kukanov, Stoikov 2014), for the
    depth book's tops and the best bid/ask stream's quotes alike."""
    e = 0.0
    if bid >= prev_bid:
        e += bid_qty
    if bid <= prev_bid:
        e -= prev_bid_qty
    if ask <= prev_ask:
        e -= ask_qty
    if ask >= prev_ask:
        e += prev_ask_qty
    return e


def order_flow_contribution(prev: BookTop, cur: BookTop) -> float:
    """One book update's order-flow imbalance at the best level."""
    return level_one_ofi(
        prev.best_bid,
        prev.bid_depth[0],
        prev.best_ask,
        prev.ask_depth[0],
        cur.best_bid,
        cur.bid_depth[0],
        cur.best_ask,
        cur.ask_depth[0],
    )


@fast_state
@dataclass(frozen=True, slots=True)
class HistoryEntry:
    top: BookTop
    ofi: float  # order-flow contribution of the update that produced ``top``
    log_return_sq: float  # squared log mid change from the previous top
    valid: bool  # the book was in sequence (no unrecovered gap) at this update


class BookHistory:
    """Book summaries ordered by event time, bounded to HISTORY_US."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: deque[HistoryEntry] = deque()

    def add(self, top: BookTop, valid: bool = True) -> None:
        if not self.entries:
            self.entries.append(HistoryEntry(top, 0.0, 0.0, valid))
            return
        prev = self.entries[-1].top
        if top.time_us < prev.time_us:
            # Diffs are sequenced by update id; a diff stamped earlier than its
            # predecessor is treated as happening at the predecessor's time.
            top = BookTop(prev.time_us, top.update_id, top.best_bid, top.best_ask, top.bid_depth, top.ask_depth)
        ret = math.log(top.mid / prev.mid) if prev.mid > 0 and top.mid > 0 else 0.0
        self.entries.append(HistoryEntry(top, order_flow_contribution(prev, top), ret * ret, valid))

    def _index_at(self, time_us: int) -> int:
        times = [e.top.time_us for e in self.entries]
        return bisect.bisect_right(times, time_us)

    def entry_at(self, time_us: int) -> HistoryEntry | None:
        """The entry in force at ``time_us`` (last one with time <= time_us)."""
        idx = self._index_at(time_us)
        return self.entries[idx - 1] if idx else None

    def at(self, time_us: int) -> BookTop | None:
        entry = self.entry_at(time_us)
        return entry.top if entry else None

    def between(self, start_us: int, end_us: int) -> list[HistoryEntry]:
        """Entries with start_us < time <= end_us."""
        return [e for e in self.entries if start_us < e.top.time_us <= end_us]

    def prune(self, now_us: int) -> None:
        """Keep everything needed to answer ``at(t)`` for t >= now_us - HISTORY_US."""
        horizon = now_us - HISTORY_US
        while len(self.entries) > 1 and self.entries[1].top.time_us <= horizon:
            self.entries.popleft()


class QuoteHistory:
    """The best bid/ask stream's tops by event time, as columns, bounded to HISTORY_US.

    The stream sends every change of the top: on binance.com BTCUSDT about 90 a second, so the
    look-back holds hundreds of quotes, and the keyed state is pickled with every bundle. Columns
    (``array``) pickle as a few byte strings and are searched with ``bisect``; a deque of objects,
    as ``BookHistory`` keeps for the 10-a-second depth book, cost 4x the pickling and a scan per
    lookup here (``bench/job_compute.py``). ``ofi`` is each update's order-flow contribution;
    the OFI windows divide its sum by the time-weighted mean best-level size, (bid + ask) / 2.
    """

    __slots__ = ("times", "bids", "asks", "bid_qtys", "ask_qtys", "ofi", "last_update_id")

    def __init__(self) -> None:
        self.times = array("q")
        self.bids, self.asks, self.bid_qtys, self.ask_qtys, self.ofi = (array("d") for _ in range(5))
        self.last_update_id = -1

    def __len__(self) -> int:
        return len(self.times)

    def add(self, event: BestBidAskEvent | PerpQuoteEvent) -> bool:
        """Append a quote; False (nothing changes) for one not newer than the last by bookUpdateId."""
        if event.book_update_id <= self.last_update_id:
            return False
        self.last_update_id = event.book_update_id
        bid, ask = to_float(event.bid_price_e8), to_float(event.ask_price_e8)
        qb, qa = to_float(event.bid_qty_e8), to_float(event.ask_qty_e8)
        t = event.event_time_us
        if self.times:
            t = max(t, self.times[-1])  # as BookHistory: stamped earlier than its predecessor = at its time
            e = level_one_ofi(self.bids[-1], self.bid_qtys[-1], self.asks[-1], self.ask_qtys[-1], bid, qb, ask, qa)
        else:
            e = 0.0
        self.times.append(t)
        self.bids.append(bid)
        self.asks.append(ask)
        self.bid_qtys.append(qb)
        self.ask_qtys.append(qa)
        self.ofi.append(e)
        return True

    def mid(self, i: int) -> float:
        return (self.bids[i] + self.asks[i]) / 2.0

    def index_at(self, time_us: int) -> int:
        """Index of the quote in force at ``time_us`` (the last with time <= it); -1 before the first."""
        return bisect.bisect_right(self.times, time_us) - 1

    def ofi_norm(self, start_us: int, end_us: int) -> float:
        """OFI of the quotes in (start_us, end_us] over the time-weighted mean best size in the window
        (``_mean_depth``'s rule: each quote weighs the time it was in force, from its time, or
        the window's start for the one in force then, to the next quote's, or the window's end).

        Sums run over array slices with ``map`` (C loops): a 5 s window holds ~450 quotes.
        """
        first = self.index_at(start_us) + 1  # first quote inside the window
        last = self.index_at(end_us)
        lo = max(first - 1, 0)  # the quote in force at the window's start, if any
        times = self.times
        begin = max(start_us, times[lo])
        durations = map(sub, chain(times[lo + 1 : last + 1], (end_us,)), chain((begin,), times[lo + 1 : last + 1]))
        sizes = map(add, self.bid_qtys[lo : last + 1], self.ask_qtys[lo : last + 1])
        weighted = sum(map(mul, sizes, durations)) / 2.0
        total = end_us - begin
        mean = weighted / total if total > 0 else (self.bid_qtys[last] + self.ask_qtys[last]) / 2.0
        ofi = sum(self.ofi[first : last + 1])
        return ofi / mean if mean > 0 else ofi

    def prune(self, now_us: int) -> None:
        """Keep what ``index_at(t)`` needs for t >= now_us - HISTORY_US."""
        drop = self.index_at(now_us - HISTORY_US)
        if drop > 0:
            self.drop_oldest(drop)

    def drop_oldest(self, count: int) -> None:
        for column in (self.times, self.bids, self.asks, self.bid_qtys, self.ask_qtys, self.ofi):
            del column[:count]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything written at one boundary: trade windows and the feature vector."""

    time_us: int
    windows: dict[str, WindowStats]
    features: dict[str, float]


def _log_return(now: BookTop, then: BookTop | None) -> float:
    if then is None or then.mid <= 0:
        return 0.0
    return math.log(now.mid / then.mid)


def _imbalance(bid: float, ask: float) -> float:
    return (bid - ask) / (bid + ask) if bid + ask > 0 else 0.0


def _depth(top: BookTop, level: int) -> float:
    """(bid + ask) / 2 of the cumulative size over ``DEPTH_LEVELS[level]`` levels."""
    return (top.bid_depth[level] + top.ask_depth[level]) / 2.0


def _mean_depth(start: BookTop | None, updates: list[HistoryEntry], start_us: int, end_us: int, level: int = 0) -> float:
    """Time-weighted mean depth over ``DEPTH_LEVELS[level]`` levels, (bid + ask) / 2, over the window
    (start_us, end_us]: each book state weighs the time it was in force. OFI divided by it counts in
    "books of that depth" (the best level alone for ``ofi_norm_*``) rather than coins (Cont,
    Kukanov, Stoikov 2014 scale by average depth for the same reason).

    Weighted by time, not by count: a re-anchor adds a book state identical to the one before
    (zero OFI, zero duration), and a count would let it move the mean; the live job re-anchors
    where a batch replay does not. 1.0 when the window holds no time or no size.
    """
    states = ([(start_us, _depth(start, level))] if start is not None else []) + [
        (e.top.time_us, _depth(e.top, level)) for e in updates
    ]
    if not states:
        return 1.0
    weighted = total = 0.0
    for (t, size), (t_next, _) in zip(states, states[1:] + [(end_us, 0.0)]):
        duration = t_next - t
        weighted += size * duration
        total += duration
    mean = weighted / total if total > 0 else states[-1][1]
    return mean if mean > 0 else 1.0


def quote_features(time_us: int, quotes: QuoteHistory, book: BookTop) -> dict[str, float]:
    """Features of the best bid/ask stream as of ``time_us``; empty before its first quote.

    ``quote_lead_bp`` is how far the real-time mid has moved from the depth book's (which is up
    to 100 ms behind): the newest move the conflated book does not show yet.
    """
    i = quotes.index_at(time_us)
    if i < 0:
        return {}
    bid, ask, qb, qa = quotes.bids[i], quotes.asks[i], quotes.bid_qtys[i], quotes.ask_qtys[i]
    mid = quotes.mid(i)
    if mid <= 0 or book.mid <= 0:
        return {}
    microprice = (bid * qa + ask * qb) / (qb + qa) if qb + qa > 0 else mid
    features = {
        "quote_imbalance": _imbalance(qb, qa),
        "quote_microprice_offset_bp": (microprice - mid) / mid * 1e4,
        "quote_lead_bp": (mid - book.mid) / book.mid * 1e4,
    }
    for name, horizon in QUOTE_OFI_HORIZONS_US.items():
        features[f"quote_ofi_norm_{name}"] = quotes.ofi_norm(time_us - horizon, time_us)
    return features


def perp_features(time_us: int, perp: QuoteHistory, spot_returns: dict[str, float]) -> dict[str, float]:
    """``perp_lead_*``: the perpetual's log mid change minus the spot book's (``spot_returns``, the
    ``ret_*`` of the same horizons) over each horizon, in bp; empty while the perpetual has no quote
    at the horizon's start or its newest is older than ``PERP_MAX_AGE_US`` (a stalled feed must
    read as missing, never as "no move")."""
    now = perp.index_at(time_us)
    if now < 0 or time_us - perp.times[now] > PERP_MAX_AGE_US or perp.mid(now) <= 0:
        return {}
    features = {}
    for name, horizon in PERP_HORIZONS_US.items():
        then = perp.index_at(time_us - horizon)
        if then < 0 or perp.mid(then) <= 0:
            return {}
        features[f"perp_lead_{name}_bp"] = (math.log(perp.mid(now) / perp.mid(then)) - spot_returns[name]) * 1e4
    return features


def freshest_mid(time_us: int, top: BookTop, quotes: QuoteHistory | None) -> float:
    """The mid in force at ``time_us``: the best bid/ask stream's where it is live, else the book's top's.

    On binance.com the depth book is conflated every 100 ms, so its mid trails the real-time best
    bid/ask by up to that much; a label and a persistence forecast on the book's mid partly "predict"
    the book catching up with a price already known. Where the stream exists its mid is the price."""
    if quotes is None:
        return top.mid
    i = quotes.index_at(time_us)
    if i < 0 or top.time_us - quotes.times[i] > QUOTE_STALE_US:
        return top.mid
    mid = quotes.mid(i)
    return mid if mid > 0 else top.mid


def compute_snapshot(
    time_us: int,
    history: BookHistory,
    trades: TradeBuffer,
    quotes: QuoteHistory | None = None,
    perp: QuoteHistory | None = None,
    depth_flow: DepthFlow | None = None,
    context: LongContext | None = None,
) -> Snapshot | None:
    """Windows and features as of ``time_us``; None before the book has a top.

    Every value, the book-validity flag included, is a function of events with
    event time <= ``time_us`` only, so it does not depend on watermark lag. Without
    ``depth_flow`` or ``context`` their features are absent.
    """
    entry = history.entry_at(time_us)
    if entry is None:
        return None
    top = entry.top
    windows = {name: trades.stats(time_us, length, top.mid) for name, length in WINDOWS_US.items()}
    features = {
        "mid": freshest_mid(time_us, top, quotes),
        "ret_1s": _log_return(top, history.at(time_us - 1_000_000)),
        "ret_5s": _log_return(top, history.at(time_us - 5_000_000)),
        "spread_bp": (top.best_ask - top.best_bid) / top.mid * 1e4,
        "microprice_minus_mid": top.microprice - top.mid,
        "realized_vol_5s": math.sqrt(sum(e.log_return_sq for e in history.between(time_us - REALIZED_VOL_US, time_us))),
        "trade_intensity_5s": windows["5s"].count / 5.0,
        "book_valid": 1.0 if entry.valid else 0.0,
        "book_update_id": float(top.update_id),
    }
    for i, levels in enumerate(DEPTH_LEVELS):
        features[f"depth_imbalance_{levels}"] = _imbalance(top.bid_depth[i], top.ask_depth[i])
    for name, horizon in OFI_HORIZONS_US.items():
        updates = history.between(time_us - horizon, time_us)
        start = history.at(time_us - horizon)
        ofi = sum(e.ofi for e in updates)
        features[f"ofi_{name}"] = ofi
        features[f"ofi_norm_{name}"] = ofi / _mean_depth(start, updates, time_us - horizon, time_us)
        sums = depth_flow.sums(time_us - horizon, time_us) if depth_flow is not None and name in DEEP_OFI_HORIZONS_US else None
        if sums is not None:
            for levels, deep in zip(LEVEL_GROUPS, sums):
                depth = _mean_depth(start, updates, time_us - horizon, time_us, DEPTH_LEVELS.index(levels))
                features[f"ofi_l{levels}_norm_{name}"] = deep / depth
    for name, stats in windows.items():
        features[f"signed_flow_{name}"] = stats.signed_vol / stats.vol if stats.vol > 0 else 0.0
        features[f"count_imbalance_{name}"] = (2 * stats.buys - stats.count) / stats.count if stats.count > 0 else 0.0
    if context is not None:
        features.update(context.features(time_us, top.mid))
    if quotes is not None:
        features.update(quote_features(time_us, quotes, top))
    if perp is not None:
        features.update(perp_features(time_us, perp, {name: features[f"ret_{name}"] for name in PERP_HORIZONS_US}))
    return Snapshot(time_us, windows, features)
