"""The Prediction record served to users (seed schema plus replay provenance and the contest)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ChallengerPrediction(BaseModel):
    """A model run in shadow beside the champion: published and scored, never served."""

    model_version: str
    predicted_price_10s: float | None = Field(description="null when its inputs made it fall back this cycle")
    confidence: float | None = None
    why_not_served: str = Field(description="unproven_on_market:<market> (no gate evidence there), or its fallback")


class Prediction(BaseModel):
    symbol: str
    timestamp: int = Field(description="wall-clock time of the 2 s boundary this cycle belongs to, ms")
    current_price: float | None = Field(description="latest book mid; null only before any market data was ever seen")
    predicted_price_10s: float | None
    confidence: float = Field(
        ge=0.0, le=1.0, description="probability the predicted direction is right (persistence: 0.5; fallback: 0)"
    )
    latency_ms: float = Field(description="boundary to publish: Redis read + assembly + model")
    model_version: str
    features_age_ms: float | None = Field(description="wall-clock age of the feature vector when read")
    market_age_ms: float | None = Field(
        None,
        description="age of the market state the features describe: wall "
        "clock minus their exchange time corrected by the observed receipt lag",
    )
    source: Literal["redis", "fallback"]
    feature_time_ms: int | None = Field(description="exchange (data) time the features describe, for scoring replays")
    book_update_id: int | None = None
    fallback_reason: str | None = None
    base_price: float | None = Field(
        None,
        description="the price the prediction starts from: the features' mid at "
        "feature_time_ms (the predicted return applies to it; persistence predicts it)",
    )
    target_time_ms: int | None = Field(None, description="exchange time the predicted price is for: feature_time_ms + 10 s")
    market: str | None = Field(None, description="the market served (venue id); the champion has gate evidence on it")
    challengers: list[ChallengerPrediction] = Field(default_factory=list)
    price_low_10s: float | None = Field(
        None,
        description="conformal prediction interval for the price at target_time_ms "
        "(null: the served artifact states none, or a fallback)",
    )
    price_high_10s: float | None = None
    interval_coverage: float | None = Field(None, description="the interval's nominal coverage (0.8 by default)")
    volatility_scale: float | None = Field(
        None,
        description="the interval's unit in log return: the features' 5 s realized "
        "volatility plus the artifact's floor (scaled errors recalibrate the interval)",
    )
