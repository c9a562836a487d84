"""Predictors. Persistence is the baseline every model is reported against."""
from __future__ import annotations

from typing import Protocol

from inference.hot_state import HotState


class Predictor(Protocol):
    version: str

    def predict(self, state: HotState, current_price: float) -> tuple[float, float]:
        """Return (predicted price in 10 s, confidence)."""


class PersistencePredictor:
    """Predict the price unchanged; direction is a coin flip, so confidence is 0.5."""

    version = "persistence"

    def predict(self, state: HotState, current_price: float) -> tuple[float, float]:
        return current_price, 0.5
