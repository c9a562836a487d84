"""Feature vectors at event-time boundaries, identical in the Flink job and batch.

The book side is recorded as a history of top-of-book summaries, one per applied
depth diff, so features "as of time T" use exactly the book after the last diff
with event time <= T, whatever the arrival order or watermark lag.
"""
from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass

from udfs.events import to_float
from udfs.order_book import OrderBook
from udfs.trade_window import TradeBuffer, WindowStats

IMBALANCE_DEPTH = 10
WINDOWS_US = {"1s": 1_000_000, "5s": 5_000_000}
HISTORY_US = 6_000_000  # longest look-back (5 s return) plus one boundary step of slack


@dataclass(frozen=True, slots=True)
class BookTop:
    time_us: int
    update_id: int
    best_bid: float
    best_ask: float
    bid_qty: float  # sum over the top IMBALANCE_DEPTH levels
    ask_qty: float

    @property
    def mid(self) -> float:
        return (self.best_bid + self.best_ask) / 2.0


def book_top(book: OrderBook, time_us: int) -> BookTop | None:
    bids = book.top_bids(IMBALANCE_DEPTH)
    asks = book.top_asks(IMBALANCE_DEPTH)
    if not bids or not asks:
        return None
    return BookTop(
        time_us=time_us,
        update_id=book.last_update_id,
        best_bid=to_float(bids[0][0]),
        best_ask=to_float(asks[0][0]),
        bid_qty=to_float(sum(q for _, q in bids)),
        ask_qty=to_float(sum(q for _, q in asks)),
    )


class BookHistory:
    """Top-of-book summaries ordered by event time, bounded to HISTORY_US."""

    __slots__ = ("tops",)

    def __init__(self) -> None:
        self.tops: deque[BookTop] = deque()

    def add(self, top: BookTop) -> None:
        if self.tops and top.time_us < self.tops[-1].time_us:
            # Diffs are sequenced by update id; a diff stamped earlier than its
            # predecessor is treated as happening at the predecessor's time.
            top = BookTop(self.tops[-1].time_us, top.update_id, top.best_bid, top.best_ask, top.bid_qty, top.ask_qty)
        self.tops.append(top)

    def at(self, time_us: int) -> BookTop | None:
        """The summary in force at ``time_us`` (last one with time <= time_us)."""
        times = [t.time_us for t in self.tops]
        idx = bisect.bisect_right(times, time_us)
        return self.tops[idx - 1] if idx else None

    def prune(self, now_us: int) -> None:
        """Keep everything needed to answer ``at(t)`` for t >= now_us - HISTORY_US."""
        horizon = now_us - HISTORY_US
        while len(self.tops) > 1 and self.tops[1].time_us <= horizon:
            self.tops.popleft()


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


def compute_snapshot(time_us: int, history: BookHistory, trades: TradeBuffer, book_valid: bool) -> Snapshot | None:
    """Windows and features as of ``time_us``; None before the book has a top."""
    top = history.at(time_us)
    if top is None:
        return None
    windows = {name: trades.stats(time_us, length, top.mid) for name, length in WINDOWS_US.items()}
    depth = top.bid_qty + top.ask_qty
    features = {
        "mid": top.mid,
        "ret_1s": _log_return(top, history.at(time_us - 1_000_000)),
        "ret_5s": _log_return(top, history.at(time_us - 5_000_000)),
        "vol_imbalance": (top.bid_qty - top.ask_qty) / depth if depth > 0 else 0.0,
        "spread_bp": (top.best_ask - top.best_bid) / top.mid * 1e4,
        "book_valid": 1.0 if book_valid else 0.0,
        "book_update_id": float(top.update_id),
    }
    return Snapshot(time_us, windows, features)
