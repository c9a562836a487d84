"""Champion/challenger gate: what a training run may promote.

The run picks one candidate by validation loss (persistence, which predicts no
change, is a candidate like the fitted models). That pick becomes production only
if, on the newest window no candidate was fitted or chosen on, it beats both the
current production model and persistence with a Diebold-Mariano test (squared
price error, overlapping-label variance) at ``alpha``. So a model kind never wins
by being the newer or the bigger one, and a model that loses to "price unchanged"
is never served. Persistence itself is promoted when it beats a production model
that has gone bad, or when there is no production model at all.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from btcpred.batch.metrics import diebold_mariano

ALPHA = 0.05
PERSISTENCE = "persistence"


@dataclass(frozen=True, slots=True)
class Comparison:
    """The challenger against one rival on the unseen window (negative DM statistic: challenger better)."""

    rival: str
    rmse_ratio: float  # challenger RMSE / rival RMSE, in price terms
    dm_stat: float
    dm_pvalue: float
    alpha: float = ALPHA

    @property
    def beats(self) -> bool:
        return not math.isnan(self.dm_pvalue) and self.dm_stat < 0 and self.dm_pvalue < self.alpha

    def as_dict(self) -> dict:
        clean = lambda x: None if math.isnan(x) else round(x, 6)  # noqa: E731 (JSON has no NaN)
        return {"rival": self.rival, "rmse_ratio": clean(self.rmse_ratio), "dm_stat": clean(self.dm_stat),
                "dm_pvalue": clean(self.dm_pvalue), "beats": self.beats}


@dataclass(frozen=True, slots=True)
class GateDecision:
    challenger: str
    promote: bool
    reason: str
    comparisons: tuple[Comparison, ...]
    n: int  # rows of the unseen window

    def as_metrics(self) -> dict:
        return {"challenger": self.challenger, "promote": self.promote, "reason": self.reason, "n": self.n,
                "alpha": ALPHA, "comparisons": [c.as_dict() for c in self.comparisons]}


def price_errors(y: np.ndarray, pred: np.ndarray, mid: np.ndarray) -> np.ndarray:
    """Predicted minus realized price, 10 s ahead (the loss the service is judged on)."""
    return mid * np.exp(pred) - mid * np.exp(y)


def compare(rival: str, y: np.ndarray, mid: np.ndarray, challenger_pred: np.ndarray, rival_pred: np.ndarray,
            alpha: float = ALPHA) -> Comparison:
    e_new, e_old = price_errors(y, challenger_pred, mid), price_errors(y, rival_pred, mid)
    rmse_old = float(np.sqrt(np.mean(e_old**2)))
    ratio = float(np.sqrt(np.mean(e_new**2))) / rmse_old if rmse_old > 0 else float("nan")
    stat, p = diebold_mariano(e_new, e_old)
    return Comparison(rival, ratio, stat, p, alpha)


def decide(challenger: str, challenger_pred: np.ndarray, y: np.ndarray, mid: np.ndarray,
           champion: tuple[str, np.ndarray] | None, challenger_is_persistence: bool = False,
           alpha: float = ALPHA) -> GateDecision:
    """Whether ``challenger`` replaces ``champion`` (version, predictions on the same rows; None: no production model).

    Every rival must be beaten: persistence (unless the challenger is persistence) and the champion
    (unless it is the challenger itself). Persistence with no champion is promoted: it is the
    baseline every model has to beat, and a legitimate production model.
    """
    comparisons: list[Comparison] = []
    if not challenger_is_persistence:
        comparisons.append(compare(PERSISTENCE, y, mid, challenger_pred, np.zeros_like(y), alpha))
    if champion is not None and champion[0] != challenger:
        comparisons.append(compare(champion[0], y, mid, challenger_pred, champion[1], alpha))
    if champion is not None and champion[0] == challenger:
        return GateDecision(challenger, False, "the challenger is already production", tuple(comparisons), len(y))
    lost = [c.rival for c in comparisons if not c.beats]
    if lost:
        reason = f"does not beat {', '.join(lost)} (DM p < {alpha}, unseen window of {len(y)} rows)"
        return GateDecision(challenger, False, reason, tuple(comparisons), len(y))
    if not comparisons:
        return GateDecision(challenger, True, "no production model: persistence serves", (), len(y))
    rivals = ", ".join(c.rival for c in comparisons)
    return GateDecision(challenger, True, f"beats {rivals} (DM p < {alpha})", tuple(comparisons), len(y))
