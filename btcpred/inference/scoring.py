"""Online accuracy: every prediction is scored against the mid realized 10 s later in data time.

Scoring uses exchange (data) time, not wall time, so a fast replay is scored exactly as a
live run would be: a prediction made on features of data time t is compared with the mid
of the feature vector at t + horizon (feature vectors are cut on a fixed 500 ms grid, so
the target time is on the grid). The persistence forecast (price unchanged) is scored beside
the model on the same targets.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from btcpred.udfs.features import HORIZON_US


@dataclass(frozen=True, slots=True)
class ScoredPrediction:
    feature_time_ms: int
    current_price: float
    predicted_price: float
    realized_price: float
    low: float | None = None  # the prediction interval, where one was stated
    high: float | None = None
    scale: float | None = None  # the interval's volatility scale when it was stated (log return)

    @property
    def error(self) -> float:
        return self.predicted_price - self.realized_price

    @property
    def persistence_error(self) -> float:
        return self.current_price - self.realized_price


@dataclass(frozen=True, slots=True)
class Accuracy:
    scored: int
    mae: float | None
    rmse: float | None
    directional_accuracy: float | None  # share of right signs where the price moved and the model took a side
    persistence_mae: float | None
    persistence_rmse: float | None
    bias: float | None = None  # mean signed error (predicted - realized): a calibrated model has ~0
    interval_coverage: float | None = None  # share of stated intervals that held the realized price
    interval_n: int = 0
    # least-squares slope of the realized move on the predicted move: 1 calibrated, < 1 over-confident
    calibration_slope: float | None = None


class OnlineScorer:
    def __init__(
        self,
        horizon_ms: int = HORIZON_US // 1000,
        window: int = 1000,
        mid_memory: int = 2000,
        on_scored: Callable[[ScoredPrediction], None] | None = None,
    ) -> None:
        self.horizon_ms = horizon_ms
        self.on_scored = on_scored  # told of every row once its outcome is known (the rolling recalibration)
        # target ms -> (current, predicted, interval low, interval high, volatility scale)
        self.pending: OrderedDict[int, tuple[float, float, float | None, float | None, float | None]] = OrderedDict()
        self.mids: OrderedDict[int, float] = OrderedDict()  # data time ms -> mid
        self.mid_memory = mid_memory
        self.scored: deque[ScoredPrediction] = deque(maxlen=window)

    def record_prediction(
        self,
        feature_time_ms: int,
        current_price: float,
        predicted_price: float,
        low: float | None = None,
        high: float | None = None,
        scale: float | None = None,
    ) -> None:
        """Remember a prediction; the first one made on a feature vector wins (later cycles repeat it)."""
        target = feature_time_ms + self.horizon_ms
        if target not in self.pending and all(s.feature_time_ms != feature_time_ms for s in list(self.scored)[-5:]):
            self.pending[target] = (current_price, predicted_price, low, high, scale)
        self._settle()

    def record_mid(self, time_ms: int, mid: float) -> None:
        self.mids[time_ms] = mid
        while len(self.mids) > self.mid_memory:
            self.mids.popitem(last=False)
        self._settle()

    def _settle(self) -> None:
        latest = next(reversed(self.mids), None)
        for target in list(self.pending):
            if target in self.mids:
                current, predicted, low, high, scale = self.pending.pop(target)
                row = ScoredPrediction(target - self.horizon_ms, current, predicted, self.mids[target], low, high, scale)
                self.scored.append(row)
                if self.on_scored is not None:
                    self.on_scored(row)
            elif latest is not None and target < latest - self.horizon_ms:
                del self.pending[target]  # its target mid will never come (gap in the feature history)

    def rows(self) -> list[ScoredPrediction]:
        return list(self.scored)

    def accuracy(self) -> Accuracy:
        rows = list(self.scored)
        if not rows:
            return Accuracy(0, None, None, None, None, None)
        n = len(rows)
        stated = [r for r in rows if r.low is not None and r.high is not None]
        # as in the batch reports: rows where the price moved and the prediction took a side (persistence never does)
        moves = [r for r in rows if r.realized_price != r.current_price and r.predicted_price != r.current_price]
        right = sum(
            1
            for r in moves
            if math.copysign(1, r.predicted_price - r.current_price) == math.copysign(1, r.realized_price - r.current_price)
        )
        return Accuracy(
            scored=n,
            mae=sum(abs(r.error) for r in rows) / n,
            rmse=math.sqrt(sum(r.error**2 for r in rows) / n),
            directional_accuracy=right / len(moves) if moves else None,
            persistence_mae=sum(abs(r.persistence_error) for r in rows) / n,
            persistence_rmse=math.sqrt(sum(r.persistence_error**2 for r in rows) / n),
            bias=sum(r.error for r in rows) / n,
            calibration_slope=calibration_slope(rows),
            interval_coverage=(sum(1 for r in stated if r.low <= r.realized_price <= r.high) / len(stated)) if stated else None,
            interval_n=len(stated),
        )


def calibration_slope(rows: list[ScoredPrediction]) -> float | None:
    """Slope of realized on predicted move; None while the model predicts (almost) no move at all."""
    predicted = [r.predicted_price - r.current_price for r in rows]
    realized = [r.realized_price - r.current_price for r in rows]
    mean_p, mean_r = sum(predicted) / len(rows), sum(realized) / len(rows)
    var_p = sum((p - mean_p) ** 2 for p in predicted)
    if var_p < 1e-12:
        return None
    return sum((p - mean_p) * (r - mean_r) for p, r in zip(predicted, realized)) / var_p


def log_errors(rows: list[ScoredPrediction]) -> tuple[list[int], list[float], list[float]]:
    """Feature times, and the log-return errors of the prediction and of persistence, per scored row."""
    times, model, base = [], [], []
    for r in rows:
        if r.current_price > 0 and r.predicted_price > 0 and r.realized_price > 0:
            realized = math.log(r.realized_price / r.current_price)
            times.append(r.feature_time_ms)
            model.append(math.log(r.predicted_price / r.current_price) - realized)
            base.append(-realized)
    return times, model, base
