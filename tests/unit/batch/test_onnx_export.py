"""The exported graph reproduces the in-memory model on real feature rows."""

import numpy as np
import pytest

from btcpred.batch.feature_builder import build_rows, replay
from btcpred.batch.modeling import BOOK_FEATURES, OFI_FEATURES, export_onnx, fit_calibration, fit_mlp, fit_ridge, predict_return
from btcpred.batch.recordings import depth20_events
from btcpred.common.model_artifact import ArtifactError, ModelMetadata, OnnxModel, sha256_hex, verify
from tests.conftest import BINANCE_US_BOOK


@pytest.fixture(scope="module")
def real_rows():
    events = (e for e, _ in zip(depth20_events(BINANCE_US_BOOK, "BTCUSDT"), range(3000)))
    rows = [r for r in build_rows(replay(events, "BTCUSDT")) if r.trainable]
    X = np.array([[r.features[n] for n in BOOK_FEATURES] for r in rows])
    y = np.array([r.label_return for r in rows])
    return X, y


def metadata(onnx_bytes: bytes, features, kind="mlp") -> ModelMetadata:
    return ModelMetadata(
        model_version=f"{kind}-test",
        model_kind=kind,
        feature_names=list(features),
        sha256=sha256_hex(onnx_bytes),
        calibration={"abs_return": [0.0, 1e-4], "hit_rate": [0.5, 0.7]},
        scaler_mean=[],
        scaler_scale=[],
        venue="binance.us",
        data_ranges={},
        hyperparameters={},
        validation_metrics={},
        created_at="2026-11-24T00:00:00+00:00",
    )


@pytest.mark.parametrize("kind", ["mlp", "ridge_ofi"])
@pytest.mark.shared_data
def test_onnx_output_equals_in_memory_model(real_rows, kind):
    X, y = real_rows
    if kind == "mlp":
        features, model = BOOK_FEATURES, fit_mlp(X, y, (8,), 1.0)
    else:
        features = OFI_FEATURES
        X = X[:, [BOOK_FEATURES.index(n) for n in OFI_FEATURES]]
        model = fit_ridge(X, y, 1.0)
    onnx_bytes = export_onnx(model, len(features))
    served = OnnxModel(onnx_bytes, metadata(onnx_bytes, features, kind)).predict(X)
    expected = predict_return(model, X)
    assert np.abs(expected).max() > 1e-7  # a model predicting nothing would match trivially
    np.testing.assert_allclose(served, expected, rtol=1e-9, atol=1e-15)


@pytest.mark.shared_data
def test_tampered_artifact_is_refused(real_rows):
    X, y = real_rows
    onnx_bytes = export_onnx(fit_ridge(X, y, 1.0), X.shape[1])
    meta = metadata(onnx_bytes, BOOK_FEATURES)
    verify(onnx_bytes, meta.model_dump_json())
    with pytest.raises(ArtifactError, match="checksum"):
        verify(onnx_bytes[:-1] + bytes([onnx_bytes[-1] ^ 1]), meta.model_dump_json())
    with pytest.raises(ArtifactError, match="does not match"):
        OnnxModel(onnx_bytes, meta.model_copy(update={"feature_names": ["ret_1s"]}))


def test_confidence_follows_the_calibration_curve():
    pred = np.array([1e-4, -2e-4, 3e-4, -4e-4] * 10)
    y = np.array([1e-4, 2e-4, 3e-4, -4e-4] * 10)  # the smallest |pred| is right, the next wrong, the two largest right
    cal = fit_calibration(pred, y)
    assert cal.hit_rate == sorted(cal.hit_rate)  # monotone in |pred|
    assert cal.confidence(5e-4) == 1.0
    assert 0.0 <= cal.confidence(1.5e-4) <= 1.0
