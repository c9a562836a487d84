"""The interval and the confidence as served: recalibrated on the market's own realized rows.

An artifact's interval and confidence are sized on validation rows of the venue it was trained
on. Served on another market, or on its own once the market changes, the same volatility-scaled
error has another spread: Binance.US's 80 % interval held 62-70 % of binance.com's moves. So the
service keeps its last ``ROLLING_ROWS`` realized rows (prediction, what happened 10 s later, the
volatility scale at prediction time) and, once it has ``MIN_ROWS`` of them, states

- the interval from the conformal quantile of those rows' scaled errors (the same statistic the
  artifact's quantile is, on the newest rows of this market) at a level that adapts to the misses
  (adaptive conformal inference, Gibbs and Candes 2021: after each realized row the level moves by
  ``ACI_STEP`` times the miss rate's deviation from nominal, so the long-run miss rate is held
  at nominal even where the rows are not exchangeable; volatility clusters), and
- the confidence from the hit rate of rows whose predicted move, relative to the volatility,
  was of a similar size (the bin it falls in, shrunk towards the window's overall hit rate), so
  a move large against the noise can say more than a small one.

Before that the artifact's own figures stand. A row only enters once its outcome is known (10 s of
data time after it), so nothing here looks ahead. ``replay`` runs the same code over held-out rows
in time order: the reports score what serving would have stated.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import numpy as np

from btcpred.common.model_artifact import conformal_quantile

ROLLING_ROWS = 450  # 15 minutes of 2 s predictions
MIN_ROWS = 30  # realized rows (a minute) before the window's figures replace the artifact's
ACI_STEP = 0.03  # how far one miss (or hit) moves the level; docs/training.md has coverage for 0, 0.01, 0.03, 0.05
CONFIDENCE_BINS = 4  # quantile bins of the scaled predicted move
PRIOR_ROWS = 20.0  # a bin's hit rate is shrunk towards the window's as if this many rows said so


class Recalibration:
    """The last ``window`` realized rows of one served source on one market, for an interval of ``coverage``."""

    def __init__(
        self, coverage: float = 0.8, window: int = ROLLING_ROWS, min_rows: int = MIN_ROWS, step: float = ACI_STEP
    ) -> None:
        self.coverage = coverage
        self.min_rows = min_rows
        self.step = step
        self.miss_level = 1.0 - coverage  # the miss rate the next quantile is taken for
        self.scaled_errors: deque[float] = deque(maxlen=window)
        self.moves: deque[tuple[float, float]] = deque(maxlen=window)  # (scaled predicted move, 1.0 right / 0.0 wrong)

    def add(self, realized: float, predicted: float, scale: float, stated_quantile: float | None = None) -> None:
        """One realized row: log returns realized and predicted, the volatility scale it was stated with and
        the quantile the stated interval used (``None``: no interval was stated; the level stays)."""
        if not (math.isfinite(realized) and math.isfinite(predicted) and math.isfinite(scale) and scale > 0):
            return  # a row the interval was never stated for says nothing about its width
        error = abs(realized - predicted) / scale
        self.scaled_errors.append(error)
        if stated_quantile is not None and math.isfinite(stated_quantile):
            missed = 1.0 if error > stated_quantile else 0.0
            self.miss_level += self.step * ((1.0 - self.coverage) - missed)
        if realized != 0 and predicted != 0:  # the price moved and the prediction took a side
            self.moves.append((abs(predicted) / scale, 1.0 if (realized > 0) == (predicted > 0) else 0.0))

    def clear(self) -> None:
        self.scaled_errors.clear()
        self.moves.clear()

    @property
    def ready(self) -> bool:
        return len(self.scaled_errors) >= self.min_rows

    @property
    def level(self) -> float:
        """The coverage the window's quantile is taken at: nominal, moved by the misses so far."""
        return min(max(1.0 - self.miss_level, 0.5), 0.99)

    def quantile(self, fallback: float) -> float:
        """The scaled-error quantile the interval uses: this window's conformal one, else ``fallback``."""
        if not self.ready:
            return fallback
        errors = np.fromiter(self.scaled_errors, float)
        q = conformal_quantile(errors, self.level)
        return q if math.isfinite(q) else float(errors.max())  # a level past what the window can state

    def confidence(self, predicted: float, scale: float, fallback: float) -> float:
        """P(direction right | price moved) for a predicted log return ``predicted`` at volatility scale ``scale``."""
        if len(self.moves) < self.min_rows or predicted == 0 or not (math.isfinite(scale) and scale > 0):
            return fallback
        moves = np.array(self.moves)
        overall = float(moves[:, 1].mean())
        edges = np.unique(np.quantile(moves[:, 0], np.linspace(0, 1, CONFIDENCE_BINS + 1)[1:-1]))
        bins = np.searchsorted(edges, moves[:, 0], side="left")  # bin k: (edges[k-1], edges[k]]
        # a move beyond the window's range belongs with the window's most extreme rows
        mine = int(np.searchsorted(edges, np.clip(abs(predicted) / scale, moves[:, 0].min(), moves[:, 0].max()), side="left"))
        in_bin = moves[bins == mine, 1]
        return float((in_bin.sum() + PRIOR_ROWS * overall) / (len(in_bin) + PRIOR_ROWS))


def replay(
    ts_ms: np.ndarray,
    market: np.ndarray,
    y: np.ndarray,
    pred: np.ndarray,
    scale: np.ndarray,
    fallback_quantile: np.ndarray,
    fallback_confidence: np.ndarray,
    coverage: float,
    horizon_ms: int,
    make: Callable[[float], Recalibration] = Recalibration,
) -> tuple[np.ndarray, np.ndarray]:
    """What serving would have stated on held-out rows, in time order per market: per row, whether the
    realized return fell inside the recalibrated interval, and the recalibrated confidence.

    A row's outcome joins its market's window only once ``horizon_ms`` of data time has passed.
    """
    hits = np.zeros(len(y), dtype=bool)
    confidence = np.array(fallback_confidence, dtype=float, copy=True)
    for venue in dict.fromkeys(market):
        idx = np.flatnonzero(market == venue)
        idx = idx[np.argsort(ts_ms[idx], kind="stable")]
        window = make(coverage)
        pending: deque[tuple[int, float]] = deque()  # (row, the quantile its interval was stated with)
        for i in idx:
            while pending and ts_ms[pending[0][0]] + horizon_ms <= ts_ms[i]:
                j, stated = pending.popleft()
                window.add(y[j], pred[j], scale[j], stated)
            q = window.quantile(fallback_quantile[i])
            hits[i] = abs(y[i] - pred[i]) <= q * scale[i]
            if pred[i] != 0:
                confidence[i] = window.confidence(pred[i], scale[i], fallback_confidence[i])
            pending.append((i, q))
    return hits, confidence
