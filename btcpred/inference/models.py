"""Predictors. Persistence is the baseline every model is reported against."""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from btcpred.common.model_artifact import InputGuard, OnnxModel
from btcpred.common.recalibration import Recalibration
from btcpred.inference.hot_state import HotState

Interval = tuple[float, float, float, float]  # (low, high, nominal coverage, volatility scale in log return)


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

    def proven_on(self, market: str) -> bool:
        """Whether it has gate evidence on ``market`` (else persistence serves and it runs in shadow)."""

    def interval(
        self,
        state: HotState,
        base_price: float,
        predicted_price: float,
        persistence: bool,
        recalibration: Recalibration | None = None,
    ) -> Interval | None:
        """The price in 10 s around ``predicted_price``; None: none stated. ``persistence``: the interval
        of persistence serving in the predictor's place; ``recalibration``: this market's realized rows,
        whose quantile replaces the artifact's once there are enough of them."""


class PersistencePredictor:
    """Predict the price unchanged; direction is a coin flip, so confidence is 0.5."""

    version = "persistence"

    def predict(self, state: HotState, current_price: float) -> tuple[float, float]:
        return current_price, 0.5

    def proven_on(self, market: str) -> bool:
        return True  # the baseline every model is judged against needs no evidence

    def interval(
        self,
        state: HotState,
        base_price: float,
        predicted_price: float,
        persistence: bool,
        recalibration: Recalibration | None = None,
    ) -> Interval | None:
        return None  # no artifact, no held-out errors to size one from


class OnnxPredictor:
    """A registered model: features from ``feat:`` in the model's own order, one ONNX Runtime call.

    The model outputs the 10 s log return; the predicted price applies it to the
    mid it was predicted from (the features' mid). Confidence is the model's calibrated P(direction right | price moves).
    """

    def __init__(self, model: OnnxModel, max_abs_z: float = 10.0) -> None:
        self.model = model
        self.version = model.version
        self.feature_names = tuple(model.meta.feature_names)
        self._row = np.zeros((1, len(self.feature_names)), dtype=np.float64)
        self.guard = InputGuard(model.meta, max_abs_z)  # the artifact's trusted inputs (batch.report scores by it too)

    def predicted_return(self, features: dict[str, str]) -> float:
        row = self._row
        for i, name in enumerate(self.feature_names):
            raw = features.get(name)
            if raw is None:
                raise FeatureUnavailable(name)
            row[0, i] = float(raw)
        why = self.guard.why(row[0])
        if why is not None:
            raise FeatureOutOfRange(why)
        return float(self.model.predict(row)[0])

    def predict(self, state: HotState, current_price: float) -> tuple[float, float]:
        r = self.predicted_return(state.features)
        return current_price * math.exp(r), self.model.meta.calibration.confidence(r)

    def proven_on(self, market: str) -> bool:
        return self.model.meta.proven_on(market)

    def interval(
        self,
        state: HotState,
        base_price: float,
        predicted_price: float,
        persistence: bool,
        recalibration: Recalibration | None = None,
    ) -> Interval | None:
        """The artifact's conformal interval, scaled by this vector's realized volatility."""
        spec = self.model.meta.interval
        vol = state.feature_float(spec.scale_feature) if spec is not None else None
        if spec is None or vol is None or not math.isfinite(vol) or base_price <= 0 or predicted_price <= 0:
            return None
        center = math.log(predicted_price / base_price)
        scale = spec.scale(vol)
        quantile = spec.persistence_quantile if persistence else spec.model_quantile
        if recalibration is not None:
            quantile = recalibration.quantile(quantile)
        half = quantile * scale
        return base_price * math.exp(center - half), base_price * math.exp(center + half), spec.coverage, scale
