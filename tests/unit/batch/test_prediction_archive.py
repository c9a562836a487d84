"""Published predictions as archive rows, checked like any input, and scored against the realised price by hand."""

import json
import math

import pytest

from btcpred.batch.draw_predictions import score
from btcpred.batch.prediction_archive import rows_of
from btcpred.inference.prediction import ChallengerPrediction, Prediction


def stream_fields(p: Prediction) -> dict[str, str]:
    """As the service appends it to pred:{symbol} (btcpred/inference/service.py)."""
    return {k: ("" if v is None else json.dumps(v) if isinstance(v, list) else str(v)) for k, v in p.model_dump().items()}


def prediction(boundary: int, feature_ms: int, base: float, predicted: float, challenger: float | None = None) -> Prediction:
    return Prediction(
        symbol="BTCUSDT",
        timestamp=boundary,
        current_price=base,
        predicted_price_10s=predicted,
        confidence=0.5,
        latency_ms=1.0,
        model_version="persistence",
        features_age_ms=10.0,
        source="redis",
        feature_time_ms=feature_ms,
        base_price=base,
        target_time_ms=feature_ms + 10_000,
        market="binance.com-spot",
        price_low_10s=predicted - 1,
        price_high_10s=predicted + 1,
        challengers=[
            ChallengerPrediction(
                model_version="ridge-x", predicted_price_10s=challenger, confidence=0.6, why_not_served="unproven_on_market:x"
            )
        ],
    )


def test_an_entry_becomes_the_champions_row_and_one_per_challenger():
    champion, shadow = rows_of("BTCUSDT", stream_fields(prediction(2000, 1000, 100.0, 100.0, 101.0)))
    expected = {
        "model_version": "persistence",
        "role": "champion",
        "source": "redis",
        "boundary_ms": 2000,
        "feature_time_ms": 1000,
        "target_time_ms": 11_000,
        "base_price": 100.0,
        "predicted_price": 100.0,
        "price_low": 99.0,
        "price_high": 101.0,
        "confidence": 0.5,
        "market": "binance.com-spot",
        "fallback_reason": None,
    }
    assert {k: champion[k] for k in expected} == expected
    assert (shadow["model_version"], shadow["role"], shadow["predicted_price"], shadow["base_price"]) == (
        "ridge-x",
        "challenger",
        101.0,
        100.0,
    )


@pytest.mark.parametrize(
    "broken",
    [
        {"timestamp": "soon"},
        {"source": "guess"},
        {"base_price": "nan"},
        {"predicted_price_10s": "inf"},
        {"challengers": "[{"},
        {"challengers": '[{"predicted_price_10s": 1.0}]'},
        {"challengers": '[{"model_version": "x", "predicted_price_10s": "1e999"}]'},
        # what PostgreSQL would refuse, failing the batch: refused here, the entry skipped and counted
        {"timestamp": str(2**63)},
        {"feature_time_ms": str(2**70)},
        {"challengers": '[{"model_version": "x", "predicted_price_10s": 1.0, "confidence": "high"}]'},
        {"challengers": '[{"model_version": {"a": 1}, "predicted_price_10s": 1.0}]'},
        {"challengers": '[{"model_version": "x", "predicted_price_10s": 1.0, "why_not_served": [1]}]'},
    ],
)
def test_an_entry_that_is_no_prediction_is_refused(broken):
    fields = stream_fields(prediction(2000, 1000, 100.0, 100.0, 101.0)) | broken
    with pytest.raises(ValueError):
        rows_of("BTCUSDT", fields)
    with pytest.raises(ValueError):
        rows_of("BTCUSDT", {k: v for k, v in stream_fields(prediction(2000, 1000, 100.0, 100.0)).items() if k != "source"})


def test_score_against_the_realised_price_at_the_target_time():
    """Prices at data times 0, 10 s, 20 s: 100, 102, 101. The champion predicted 101 at 0 and 102 at 10 s."""
    rows = []
    for boundary, feature, base, predicted in (
        (1000, 0, 100.0, 101.0),
        (11_000, 10_000, 102.0, 102.0),
        (21_000, 20_000, 101.0, 101.0),
    ):
        rows += rows_of("BTCUSDT", stream_fields(prediction(boundary, feature, base, predicted, base)))
    s = score(rows)
    assert s["n"] == 2  # the row at 20 s has no realised price 10 s on
    y = [math.log(102 / 100), math.log(101 / 102)]
    p = [math.log(101 / 100), 0.0]
    expected_ratio = math.sqrt(sum((a - b) ** 2 for a, b in zip(y, p)) / 2) / math.sqrt(sum(a * a for a in y) / 2)
    assert s["rmse_ratio_vs_persistence"] == pytest.approx(expected_ratio, rel=1e-5)
    r2 = 1 - sum((a - b) ** 2 for a, b in zip(y, p)) / sum(a * a for a in y)
    assert s["r2_os"] == pytest.approx(r2, rel=1e-5)
    shadow = score(rows, [r for r in rows if r["role"] == "challenger"])  # predicted no change: persistence itself
    assert shadow["n"] == 2 and shadow["r2_os"] == 0.0
