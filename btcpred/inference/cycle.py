"""Turn one Redis read into one Prediction; degraded inputs give a fallback, never an error."""
from __future__ import annotations

from btcpred.inference.hot_state import HotState
from btcpred.inference.models import FeatureOutOfRange, FeatureUnavailable, Predictor
from btcpred.inference.prediction import Prediction


def fallback_reason(state: HotState, features_age_ms: float | None, max_age_ms: int,
                    market_age_ms: float | None = None) -> str | None:
    """Why this cycle cannot use the model. ``stale_features``: the job wrote nothing recently;
    ``stale_market_data``: it did, but about a market long gone (a catch-up after an outage)."""
    if not state.features:
        return "no_features"
    if features_age_ms is None or features_age_ms > max_age_ms:
        return "stale_features"
    if market_age_ms is not None and market_age_ms > max_age_ms:
        return "stale_market_data"
    if state.feature_float("book_valid") == 0.0:
        return "book_invalid"
    return None


def make_prediction(
    symbol: str,
    state: HotState,
    boundary_ms: int,
    now_us: int,
    predictor: Predictor | None,
    max_feature_age_ms: int,
    last_price: float | None,
) -> Prediction:
    """``predictor`` None means no usable model is loaded: a fallback, like stale features."""
    emitted = state.feature_float("emitted_at_us")
    features_age_ms = (now_us - emitted) / 1000.0 if emitted is not None else None
    market_wall = state.feature_float("market_wall_us")
    market_age_ms = (now_us - market_wall) / 1000.0 if market_wall is not None else None
    price = state.mid() or last_price
    reason = fallback_reason(state, features_age_ms, max_feature_age_ms, market_age_ms)
    if price is None:
        reason = reason or "no_price"
    if reason is None and predictor is None:
        reason = "no_model"
    predicted = confidence = None
    if reason is None:
        try:
            predicted, confidence = predictor.predict(state, price)
        except FeatureUnavailable as exc:
            reason = f"feature_missing:{exc.args[0]}"
        except FeatureOutOfRange as exc:
            reason = f"feature_out_of_range:{exc.args[0].split(' ')[0]}"
    if reason is None:
        source, version = "redis", predictor.version
    else:
        predicted, confidence = price, 0.0
        source = "fallback"
        version = f"fallback-persistence({predictor.version if predictor else 'no model'})"
    feature_ts = state.features.get("ts")
    book_id = state.features.get("book_update_id")
    return Prediction(
        symbol=symbol,
        timestamp=boundary_ms,
        current_price=price,
        predicted_price_10s=predicted,
        confidence=confidence,
        latency_ms=0.0,
        model_version=version,
        features_age_ms=features_age_ms,
        market_age_ms=market_age_ms,
        source=source,
        feature_time_ms=int(feature_ts) // 1000 if feature_ts else None,
        book_update_id=int(book_id) if book_id else None,
        fallback_reason=reason,
    )
