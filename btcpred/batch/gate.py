"""Champion/challenger gate: what a training run may promote.

The run picks one candidate by validation loss (persistence, which predicts no
change, is a candidate like the fitted models). That pick becomes production only
if, on the newest window no candidate was fitted or chosen on, it beats both the
current production model and persistence at ``alpha`` on the equal-loss test of
``btcpred.common.forecast_skill`` (squared log-return error, 5-minute blocks of data
time as the independent units, wild block bootstrap; its interval agrees with it).
So a model kind never wins by being the newer or the bigger one, and a model that
loses to "price unchanged" is never served. Persistence itself is promoted when it
beats a production model that has gone bad, or when there is no production model at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from btcpred.common.forecast_skill import json_figure, loss_test, time_blocks

ALPHA = 0.05
PERSISTENCE = "persistence"


@dataclass(frozen=True, slots=True)
class Comparison:
    """The challenger against one rival on the unseen window (negative statistic: challenger better)."""

    rival: str
    rmse_ratio: float  # challenger RMSE / rival RMSE, in price terms
    dm_stat: float  # mean squared-error differential over its block-robust standard error
    dm_pvalue: float
    alpha: float = ALPHA
    diff_ci: tuple[float, float] = (float("nan"), float("nan"))  # of the mean differential; excludes 0 iff p < alpha
    blocks: int = 0

    @property
    def beats(self) -> bool:
        return not math.isnan(self.dm_pvalue) and self.dm_stat < 0 and self.dm_pvalue < self.alpha

    def as_dict(self) -> dict:
        clean = json_figure
        return {
            "rival": self.rival,
            "rmse_ratio": clean(self.rmse_ratio),
            "dm_stat": clean(self.dm_stat),
            "dm_pvalue": clean(self.dm_pvalue),
            "beats": self.beats,
            "diff_ci": [clean(self.diff_ci[0]), clean(self.diff_ci[1])],
            "blocks": self.blocks,
        }


@dataclass(frozen=True, slots=True)
class GateDecision:
    challenger: str
    promote: bool
    reason: str
    comparisons: tuple[Comparison, ...]
    n: int  # rows of the unseen window

    def as_metrics(self) -> dict:
        return {
            "challenger": self.challenger,
            "promote": self.promote,
            "reason": self.reason,
            "n": self.n,
            "alpha": ALPHA,
            "comparisons": [c.as_dict() for c in self.comparisons],
        }


def price_errors(y: np.ndarray, pred: np.ndarray, mid: np.ndarray) -> np.ndarray:
    """Predicted minus realized price, 10 s ahead (the loss the service is judged on)."""
    return mid * np.exp(pred) - mid * np.exp(y)


def compare(
    rival: str,
    y: np.ndarray,
    mid: np.ndarray,
    challenger_pred: np.ndarray,
    rival_pred: np.ndarray,
    blocks: np.ndarray,
    alpha: float = ALPHA,
) -> Comparison:
    e_new, e_old = price_errors(y, challenger_pred, mid), price_errors(y, rival_pred, mid)
    rmse_old = float(np.sqrt(np.mean(e_old**2)))
    ratio = float(np.sqrt(np.mean(e_new**2))) / rmse_old if rmse_old > 0 else float("nan")
    test = loss_test(np.square(y - challenger_pred) - np.square(y - rival_pred), blocks, alpha)
    return Comparison(rival, ratio, test.stat, test.pvalue, alpha, test.ci, test.blocks)


def decide(
    challenger: str,
    challenger_pred: np.ndarray,
    y: np.ndarray,
    mid: np.ndarray,
    ts_ms: np.ndarray,
    champion: tuple[str, np.ndarray] | None,
    challenger_is_persistence: bool = False,
    alpha: float = ALPHA,
    segment: np.ndarray | None = None,
) -> GateDecision:
    """Whether ``challenger`` replaces ``champion`` (version, predictions on the same rows; None: no production model).

    ``ts_ms`` (data time) and ``segment`` (market per row) cut the rows into the test's blocks.

    Every rival must be beaten: persistence (unless the challenger is persistence) and the champion
    (unless it is the challenger itself). Persistence with no champion is promoted: it is the
    baseline every model has to beat, and a legitimate production model.
    """
    comparisons: list[Comparison] = []
    blocks = time_blocks(ts_ms, segment)
    if not challenger_is_persistence:
        comparisons.append(compare(PERSISTENCE, y, mid, challenger_pred, np.zeros_like(y), blocks, alpha))
    if champion is not None and champion[0] != challenger:
        comparisons.append(compare(champion[0], y, mid, challenger_pred, champion[1], blocks, alpha))
    if champion is not None and champion[0] == challenger:
        return GateDecision(challenger, False, "the challenger is already production", tuple(comparisons), len(y))
    lost = [c.rival for c in comparisons if not c.beats]
    if lost:
        reason = (
            f"does not beat {', '.join(lost)} (p < {alpha}, unseen window of {len(y)} rows in {len(set(blocks.tolist()))} blocks)"
        )
        return GateDecision(challenger, False, reason, tuple(comparisons), len(y))
    if not comparisons:
        return GateDecision(challenger, True, "no production model: persistence serves", (), len(y))
    rivals = ", ".join(c.rival for c in comparisons)
    return GateDecision(challenger, True, f"beats {rivals} (p < {alpha})", tuple(comparisons), len(y))
