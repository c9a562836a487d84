"""An always-valid test of one forecast against another, read every cycle without inflating errors.

The hourly gate reads a fixed sample once. Online, the contest between the champion and a
challenger is looked at every 2 s, and a fixed-sample test read that often rejects a true null
far more often than its alpha. This is a test by betting (Shafer 2021; Waudby-Smith and Ramdas
2023): a wealth that starts at 1 and, at each closed block of data time, stakes a fraction of
itself on the block's summed loss differential having the sign the alternative says. Under the
null the wealth is a nonnegative supermartingale, so by Ville's inequality the chance that it
*ever* reaches ``1 / alpha`` is at most ``alpha``: the whole lifetime's error, however often it is
read. That is the promotion (a challenger better than the champion) and the demotion (a champion
worse than persistence) the service may act on.

- The units are the blocks of ``btcpred.common.forecast_skill``: 5 minutes of data time, closed
  early by a gap of more than a minute; rows within a block share their labels and volatility.
- The null is the gate's wild bootstrap's: given the past, a block's summed differential is
  symmetric about a centre <= 0 ("the challenger is not better"). The bet is on
  ``x = clip(sum / scale, -1, 1)``, an odd, increasing function of the sum whose ``scale`` (the
  median |sum| of the blocks before it) is fixed before the block is seen, so ``E[x | past] <= 0``
  under that null and no stake in [0, 1/2] grows the wealth in expectation.
- The stake is the running ``sum(x) / (1 + sum(x^2))`` of past blocks, clipped to [0, 1/2]: it
  bets more as the evidence leans one way and never bets against the alternative.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field

from btcpred.common.forecast_skill import ALPHA, BLOCK_MS, GAP_MS

MAX_STAKE = 0.5  # a block can at most halve the wealth, or raise it by half
SCALE_BLOCKS = 288  # the scale is the median |sum| of the last day's blocks at most


@dataclass
class BettingTest:
    """Wealth on "the differential is positive", one closed block at a time."""

    alpha: float = ALPHA
    wealth: float = 1.0
    peak: float = 1.0  # the highest wealth so far (reached 1/alpha once: rejected for good)
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=SCALE_BLOCKS))  # |summed differential|
    blocks: int = 0  # closed blocks seen
    sum_x: float = 0.0
    sum_x2: float = 0.0

    @property
    def rejected(self) -> bool:
        return self.peak >= 1.0 / self.alpha

    def stake(self) -> float:
        return min(max(self.sum_x / (1.0 + self.sum_x2), 0.0), MAX_STAKE)

    def add_block(self, block_sum: float) -> None:
        if not math.isfinite(block_sum):
            return
        if self.recent:  # the first block only sets the scale: there is nothing to size a bet by before it
            scale = statistics.median(self.recent)
            x = 0.0 if scale == 0 else min(max(block_sum / scale, -1.0), 1.0)
            self.wealth *= 1.0 + self.stake() * x
            self.peak = max(self.peak, self.wealth)
            self.sum_x += x
            self.sum_x2 += x * x
        self.recent.append(abs(block_sum))
        self.blocks += 1


@dataclass
class BlockedDifferential:
    """Rows of a loss differential in data time, summed into blocks that feed a ``BettingTest``."""

    test: BettingTest = field(default_factory=BettingTest)
    block_ms: int = BLOCK_MS
    gap_ms: int = GAP_MS
    start_ms: int | None = None
    last_ms: int | None = None
    open_sum: float = 0.0
    open_rows: int = 0
    rows: int = 0
    total: float = 0.0

    def add(self, ts_ms: int, diff: float) -> bool:
        """One row; True when it closed a block (the test moved). Rows out of time order are ignored."""
        if not math.isfinite(diff) or (self.last_ms is not None and ts_ms <= self.last_ms):
            return False
        closed = False
        if self.start_ms is not None and (ts_ms - self.start_ms >= self.block_ms or ts_ms - self.last_ms > self.gap_ms):
            self.test.add_block(self.open_sum)
            self.open_sum, self.open_rows, closed = 0.0, 0, True
            self.start_ms = None
        if self.start_ms is None:
            self.start_ms = ts_ms
        self.last_ms = ts_ms
        self.open_sum += diff
        self.open_rows += 1
        self.rows += 1
        self.total += diff
        return closed

    def figures(self) -> dict:
        """What a decision records: the e-value, how much evidence, and the mean differential."""
        t = self.test
        return {
            "e_value": t.wealth,
            "peak_e_value": t.peak,
            "threshold": 1.0 / t.alpha,
            "alpha": t.alpha,
            "blocks": t.blocks,
            "rows": self.rows,
            "mean_diff": self.total / self.rows if self.rows else None,
            "stake": t.stake(),
        }
