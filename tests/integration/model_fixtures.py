"""Real models for serving tests: fitted on the real Binance.US book, registered like training does."""
from __future__ import annotations

import time

import numpy as np

from batch import artifact_store, registry
from batch.feature_builder import FeatureRow, build_rows, replay
from batch.lake import Lake
from batch.modeling import BOOK_FEATURES, export_onnx, fit_calibration, fit_mlp, predict_return
from batch.recordings import depth20_events
from common.model_artifact import ModelMetadata, sha256_hex
from tests.conftest import BINANCE_US_BOOK


def real_rows(events: int = 3000) -> list[FeatureRow]:
    stream = (e for e, _ in zip(depth20_events(BINANCE_US_BOOK, "BTCUSDT"), range(events)))
    return [r for r in build_rows(replay(stream, "BTCUSDT")) if r.trainable]


def register_model(engine, lake: Lake, rows: list[FeatureRow], name: str, seed: int = 0,
                   feature_names: list[str] | None = None) -> str:
    """Fit, export, upload and register one MLP; ``feature_names`` can lie about its inputs (refusal tests)."""
    X = np.array([[r.features[n] for n in BOOK_FEATURES] for r in rows])
    y = np.array([r.label_return for r in rows])
    model = fit_mlp(X, y, (8,), 1.0, seed=seed)
    onnx_bytes = export_onnx(model, len(BOOK_FEATURES))
    meta = ModelMetadata(
        model_version=name, model_kind="mlp", feature_names=feature_names or list(BOOK_FEATURES),
        sha256=sha256_hex(onnx_bytes), calibration=fit_calibration(predict_return(model, X), y),
        scaler_mean=[], scaler_scale=[], venue="binance.us", data_ranges={}, hyperparameters={"seed": seed},
        validation_metrics={}, created_at="2026-11-24T00:00:00+00:00")
    uri = artifact_store.upload(lake, onnx_bytes, meta)
    registry.register(engine, meta, uri, None)
    return name


def write_features(client, row: FeatureRow, age_s: float = 0.1) -> None:
    """``feat:`` and ``ob:`` as the Flink job writes them, from one real feature row."""
    half_spread = row.features["spread_bp"] * row.mid / 2e4
    client.hset("ob:BTCUSDT", mapping={"best_bid": repr(row.mid - half_spread), "best_ask": repr(row.mid + half_spread),
                                       "last_update_id": str(row.book_update_id)})
    client.hset("feat:BTCUSDT", mapping={
        **{name: repr(value) for name, value in row.features.items()},
        "mid": repr(row.mid), "book_valid": "1.0", "ts": str(row.ts_ms * 1000),
        "book_update_id": str(row.book_update_id), "emitted_at_us": str(int((time.time() - age_s) * 1e6)),
    })
