"""Predictors. Persistence is the baseline every model is reported against."""
from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from common.model_artifact import OnnxModel
from inference.hot_state import HotState


class FeatureUnavailable(LookupError):
    """The feature hash lacks a feature the model needs (this cycle falls back)."""


class FeatureOutOfRange(ValueError):
    """A feature lies far outside what the model saw in training (this cycle falls back).

    A network extrapolates wildly out there; persistence is the safer answer.
    """


class Predictor(Protocol):
    version: str

    def predict(self, state: HotState, current_price: float) -> tuple[float, float]:
        """Return (predicted price in 10 s, confidence)."""


class PersistencePredictor:
    """Predict the price unchanged; direction is a coin flip, so confidence is 0.5."""

    version = "persistence"

    def predict(self, state: HotState, current_price: float) -> tuple[float, float]:
        return current_price, 0.5


class OnnxPredictor:
    """A registered model: features from ``feat:`` in the model's own order, one ONNX Runtime call.

    The model outputs the 10 s log return; the predicted price applies it to the
    current mid. Confidence is the model's calibrated P(direction right | price moves).
    """

    def __init__(self, model: OnnxModel, max_abs_z: float = 10.0) -> None:
        self.model = model
        self.version = model.version
        self.feature_names = tuple(model.meta.feature_names)
        self._row = np.zeros((1, len(self.feature_names)), dtype=np.float64)
        meta = model.meta
        n = len(self.feature_names)
        guarded = len(meta.guard_low) == n == len(meta.guard_high)
        self._low = np.array(meta.guard_low) if guarded else None  # the artifact's trusted input range
        self._high = np.array(meta.guard_high) if guarded else None
        known = not guarded and len(meta.scaler_mean) == n == len(meta.scaler_scale)  # older artifacts
        self._mean = np.array(meta.scaler_mean) if known else None
        self._scale = np.where(np.array(meta.scaler_scale) > 0, np.array(meta.scaler_scale), 1.0) if known else None
        self.max_abs_z = max_abs_z

    def predicted_return(self, features: dict[str, str]) -> float:
        row = self._row
        for i, name in enumerate(self.feature_names):
            raw = features.get(name)
            if raw is None:
                raise FeatureUnavailable(name)
            row[0, i] = float(raw)
        if not np.isfinite(row[0]).all():  # a NaN passes every range comparison
            i = int(np.flatnonzero(~np.isfinite(row[0]))[0])
            raise FeatureOutOfRange(f"{self.feature_names[i]} is {row[0, i]}")
        if self._low is not None:
            outside = np.flatnonzero((row[0] < self._low) | (row[0] > self._high))
            if outside.size:
                i = int(outside[0])
                raise FeatureOutOfRange(f"{self.feature_names[i]} ({row[0, i]:.4g} outside the trusted range "
                                        f"[{self._low[i]:.4g}, {self._high[i]:.4g}] of the training data)")
        elif self._mean is not None:
            z = np.abs((row[0] - self._mean) / self._scale)
            worst = int(np.argmax(z))
            if z[worst] > self.max_abs_z:
                raise FeatureOutOfRange(f"{self.feature_names[worst]} ({z[worst]:.0f} sd from training)")
        return float(self.model.predict(row)[0])

    def predict(self, state: HotState, current_price: float) -> tuple[float, float]:
        r = self.predicted_return(state.features)
        return current_price * math.exp(r), self.model.meta.calibration.confidence(r)
