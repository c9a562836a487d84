"""Trailing trade statistics over event-time windows.

A window ending at ``end_us`` with length ``length_us`` holds the trades with
``end_us - length_us < trade_time_us <= end_us`` (trade time = the exchange's
transaction time). Signed volume counts taker buys positive: a trade whose
buyer is the maker was initiated by a seller.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass

from btcpred.udfs.events import TradesEvent, to_float
from btcpred.udfs.pickling import fast_state


@fast_state
@dataclass(frozen=True, slots=True)
class TradePoint:
    time_us: int
    price: float
    qty: float
    sign: int  # +1 taker buy, -1 taker sell


@fast_state
@dataclass(frozen=True, slots=True)
class WindowStats:
    count: int
    buys: int  # trades a taker bought in (``count_imbalance_*``)
    vol: float
    signed_vol: float
    vwap_minus_mid: float
    last_ts_us: int  # time of the newest trade in the window; 0 when the window is empty


def trade_points(event: TradesEvent) -> list[TradePoint]:
    return [
        TradePoint(event.transact_time_us, to_float(t.price_e8), to_float(t.qty_e8), -1 if t.is_buyer_maker else 1)
        for t in event.trades
    ]


class TradeBuffer:
    """Trades ordered by time, pruned from the old end as windows move on."""

    __slots__ = ("points",)

    def __init__(self) -> None:
        self.points: deque[TradePoint] = deque()

    def add(self, point: TradePoint) -> None:
        if not self.points or point.time_us >= self.points[-1].time_us:
            self.points.append(point)
            return
        items = list(self.points)  # rare out-of-order trade: insert in place
        idx = bisect.bisect_right([p.time_us for p in items], point.time_us)
        items.insert(idx, point)
        self.points = deque(items)

    def prune_before(self, time_us: int) -> None:
        """Drop trades at or before ``time_us`` (no window reaches them any more)."""
        while self.points and self.points[0].time_us <= time_us:
            self.points.popleft()

    def stats(self, end_us: int, length_us: int, mid: float) -> WindowStats:
        start = end_us - length_us
        count = buys = 0
        vol = signed = notional = 0.0
        last = 0
        for p in self.points:
            if p.time_us <= start:
                continue
            if p.time_us > end_us:
                break
            count += 1
            buys += p.sign > 0
            vol += p.qty
            signed += p.sign * p.qty
            notional += p.price * p.qty
            last = p.time_us
        vwap_minus_mid = (notional / vol - mid) if vol > 0 and mid > 0 else 0.0
        return WindowStats(count, buys, vol, signed, vwap_minus_mid, last)
