"""Trade flow and price movement over 30 s and 5 min, kept in 500 ms buckets.

The 1 s and 5 s features read every trade and every book top (kept ``HISTORY_US``). Five minutes of
those would be tens of thousands of entries, and the keyed state is pickled with every bundle; so
the long windows count in buckets of ``BUCKET_US`` instead: per bucket the trades' count, buys,
volume and signed volume, the book's summed squared log mid changes, and its last mid.

A window of length L at boundary T covers the buckets wholly at or before T, that is
(E - L, E] with E = T rounded down to the bucket grid. Every boundary the job (500 ms) and the
batch path (2 s) cut lies on that grid, so there the window is exactly (T - L, T]. A window reaching
back before the first event this context saw is incomplete: its features are absent (never a
partial sum read as the whole), as they are for the first 5 minutes after a start without state.

Bucket ``k`` holds event times in ((k - 1) * BUCKET_US, k * BUCKET_US], the windows' own
convention (end inclusive). Columns are ``array`` (a few byte strings when pickled), dense from
``first`` on: one bucket per 500 ms whether or not anything happened in it.
"""

from __future__ import annotations

import math
from array import array

BUCKET_US = 500_000
CONTEXT_WINDOWS_US = {"30s": 30_000_000, "300s": 300_000_000}
LONGEST_CONTEXT_US = max(CONTEXT_WINDOWS_US.values())
# the ring holds the longest window plus this much slack: a diff may arrive stamped somewhat before
# the last cut boundary (the book is sequenced by update id, not by time) and must still land
KEEP_BUCKETS = LONGEST_CONTEXT_US // BUCKET_US + 20
# a bucket this far ahead of the ring's end is a far-future time event_rules let through (it bounds
# the lead over receipt): the context starts again there rather than growing a dense gap
MAX_SPAN_BUCKETS = 4 * KEEP_BUCKETS
CONTEXT_KINDS = ("ret", "realized_vol", "signed_flow", "count_imbalance")
# each context feature and the look-back it needs: absent until that much has been seen
CONTEXT_LOOKBACK_US = {f"{kind}_{name}": length for name, length in CONTEXT_WINDOWS_US.items() for kind in CONTEXT_KINDS}
CONTEXT_FEATURES = tuple(CONTEXT_LOOKBACK_US)


def bucket_of(time_us: int) -> int:
    """The bucket holding ``time_us``: ((k - 1) * BUCKET_US, k * BUCKET_US]."""
    return -(-time_us // BUCKET_US)


class LongContext:
    """Per-bucket sums from ``first`` on; ``since_us`` is the time of the first event seen since the
    context (re)started: windows reaching back before it are incomplete."""

    __slots__ = ("first", "since_us", "counts", "buys", "vols", "signed", "sq_returns", "closes", "restarts")

    def __init__(self) -> None:
        self.first = 0
        self.since_us: int | None = None
        self.counts, self.buys, self.vols, self.signed, self.sq_returns, self.closes = (array("d") for _ in range(6))
        self.restarts = 0  # times a far-future event made the context start again (a Flink gauge via entries)

    def __len__(self) -> int:
        return len(self.counts)

    def _columns(self) -> tuple[array, ...]:
        return (self.counts, self.buys, self.vols, self.signed, self.sq_returns, self.closes)

    def _slot(self, time_us: int) -> int | None:
        """Index of ``time_us``'s bucket, growing the ring to it; None for a time before the ring."""
        k = bucket_of(time_us)
        if self.since_us is None:
            self.first, self.since_us = k, time_us
        elif k - (self.first + len(self)) >= MAX_SPAN_BUCKETS:
            self.restarts += 1
            self._clear()
            self.first, self.since_us = k, time_us
        elif k < self.first:
            return None
        grow = k - (self.first + len(self)) + 1
        if grow > 0:
            for column in self._columns():
                column.extend([math.nan] * grow if column is self.closes else [0.0] * grow)
        return k - self.first

    def _clear(self) -> None:
        for column in self._columns():
            del column[:]

    def add_trade(self, time_us: int, qty: float, sign: int) -> None:
        i = self._slot(time_us)
        if i is None:
            return
        self.counts[i] += 1.0
        if sign > 0:
            self.buys[i] += 1.0
        self.vols[i] += qty
        self.signed[i] += sign * qty

    def add_book(self, time_us: int, mid: float, log_return_sq: float) -> None:
        """One book update: its mid (the bucket's close once no later update lands there) and the
        squared log change from the previous top, as ``BookHistory`` computed it."""
        i = self._slot(time_us)
        if i is None:
            return
        self.sq_returns[i] += log_return_sq
        self.closes[i] = mid

    def prune(self, now_us: int) -> None:
        """Keep ``KEEP_BUCKETS`` ending at ``now_us``'s bucket."""
        drop = bucket_of(now_us) - KEEP_BUCKETS + 1 - self.first
        if drop <= 0 or self.since_us is None:
            return
        if drop < len(self):
            self._drop(drop)
            return
        # a stream quiet for longer than the ring: keep only the last close, at the new start
        carried = self._close_at(self.first + len(self) - 1)
        self._clear()
        self.first += drop
        if carried is not None:
            self._slot(self.first * BUCKET_US)
            self.closes[0] = carried

    def drop_oldest(self, count: int) -> None:
        """The cap's cut (``SymbolState.enforce_caps``): the oldest ``count`` buckets go, and windows
        reaching back to them read as incomplete."""
        self._drop(count)
        self.since_us = max(self.since_us or 0, (self.first - 1) * BUCKET_US + 1)

    def _drop(self, count: int) -> None:
        """Drop the oldest ``count`` buckets; the close in force at the kept range's start moves into
        its first bucket, so the mid as of any kept time stays answerable."""
        carried = next((c for c in reversed(self.closes[:count]) if not math.isnan(c)), math.nan)
        for column in self._columns():
            del column[:count]
        self.first += count
        if len(self) and math.isnan(self.closes[0]):
            self.closes[0] = carried

    def features(self, time_us: int, mid_now: float) -> dict[str, float]:
        """The context features at boundary ``time_us`` (``mid_now``: the book's mid in force there);
        a window's four are absent while it reaches back before ``since_us``."""
        out: dict[str, float] = {}
        if self.since_us is None:
            return out
        end = time_us // BUCKET_US  # the last bucket wholly at or before time_us
        for name, length in CONTEXT_WINDOWS_US.items():
            start = end - length // BUCKET_US  # the window is buckets (start, end]
            if start * BUCKET_US < self.since_us:
                continue
            lo, hi = max(start + 1 - self.first, 0), max(end + 1 - self.first, 0)
            then = self._close_at(start)
            if then is None or then <= 0 or mid_now <= 0:
                continue
            count = sum(self.counts[lo:hi])
            vol = sum(self.vols[lo:hi])
            out[f"ret_{name}"] = math.log(mid_now / then)
            out[f"realized_vol_{name}"] = math.sqrt(sum(self.sq_returns[lo:hi]))
            out[f"signed_flow_{name}"] = sum(self.signed[lo:hi]) / vol if vol > 0 else 0.0
            out[f"count_imbalance_{name}"] = (2.0 * sum(self.buys[lo:hi]) - count) / count if count > 0 else 0.0
        return out

    def _close_at(self, k: int) -> float | None:
        """The book's mid in force at the end of bucket ``k``: the newest close at or before it."""
        i = min(k - self.first, len(self) - 1)
        while i >= 0:
            c = self.closes[i]
            if not math.isnan(c):
                return c
            i -= 1
        return None
