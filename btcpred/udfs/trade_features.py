"""Feature vectors of a trades-only market: what the tape alone says at each 2 s boundary.

A market known only by its trades (data.binance.vision's aggTrades, the REST poller's archive)
has no book, so neither mid nor depth: its price is the last trade's, and its signals are the
flow of aggressive orders. Signed trade flow over the last seconds is the clearest of them on
the one day of binance.com tick data on hand (COIN-M, 24 h: the 5 s flow correlates 0.14 with
the next 10 s return). Every feature is scale-free (returns, shares, ratios), so one model reads
any market's tape on the same scale.

The tape keeps running sums (count, buys, volume, signed volume, squared trade-to-trade log
returns), so any window is two bisections and a subtraction, and the same ``TradeTape`` serves a
day in batch and an unbounded stream alike (``prune_before`` drops what no window reaches).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

RETURN_HORIZONS_US = {"1s": 1_000_000, "5s": 5_000_000, "30s": 30_000_000, "300s": 300_000_000}
FLOW_WINDOWS_US = {"1s": 1_000_000, "5s": 5_000_000, "30s": 30_000_000, "300s": 300_000_000}
COUNT_WINDOWS_US = {"5s": 5_000_000, "30s": 30_000_000}
VOL_WINDOWS_US = {"30s": 30_000_000, "300s": 300_000_000}
LONGEST_US = 300_000_000  # the longest look-back: a row needs this much tape before it
TRADE_VOL_FEATURE = "trade_vol_30s"  # the prediction interval's scale on a trades-only market

TRADE_FEATURE_NAMES = (
    *(f"trade_ret_{h}" for h in RETURN_HORIZONS_US),
    *(f"trade_flow_{w}" for w in FLOW_WINDOWS_US),
    *(f"trade_count_imbalance_{w}" for w in COUNT_WINDOWS_US),
    "trade_intensity_ratio",
    *(f"trade_vol_{w}" for w in VOL_WINDOWS_US),
)


class TradeTape:
    """Trades in time order with running sums; a trade older than the newest is refused (the caller
    orders them: aggTrades files and the exchange's stream are in transaction order)."""

    __slots__ = ("times", "prices", "cum_count", "cum_buys", "cum_vol", "cum_signed", "cum_sq", "offset")

    def __init__(self) -> None:
        self.times: list[int] = []
        self.prices: list[float] = []
        # running sums *after* each trade; index i holds the sums over trades [0, i]
        self.cum_count: list[int] = []
        self.cum_buys: list[int] = []
        self.cum_vol: list[float] = []
        self.cum_signed: list[float] = []
        self.cum_sq: list[float] = []  # squared log return from the trade before, summed
        self.offset = 0  # trades pruned from the front (sums stay absolute)

    def add(self, time_us: int, price: float, qty: float, taker_buy: bool) -> bool:
        """Append one trade; False (nothing changes) for one out of order or with a price or size that
        is no number a market trades at."""
        if not (math.isfinite(price) and price > 0 and math.isfinite(qty) and qty >= 0):
            return False
        if self.times and time_us < self.times[-1]:
            return False
        last = len(self.times) - 1
        sq = math.log(price / self.prices[last]) ** 2 if last >= 0 else 0.0
        self.times.append(time_us)
        self.prices.append(price)
        self.cum_count.append((self.cum_count[last] if last >= 0 else 0) + 1)
        self.cum_buys.append((self.cum_buys[last] if last >= 0 else 0) + (1 if taker_buy else 0))
        self.cum_vol.append((self.cum_vol[last] if last >= 0 else 0.0) + qty)
        self.cum_signed.append((self.cum_signed[last] if last >= 0 else 0.0) + (qty if taker_buy else -qty))
        self.cum_sq.append((self.cum_sq[last] if last >= 0 else 0.0) + sq)
        return True

    def prune_before(self, time_us: int) -> None:
        """Drop trades older than ``time_us`` except the last of them (the price in force then)."""
        keep_from = max(bisect.bisect_left(self.times, time_us) - 1, 0)
        if keep_from > 1024:  # amortized: slicing lists is O(n)
            for name in ("times", "prices", "cum_count", "cum_buys", "cum_vol", "cum_signed", "cum_sq"):
                setattr(self, name, getattr(self, name)[keep_from:])
            self.offset += keep_from

    def last_index(self, time_us: int) -> int:
        """Index of the newest trade at or before ``time_us``; -1 if none."""
        return bisect.bisect_right(self.times, time_us) - 1

    def price_at(self, time_us: int) -> float | None:
        """The price in force at ``time_us``: the last trade's at or before it."""
        i = self.last_index(time_us)
        return self.prices[i] if i >= 0 else None

    def _window(self, sums: list, end: int, start_us: int):
        """A running sum over trades in (start_us, trade ``end``]."""
        before = self.last_index(start_us)
        return sums[end] - (sums[before] if before >= 0 else 0)


@dataclass(frozen=True, slots=True)
class TradeSnapshot:
    time_us: int
    price: float  # the last trade's price at time_us: what persistence predicts
    features: dict[str, float]


def trade_snapshot(time_us: int, tape: TradeTape) -> TradeSnapshot | None:
    """Features as of ``time_us`` from trades at or before it; None until the tape reaches back the
    longest look-back (a row without its full context is not a row)."""
    end = tape.last_index(time_us)
    if end < 0 or tape.times[0] > time_us - LONGEST_US:
        return None
    price = tape.prices[end]
    features: dict[str, float] = {}
    for name, horizon in RETURN_HORIZONS_US.items():
        then = tape.price_at(time_us - horizon)
        features[f"trade_ret_{name}"] = math.log(price / then) if then else 0.0
    for name, window in FLOW_WINDOWS_US.items():
        vol = tape._window(tape.cum_vol, end, time_us - window)
        features[f"trade_flow_{name}"] = tape._window(tape.cum_signed, end, time_us - window) / vol if vol > 0 else 0.0
    for name, window in COUNT_WINDOWS_US.items():
        count = tape._window(tape.cum_count, end, time_us - window)
        buys = tape._window(tape.cum_buys, end, time_us - window)
        features[f"trade_count_imbalance_{name}"] = (2 * buys - count) / count if count else 0.0
    recent = tape._window(tape.cum_count, end, time_us - 5_000_000)
    longer = tape._window(tape.cum_count, end, time_us - LONGEST_US)
    # the last 5 s's pace against the last 5 minutes', each with one trade added so a quiet tape reads 1
    features["trade_intensity_ratio"] = ((recent + 1) / 5.0) / ((longer + 1) / 300.0)
    for name, window in VOL_WINDOWS_US.items():
        features[f"trade_vol_{name}"] = math.sqrt(max(tape._window(tape.cum_sq, end, time_us - window), 0.0))
    return TradeSnapshot(time_us, price, features)
