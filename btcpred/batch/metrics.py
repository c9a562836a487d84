"""Out-of-sample accuracy of 10 s return forecasts: errors in USD beside persistence, and skill.

Skill (R²_OS against persistence, the equal-loss test and its interval) comes from
``btcpred.common.forecast_skill``, the one module the gate, the reports, the backtest and
online scoring share; the rows' data times cut it into blocks that never span a market or a gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from btcpred.common.forecast_skill import skill_vs_persistence, time_blocks


def direction_accuracy(y: np.ndarray, pred: np.ndarray) -> tuple[float, int]:
    """Share of right signs among rows where the price moved and the model took a side."""
    mask = (y != 0) & (pred != 0)
    n = int(mask.sum())
    return (float(np.mean(np.sign(y[mask]) == np.sign(pred[mask]))) if n else float("nan")), n


def calibration_table(confidence: np.ndarray, correct: np.ndarray, bins: int = 5) -> list[dict[str, float]]:
    """Mean stated confidence vs observed hit rate in equal-count bins of confidence."""
    if len(confidence) == 0:
        return []
    order = np.argsort(confidence, kind="stable")
    rows = []
    for chunk in np.array_split(order, min(bins, len(order))):
        rows.append(
            {"n": int(len(chunk)), "mean_confidence": float(confidence[chunk].mean()), "hit_rate": float(correct[chunk].mean())}
        )
    return rows


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 5) -> float | None:
    """Row-weighted mean |stated confidence - observed hit rate| over the equal-count bins of
    ``calibration_table``: 0 for a calibrated confidence. Equal-count bins because a model's
    confidences crowd into a narrow band (0.5-0.7), where equal-width bins would leave most empty."""
    table = calibration_table(confidence, correct, bins)
    n = sum(r["n"] for r in table)
    return sum(r["n"] * abs(r["mean_confidence"] - r["hit_rate"]) for r in table) / n if n else None


def brier(confidence: np.ndarray, correct: np.ndarray) -> tuple[float, float]:
    """Brier score of the stated P(direction right) and its skill against the best constant in hindsight
    (the observed hit rate on these rows): above 0 only if the confidence tells rows apart."""
    if len(confidence) == 0:
        return float("nan"), float("nan")
    score = float(np.mean((confidence - correct) ** 2))
    rate = float(np.mean(correct))
    reference = rate * (1.0 - rate)
    return score, (1.0 - score / reference) if reference > 0 else float("nan")


@dataclass(frozen=True, slots=True)
class Evaluation:
    n: int
    r2: float  # R²_OS: 1 - SSE / sum(y²) on log returns, i.e. against persistence
    r2_ci: tuple[float, float]  # the values the test keeps, rescaled: excludes 0 iff dm_pvalue < 0.05
    rmse: float  # USD, predicted price vs the price 10 s later
    mae: float
    rmse_persistence: float
    mae_persistence: float
    direction_accuracy: float
    direction_n: int
    dm_stat: float  # mean loss differential (model - persistence) over its block-robust standard error
    dm_pvalue: float  # two-sided, wild block bootstrap
    cw_pvalue: float = float("nan")  # Clark-West, one-sided: the model carries information
    blocks: int = 0  # independent 5-minute blocks the test stands on

    @property
    def rmse_ratio(self) -> float:
        return self.rmse / self.rmse_persistence if self.rmse_persistence > 0 else float("nan")

    @property
    def mae_ratio(self) -> float:
        return self.mae / self.mae_persistence if self.mae_persistence > 0 else float("nan")


def evaluate(
    y: np.ndarray, pred: np.ndarray, mid: np.ndarray, ts_ms: np.ndarray, segment: np.ndarray | None = None
) -> Evaluation:
    """Scores of predicted log returns ``pred`` against realized ``y``; prices are ``mid * exp(return)``.

    ``ts_ms`` (data time) and ``segment`` (the market of each row) place the rows in time for the test.
    """
    realized = mid * np.exp(y)
    err = mid * np.exp(pred) - realized
    err_base = mid - realized
    direction, direction_n = direction_accuracy(y, pred)
    skill = skill_vs_persistence(y, pred, time_blocks(ts_ms, segment))
    return Evaluation(
        n=len(y),
        r2=skill.r2_os,
        r2_ci=skill.r2_os_ci,
        rmse=float(np.sqrt(np.mean(err**2))),
        mae=float(np.mean(np.abs(err))),
        rmse_persistence=float(np.sqrt(np.mean(err_base**2))),
        mae_persistence=float(np.mean(np.abs(err_base))),
        direction_accuracy=direction,
        direction_n=direction_n,
        dm_stat=skill.test.stat,
        dm_pvalue=skill.test.pvalue,
        cw_pvalue=skill.clark_west_pvalue,
        blocks=skill.test.blocks,
    )
