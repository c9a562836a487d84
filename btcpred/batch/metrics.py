"""Out-of-sample accuracy statistics for 10 s return forecasts.

Labels overlap (a 10 s label every 2 s), so errors are autocorrelated up to
lag 4: the Diebold-Mariano variance uses a Newey-West window of that length and
the R² interval comes from a moving-block bootstrap, not from i.i.d. formulas.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from btcpred.udfs.features import HORIZON_US, PREDICTION_STEP_US

OVERLAP_LAGS = HORIZON_US // PREDICTION_STEP_US - 1  # consecutive errors share this many steps of their labels


def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    sst = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - pred) ** 2)) / sst if sst > 0 else float("nan")


def block_bootstrap_r2(y: np.ndarray, pred: np.ndarray, block: int = 50, reps: int = 1000,
                       seed: int = 7) -> tuple[float, float]:
    """95 % interval of R² from a moving-block bootstrap (blocks of ``block`` consecutive rows)."""
    n = len(y)
    if n < 2 * block:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    starts_max = n - block + 1
    n_blocks = math.ceil(n / block)
    values = np.empty(reps)
    offsets = np.arange(block)
    for i in range(reps):
        idx = (rng.integers(0, starts_max, n_blocks)[:, None] + offsets).ravel()[:n]
        values[i] = r2_score(y[idx], pred[idx])
    lo, hi = np.nanpercentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def direction_accuracy(y: np.ndarray, pred: np.ndarray) -> tuple[float, int]:
    """Share of right signs among rows where the price moved and the model took a side."""
    mask = (y != 0) & (pred != 0)
    n = int(mask.sum())
    return (float(np.mean(np.sign(y[mask]) == np.sign(pred[mask]))) if n else float("nan")), n


def diebold_mariano(e_model: np.ndarray, e_base: np.ndarray, lags: int = OVERLAP_LAGS) -> tuple[float, float]:
    """DM statistic and two-sided p-value for equal squared-error loss (negative statistic: model better).

    Newey-West long-run variance with ``lags`` lags and the Harvey-Leybourne-Newbold
    small-sample correction, compared with Student t(n - 1).
    """
    d = e_model**2 - e_base**2
    n = len(d)
    if n < lags + 3:
        return float("nan"), float("nan")
    dc = d - d.mean()
    gamma = [float(np.dot(dc[k:], dc[: n - k]) / n) for k in range(lags + 1)]
    long_run = gamma[0] + 2 * sum((1 - k / (lags + 1)) * gamma[k] for k in range(1, lags + 1))
    if long_run <= 0:
        return float("nan"), float("nan")
    dm = d.mean() / math.sqrt(long_run / n)
    h = lags + 1
    dm *= math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    return float(dm), float(2 * stats.t.sf(abs(dm), df=n - 1))


def calibration_table(confidence: np.ndarray, correct: np.ndarray, bins: int = 5) -> list[dict[str, float]]:
    """Mean stated confidence vs observed hit rate in equal-count bins of confidence."""
    if len(confidence) == 0:
        return []
    order = np.argsort(confidence, kind="stable")
    rows = []
    for chunk in np.array_split(order, min(bins, len(order))):
        rows.append({"n": int(len(chunk)), "mean_confidence": float(confidence[chunk].mean()),
                     "hit_rate": float(correct[chunk].mean())})
    return rows


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 5) -> float | None:
    """Row-weighted mean |stated confidence - observed hit rate| over the equal-count bins of
    ``calibration_table``: 0 for a calibrated confidence. Equal-count bins because a model's
    confidences crowd into a narrow band (0.5-0.7), where equal-width bins would leave most empty."""
    table = calibration_table(confidence, correct, bins)
    n = sum(r["n"] for r in table)
    return sum(r["n"] * abs(r["mean_confidence"] - r["hit_rate"]) for r in table) / n if n else None


@dataclass(frozen=True, slots=True)
class Evaluation:
    n: int
    r2: float
    r2_ci: tuple[float, float]
    rmse: float  # USD, predicted price vs the price 10 s later
    mae: float
    rmse_persistence: float
    mae_persistence: float
    direction_accuracy: float
    direction_n: int
    dm_stat: float
    dm_pvalue: float

    @property
    def rmse_ratio(self) -> float:
        return self.rmse / self.rmse_persistence if self.rmse_persistence > 0 else float("nan")

    @property
    def mae_ratio(self) -> float:
        return self.mae / self.mae_persistence if self.mae_persistence > 0 else float("nan")


def evaluate(y: np.ndarray, pred: np.ndarray, mid: np.ndarray, bootstrap: bool = True) -> Evaluation:
    """Scores of predicted log returns ``pred`` against realized ``y``; prices are ``mid * exp(return)``."""
    realized = mid * np.exp(y)
    err = mid * np.exp(pred) - realized
    err_base = mid - realized
    direction, direction_n = direction_accuracy(y, pred)
    dm, p = diebold_mariano(err, err_base)
    return Evaluation(
        n=len(y), r2=r2_score(y, pred), r2_ci=block_bootstrap_r2(y, pred) if bootstrap else (float("nan"),) * 2,
        rmse=float(np.sqrt(np.mean(err**2))), mae=float(np.mean(np.abs(err))),
        rmse_persistence=float(np.sqrt(np.mean(err_base**2))), mae_persistence=float(np.mean(np.abs(err_base))),
        direction_accuracy=direction, direction_n=direction_n, dm_stat=dm, dm_pvalue=p,
    )
