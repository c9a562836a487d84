"""Order-flow imbalance over the top 5 and top 10 levels, per book update.

Level 1's OFI (Cont, Kukanov, Stoikov 2014) sees only what happens at the best prices. Deeper
levels carry part of the same pressure: orders added or pulled behind the top move the price
next (multi-level OFI: Xu, Kolm and Hoffman 2019; Cont, Cucuringu and Zhang 2023 integrate it).
Each update's contribution at level m applies the level-1 rule to the m-th best price and size of
each side; a level one of the two books lacks contributes nothing on that side. The sums over
levels 1-5 and 1-10 are kept per update, stamped like ``BookHistory``'s entry for the same update,
and bounded to ``HISTORY_US`` as it is. The windows divide them by the time-weighted depth over
the same levels (``features._mean_depth``), so they count in "books of that depth", not in coins.
A window reaching back before the first update this flow saw (a start, or a restore of state
written before it existed) is absent rather than a partial sum.
"""

from __future__ import annotations

import bisect
from array import array

from btcpred.udfs.events import to_float

LEVEL_GROUPS = (5, 10)  # OFI summed over levels 1..5 and 1..10
DEEPEST = LEVEL_GROUPS[-1]

Levels = tuple[tuple[float, float], ...]  # (price, quantity) from the best level down


def side_flow(prev: Levels, cur: Levels, bid: bool) -> list[float]:
    """Per level, the order-flow contribution of one side's change from ``prev`` to ``cur``:
    bids count positive when price rises or size grows at a price held, asks the opposite."""
    out = []
    for (pp, pq), (p, q) in zip(prev, cur):
        e = 0.0
        if bid:
            if p >= pp:
                e += q
            if p <= pp:
                e -= pq
        else:
            if p <= pp:
                e -= q
            if p >= pp:
                e += pq
        out.append(e)
    return out


def float_levels(levels: list[tuple[int, int]]) -> Levels:
    return tuple((to_float(p), to_float(q)) for p, q in levels[:DEEPEST])


class DepthFlow:
    """Multi-level OFI per book update as columns (``array``: cheap to pickle with the keyed state)."""

    __slots__ = ("times", "ofi_5", "ofi_10", "bids", "asks", "since_us")

    def __init__(self) -> None:
        self.since_us: int | None = None  # the first update's time: windows before it are incomplete
        self.times = array("q")
        self.ofi_5 = array("d")
        self.ofi_10 = array("d")
        self.bids: Levels = ()
        self.asks: Levels = ()

    def __len__(self) -> int:
        return len(self.times)

    def add(self, time_us: int, bids: Levels, asks: Levels) -> None:
        """One book state (``time_us`` as ``BookHistory`` stamped it); the first after a start adds
        zero flow, as ``BookHistory``'s first entry does."""
        if self.since_us is None:
            self.since_us = time_us
        bid_flow = side_flow(self.bids, bids, True)
        ask_flow = side_flow(self.asks, asks, False)
        self.times.append(time_us)
        self.ofi_5.append(sum(bid_flow[:5]) + sum(ask_flow[:5]))
        self.ofi_10.append(sum(bid_flow[:10]) + sum(ask_flow[:10]))
        self.bids, self.asks = bids, asks

    def sums(self, start_us: int, end_us: int) -> tuple[float, float] | None:
        """Summed OFI over levels 1-5 and 1-10 of the updates in (start_us, end_us]; None when the
        window reaches back before the first update seen."""
        if self.since_us is None or self.since_us > start_us:
            return None
        lo = bisect.bisect_right(self.times, start_us)
        hi = bisect.bisect_right(self.times, end_us)
        return sum(self.ofi_5[lo:hi]), sum(self.ofi_10[lo:hi])

    def prune(self, oldest_us: int) -> None:
        """Drop updates at or before ``oldest_us``: no window reaches them any more."""
        count = bisect.bisect_right(self.times, oldest_us)
        if count > 0:
            self._drop(count)

    def drop_oldest(self, count: int) -> None:
        """The cap's cut (``SymbolState.enforce_caps``): windows reaching back to what goes read as incomplete."""
        self.since_us = max(self.since_us or 0, self.times[count - 1] + 1)
        self._drop(count)

    def _drop(self, count: int) -> None:
        for column in (self.times, self.ofi_5, self.ofi_10):
            del column[:count]
