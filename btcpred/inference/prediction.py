"""The Prediction record served to users (seed schema plus replay provenance)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Prediction(BaseModel):
    symbol: str
    timestamp: int = Field(description="wall-clock time of the 2 s boundary this cycle belongs to, ms")
    current_price: float | None = Field(description="mid price used; null only before any market data was ever seen")
    predicted_price_10s: float | None
    confidence: float = Field(ge=0.0, le=1.0, description="probability the predicted direction is right (persistence: 0.5; fallback: 0)")
    latency_ms: float = Field(description="boundary to publish: Redis read + assembly + model")
    model_version: str
    features_age_ms: float | None = Field(description="wall-clock age of the feature vector when read")
    market_age_ms: float | None = Field(None, description="age of the market state the features describe: wall "
                                        "clock minus their exchange time corrected by the observed receipt lag")
    source: Literal["redis", "fallback"]
    feature_time_ms: int | None = Field(description="exchange (data) time the features describe, for scoring replays")
    book_update_id: int | None = None
    fallback_reason: str | None = None
