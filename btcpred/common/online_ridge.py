"""A ridge that learns while it serves: recursive least squares with forgetting.

The hourly loop refits on the archive; between refits the market moves on. This model updates
its weights with every realized 10 s label on the market it runs on (``btcpred.inference``
feeds it the feature vector a prediction was made from once its outcome is known), forgetting
old rows geometrically (``forgetting`` per row: 0.999 weighs the last ~1,000 rows, about half
an hour of 2 s predictions). Inputs are standardized by exponentially weighted means and
variances with the same memory, so one prior (``ridge``) fits inputs of any scale. Its weights
are plain numbers (``to_json`` / ``from_json``): checkpointed and restored, never pickled.

Recursive least squares with forgetting (Haykin, *Adaptive Filter Theory*, ch. 10): with ``P``
the inverse of the discounted, regularized Gram matrix,
    k = P x / (lambda + x' P x);  w += k (y - w' x);  P = (P - k x' P) / lambda.
"""

from __future__ import annotations

import json
import math

import numpy as np

BP = 1e4  # fit in basis points of log return, as the batch models do


class OnlineRidge:
    def __init__(self, features: tuple[str, ...], forgetting: float = 0.999, ridge: float = 100.0, warm_rows: int = 200) -> None:
        if not 0.9 < forgetting <= 1.0:
            raise ValueError(f"forgetting {forgetting}: must be in (0.9, 1]")
        self.features = tuple(features)
        self.forgetting = forgetting
        self.ridge = ridge
        self.warm_rows = warm_rows  # predicts no move until it has learnt from this many rows
        k = len(self.features)
        self.w = np.zeros(k)
        self.P = np.eye(k) / ridge
        self.mean = np.zeros(k)
        self.var = np.ones(k)
        self.rows = 0

    def _standardize(self, x: np.ndarray) -> np.ndarray:
        scale = np.where(self.var > 1e-18, np.sqrt(np.maximum(self.var, 1e-18)), 1.0)  # a constant input reads 0
        return (x - self.mean) / scale

    def predict(self, x: np.ndarray) -> float:
        """The predicted 10 s log return for raw inputs ``x`` (in ``features`` order)."""
        if self.rows < self.warm_rows or not np.all(np.isfinite(x)):
            return 0.0
        predicted = float(self._standardize(x) @ self.w) / BP
        return predicted if math.isfinite(predicted) else 0.0

    def update(self, x: np.ndarray, realized: float) -> bool:
        """Learn from one realized row; False (nothing changes) for a row with a non-finite value, or one
        so far out that the new weights or statistics would not be finite numbers."""
        if not (np.all(np.isfinite(x)) and math.isfinite(realized)):
            return False
        lam = self.forgetting
        mean = x.astype(float).copy() if self.rows == 0 else self.mean
        scale = np.where(self.var > 1e-18, np.sqrt(np.maximum(self.var, 1e-18)), 1.0)
        z = (x - mean) / scale  # as the prediction from this row saw it: the statistics before it
        with np.errstate(over="ignore", invalid="ignore"):
            Pz = self.P @ z
            gain = Pz / (lam + z @ Pz)
            w = self.w + gain * (realized * BP - z @ self.w)
            P = (self.P - np.outer(gain, Pz)) / lam
            rows = self.rows + 1
            # exponentially weighted mean and variance, bias-corrected (weight 1/n without forgetting)
            alpha = 1.0 / rows if lam == 1.0 else (1 - lam) / (1 - lam**rows)
            delta = x - mean
            new_mean = mean + alpha * delta
            var = (1 - alpha) * (self.var + alpha * delta * delta)
        if not all(np.all(np.isfinite(a)) for a in (w, P, new_mean, var)):
            return False
        self.w, self.P, self.mean, self.var, self.rows = w, (P + P.T) / 2, new_mean, var, rows  # P kept symmetric
        return True

    def to_json(self) -> str:
        return json.dumps(
            {
                "features": list(self.features),
                "forgetting": self.forgetting,
                "ridge": self.ridge,
                "warm_rows": self.warm_rows,
                "rows": self.rows,
                "w": self.w.tolist(),
                "P": self.P.tolist(),
                "mean": self.mean.tolist(),
                "var": self.var.tolist(),
            }
        )

    @classmethod
    def from_json(cls, text: str, features: tuple[str, ...]) -> OnlineRidge:
        """A checkpoint for these ``features``; ``ValueError`` for one of other inputs or with a bad number."""
        d = json.loads(text)
        if tuple(d["features"]) != tuple(features):
            raise ValueError(f"checkpoint for {d['features']}, not {list(features)}")
        model = cls(tuple(features), float(d["forgetting"]), float(d["ridge"]), int(d["warm_rows"]))
        k = len(features)
        w, P = np.array(d["w"], float), np.array(d["P"], float)
        mean, var = np.array(d["mean"], float), np.array(d["var"], float)
        if w.shape != (k,) or P.shape != (k, k) or mean.shape != (k,) or var.shape != (k,):
            raise ValueError("checkpoint arrays of the wrong shape")
        if not all(np.all(np.isfinite(a)) for a in (w, P, mean, var)) or np.any(var < 0) or int(d["rows"]) < 0:
            raise ValueError("checkpoint with a non-finite or negative value")
        model.w, model.P, model.mean, model.var, model.rows = w, P, mean, var, int(d["rows"])
        return model
