"""Turn one Redis read into one Prediction; degraded inputs give a fallback, never an error."""

from __future__ import annotations

import math

from btcpred.common.recalibration import Recalibration
from btcpred.inference.hot_state import HotState
from btcpred.inference.models import FeatureOutOfRange, FeatureUnavailable, PersistencePredictor, Predictor
from btcpred.inference.prediction import ChallengerPrediction, Prediction
from btcpred.udfs.features import HORIZON_US

PERSISTENCE = PersistencePredictor()


def fallback_reason(
    state: HotState, features_age_ms: float | None, max_age_ms: int, market_age_ms: float | None = None
) -> str | None:
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


def _answer(predictor: Predictor, state: HotState, base: float) -> tuple[float | None, float | None, str | None]:
    """(predicted price, confidence, None) or (None, None, why it cannot answer this cycle)."""
    try:
        predicted, confidence = predictor.predict(state, base)
    except FeatureUnavailable as exc:
        return None, None, f"feature_missing:{exc.args[0]}"
    except FeatureOutOfRange as exc:
        return None, None, f"feature_out_of_range:{exc.args[0].split(' ')[0]}"
    return predicted, confidence, None


def _shadow_answer(shadow: Predictor, state: HotState, base: float, market: str | None) -> ChallengerPrediction:
    """A challenger's answer; whatever goes wrong in it stays in it (a broken shadow never costs the
    champion's prediction: the failure is its ``why_not_served``)."""
    try:
        answer, confidence, why_none = _answer(shadow, state, base)
    except Exception as exc:  # noqa: BLE001 - a shadow model's own failure, reported beside it
        answer, confidence, why_none = None, None, f"failed:{type(exc).__name__}"
    why = f"unproven_on_market:{market}" if market is not None and not shadow.proven_on(market) else "not promoted"
    return ChallengerPrediction(
        model_version=shadow.version,
        predicted_price_10s=answer,
        confidence=confidence,
        why_not_served=why + (f"; {why_none}" if why_none else ""),
    )


def make_prediction(
    symbol: str,
    state: HotState,
    boundary_ms: int,
    now_us: int,
    predictor: Predictor | None,
    max_feature_age_ms: int,
    last_price: float | None,
    market: str | None = None,
    shadows: tuple[Predictor, ...] = (),
    recalibration: Recalibration | None = None,
) -> Prediction:
    """``predictor`` None means no usable model is loaded: a fallback, like stale features.

    The champion is ``predictor`` where it is proven on ``market`` (``Predictor.proven_on``), else
    persistence, with ``predictor`` run beside it as a challenger in shadow; ``shadows`` (the
    registry's other candidates) run in shadow too. Both start from the
    features' mid at their exchange time (``base_price``), the price the return was predicted from.
    ``recalibration``: the served source's realized rows on this market; once it holds enough of them,
    the interval's quantile and a model's confidence come from them (``btcpred.common.recalibration``).
    """
    emitted = state.feature_float("emitted_at_us")
    features_age_ms = (now_us - emitted) / 1000.0 if emitted is not None else None
    market_wall = state.feature_float("market_wall_us")
    market_age_ms = (now_us - market_wall) / 1000.0 if market_wall is not None else None
    price = state.mid() or last_price
    base = state.feature_float("mid") or price
    reason = fallback_reason(state, features_age_ms, max_feature_age_ms, market_age_ms)
    if price is None:
        reason = reason or "no_price"
    if reason is None and predictor is None:
        reason = "no_model"
    unproven = predictor is not None and market is not None and not predictor.proven_on(market)
    champion = PERSISTENCE if unproven else predictor
    in_shadow = ([predictor] if unproven else []) + [s for s in shadows if s is not predictor]
    challengers = [_shadow_answer(s, state, base, market) for s in in_shadow] if reason is None else []
    predicted = confidence = None
    if reason is None:
        predicted, confidence, reason = _answer(champion, state, base)
    if reason is None:
        source, version = "redis", champion.version
    else:
        predicted, confidence = price, 0.0
        source = "fallback"
        version = f"fallback-persistence({predictor.version if predictor else 'no model'})"
    interval = None
    if source == "redis" and predictor is not None and predicted is not None:
        interval = predictor.interval(state, base, predicted, champion is PERSISTENCE, recalibration)
        if interval is not None and recalibration is not None and champion is not PERSISTENCE and base > 0:
            confidence = recalibration.confidence(math.log(predicted / base), interval[3], confidence)
    feature_ts = state.features.get("ts")
    feature_time_ms = int(feature_ts) // 1000 if feature_ts else None
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
        feature_time_ms=feature_time_ms,
        book_update_id=int(book_id) if book_id else None,
        fallback_reason=reason,
        base_price=base if source == "redis" else price,
        target_time_ms=feature_time_ms + HORIZON_US // 1000 if feature_time_ms is not None else None,
        market=market,
        challengers=challengers,
        price_low_10s=interval[0] if interval else None,
        price_high_10s=interval[1] if interval else None,
        interval_coverage=interval[2] if interval else None,
        volatility_scale=interval[3] if interval else None,
    )
