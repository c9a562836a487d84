"""Model manager decisions with real artifacts on disk (FileSource) and a storage outage."""

import asyncio
import json

import numpy as np
import pytest

from btcpred.batch.modeling import export_onnx, fit_ridge
from btcpred.common.model_artifact import ModelMetadata, sha256_hex, write_local
from btcpred.inference.model_manager import FileSource, ModelManager
from btcpred.inference.models import FeatureOutOfRange

FEATURES = ["depth_imbalance_1", "microprice_minus_mid"]


def artifact(directory, version: str, coef_sign: float = 1.0) -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 2))
    y = coef_sign * X[:, 0] * 1e-4 + rng.normal(size=300) * 1e-5
    onnx_bytes = export_onnx(fit_ridge(X, y, 1.0), 2)
    meta = ModelMetadata(
        model_version=version,
        model_kind="ridge",
        feature_names=FEATURES,
        sha256=sha256_hex(onnx_bytes),
        calibration={"abs_return": [], "hit_rate": []},
        scaler_mean=[],
        scaler_scale=[],
        venue="test",
        data_ranges={},
        hyperparameters={},
        validation_metrics={},
        created_at="2026-11-24T00:00:00+00:00",
    )
    write_local(directory, onnx_bytes, meta)


class FlakySource(FileSource):
    """Storage that fails the first ``failures`` fetches, as S3 does during an outage."""

    def __init__(self, path, failures: int) -> None:
        super().__init__(str(path))
        self.failures = failures

    def fetch(self, artifact_uri, checksum):
        if self.failures:
            self.failures -= 1
            raise OSError("connection refused")
        return super().fetch(artifact_uri, checksum)


def test_new_checksum_in_the_directory_is_a_new_model(tmp_path):
    artifact(tmp_path, "v1")
    manager = ModelManager(FileSource(str(tmp_path)), warmup_runs=3)
    assert asyncio.run(manager.poll_once()) == "loaded" and manager.current.version == "v1"
    assert asyncio.run(manager.poll_once()) == "unchanged"
    artifact(tmp_path, "v2", coef_sign=-1.0)
    assert asyncio.run(manager.poll_once()) == "loaded" and manager.current.version == "v2"
    r = manager.current.predicted_return({"depth_imbalance_1": "2.0", "microprice_minus_mid": "0.0"})
    assert r < 0  # the swapped-in model is the one with the negative coefficient


def test_tampered_artifact_is_refused_and_the_running_model_kept(tmp_path):
    artifact(tmp_path, "v1")
    manager = ModelManager(FileSource(str(tmp_path)), warmup_runs=1)
    asyncio.run(manager.poll_once())
    meta = json.loads((tmp_path / "metadata.json").read_text())
    meta.update(model_version="v2", sha256="0" * 64)
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    assert asyncio.run(manager.poll_once()) == "refused"
    assert manager.current.version == "v1" and "checksum" in manager.refused["v2"]


def test_storage_outage_is_retried_not_refused(tmp_path):
    artifact(tmp_path, "v1")
    manager = ModelManager(FlakySource(tmp_path, failures=2), warmup_runs=1)
    assert asyncio.run(manager.poll_once()) == "fetch_error"
    assert asyncio.run(manager.poll_once()) == "fetch_error"
    assert manager.current is None and manager.refused == {} and manager.last_error.endswith("artifact not fetched (OSError)")
    assert "connection refused" not in manager.info()["last_error"]  # a driver's text stays in the log
    assert asyncio.run(manager.poll_once()) == "loaded" and manager.last_error is None


@pytest.mark.parametrize("missing", [{}, {"depth_imbalance_1": "1.0"}])
def test_a_cycle_missing_a_model_feature_raises_for_the_fallback(tmp_path, missing):
    from btcpred.inference.models import FeatureUnavailable

    artifact(tmp_path, "v1")
    manager = ModelManager(FileSource(str(tmp_path)), warmup_runs=1)
    asyncio.run(manager.poll_once())
    with pytest.raises(FeatureUnavailable):
        manager.current.predicted_return(missing)


def test_inputs_far_outside_training_fall_back_instead_of_extrapolating(tmp_path):
    from btcpred.common.model_artifact import read_local, write_local
    from btcpred.inference.cycle import make_prediction
    from btcpred.inference.hot_state import HotState

    artifact(tmp_path, "v1")
    onnx_bytes, meta = read_local(tmp_path)
    write_local(tmp_path, onnx_bytes, meta.model_copy(update={"scaler_mean": [0.0, 0.0], "scaler_scale": [1.0, 0.5]}))
    manager = ModelManager(FileSource(str(tmp_path)), warmup_runs=1, max_feature_z=10.0)
    asyncio.run(manager.poll_once())
    predictor = manager.current
    assert predictor.predicted_return({"depth_imbalance_1": "9.0", "microprice_minus_mid": "-4.9"}) != 0.0  # 9 and 9.8 sd
    state = HotState(
        {
            "depth_imbalance_1": "0.1",
            "microprice_minus_mid": "5.5",
            "mid": "100.0",
            "book_valid": "1.0",
            "emitted_at_us": "1000000",
        },
        {},
        {},
        False,
    )  # 11 sd on the second input
    pred = make_prediction("BTCUSDT", state, 2000, 1_100_000, predictor, 5000, None)
    assert pred.source == "fallback" and pred.fallback_reason == "feature_out_of_range:microprice_minus_mid"
    assert pred.predicted_price_10s == pred.current_price == 100.0


def test_the_artifacts_trusted_range_decides_before_the_scaler(tmp_path):
    """An artifact with guard bounds falls back outside them and only there, whatever its scaler says."""
    from btcpred.common.model_artifact import read_local, write_local

    artifact(tmp_path, "v1")
    onnx_bytes, meta = read_local(tmp_path)
    write_local(
        tmp_path,
        onnx_bytes,
        meta.model_copy(
            update={
                "scaler_mean": [0.0, 0.0],
                "scaler_scale": [1e-9, 1e-9],  # a z-score guard would refuse everything
                "guard_low": [-1.0, -2.0],
                "guard_high": [1.0, 2.0],
            }
        ),
    )
    manager = ModelManager(FileSource(str(tmp_path)), warmup_runs=1, max_feature_z=10.0)
    asyncio.run(manager.poll_once())
    predictor = manager.current
    assert predictor.predicted_return({"depth_imbalance_1": "1.0", "microprice_minus_mid": "-2.0"}) != 0.0  # bounds are in
    with pytest.raises(FeatureOutOfRange, match=r"^microprice_minus_mid \(2\.01 outside"):
        predictor.predicted_return({"depth_imbalance_1": "0.0", "microprice_minus_mid": "2.01"})


def test_a_persistence_artifact_loads_before_any_features_exist_and_predicts_no_change(tmp_path):
    """What the gate promotes when nothing beats persistence: served like any model, price unchanged."""
    from btcpred.batch.modeling import PERSISTENCE_FEATURES, export_persistence_onnx

    onnx_bytes = export_persistence_onnx()
    meta = ModelMetadata(
        model_version="persistence-x",
        model_kind="persistence",
        feature_names=list(PERSISTENCE_FEATURES),
        sha256=sha256_hex(onnx_bytes),
        calibration={"abs_return": [], "hit_rate": []},
        scaler_mean=[],
        scaler_scale=[],
        venue="test",
        data_ranges={},
        hyperparameters={},
        validation_metrics={},
        created_at="2026-12-02T00:00:00+00:00",
    )
    write_local(tmp_path, onnx_bytes, meta)
    manager = ModelManager(FileSource(str(tmp_path)), warmup_runs=1)  # no feat: hash yet (available_features None)
    assert asyncio.run(manager.poll_once()) == "loaded" and manager.current.version == "persistence-x"
    assert manager.current.predicted_return({"mid": "61234.5"}) == 0.0
    price, confidence = manager.current.predict(type("State", (), {"features": {"mid": "61234.5"}})(), 61234.5)
    assert (price, confidence) == (61234.5, 0.5)


def test_serving_and_the_report_trust_the_same_inputs(tmp_path):
    """One rule (common.model_artifact.InputGuard): each row the report scores as the model's answer
    is one serving answers with the model, and each row it scores as persistence is a served fallback."""
    from btcpred.batch.datasets import FeatureSet
    from btcpred.batch.report import score
    from btcpred.common.model_artifact import read_local, write_local
    from btcpred.udfs.features import FEATURE_NAMES

    artifact(tmp_path, "v1")
    onnx_bytes, meta = read_local(tmp_path)
    for update in (
        {"guard_low": [-1.0, -2.0], "guard_high": [1.0, 2.0]},  # with the guard
        {"scaler_mean": [0.0, 0.0], "scaler_scale": [1.0, 1.0]},
    ):  # an artifact from before it: 10 sd
        write_local(tmp_path, onnx_bytes, meta.model_copy(update=update))
        manager = ModelManager(FileSource(str(tmp_path)), warmup_runs=1, max_feature_z=10.0)
        asyncio.run(manager.poll_once())
        rows = [(0.5, 1.5), (0.5, 2.5), (float("nan"), 0.0), (3.0, 0.0), (0.0, 1e12)]
        X = np.zeros((len(rows), len(FEATURE_NAMES)))
        for r, (a, b) in enumerate(rows):
            X[r, FEATURE_NAMES.index(meta.feature_names[0])], X[r, FEATURE_NAMES.index(meta.feature_names[1])] = a, b
        data = FeatureSet(np.full(len(rows), "v"), np.arange(len(rows)), X, np.full(len(rows), 1e-4), np.full(len(rows), 100.0))
        served = []
        for a, b in rows:
            try:
                served.append(manager.current.predicted_return({meta.feature_names[0]: str(a), meta.feature_names[1]: str(b)}))
            except FeatureOutOfRange:
                served.append(0.0)
        assert np.allclose(score(manager.current.model, data).pred, served), update
        fell_back = [i for i, r in enumerate(served) if r == 0.0]
        assert fell_back == ([1, 2, 3, 4] if "guard_low" in update else [2, 4]), update  # NaN and 1e12 either way


def test_an_artifact_for_another_horizon_is_refused(tmp_path):
    """The horizon is one constant (udfs.features.HORIZON_US): labels, purge, scoring and serving."""
    from btcpred.common.model_artifact import read_local, write_local

    artifact(tmp_path, "v5s")
    onnx_bytes, meta = read_local(tmp_path)
    write_local(tmp_path, onnx_bytes, meta.model_copy(update={"horizon_s": 5}))
    manager = ModelManager(FileSource(str(tmp_path)), warmup_runs=1)
    assert asyncio.run(manager.poll_once()) != "loaded" and manager.current is None
    assert "predicts 5 s ahead; this system predicts 10 s" in manager.refused["v5s"]


def test_a_feature_missing_for_a_moment_is_retried_not_a_refusal_for_good(tmp_path):
    """A perpetual reconnecting or a job restarting leaves a computed feature out of feat: for a while;
    the promoted model waits for it (counted, gauge up) and loads at the first poll that sees it."""
    from btcpred.inference.model_manager import MODEL_LOADS, WAITING

    artifact(tmp_path, "v1")
    latest = {"depth_imbalance_1", "mid"}  # microprice_minus_mid absent from the latest vector
    manager = ModelManager(FileSource(str(tmp_path)), warmup_runs=1, available_features=lambda: latest)
    before = MODEL_LOADS.labels("features_missing")._value.get()
    assert [asyncio.run(manager.poll_once()) for _ in range(2)] == ["features_missing"] * 2
    assert manager.current is None and manager.refused == {} and WAITING._value.get() == 1
    assert "lacks ['microprice_minus_mid']" in manager.last_error
    assert MODEL_LOADS.labels("features_missing")._value.get() - before == 2
    latest.add("microprice_minus_mid")
    assert asyncio.run(manager.poll_once()) == "loaded" and manager.current.version == "v1" and WAITING._value.get() == 0


def test_a_feature_this_system_never_computes_is_refused_for_good(tmp_path):
    from btcpred.common.model_artifact import read_local, write_local

    artifact(tmp_path, "v-odd")
    onnx_bytes, meta = read_local(tmp_path)
    write_local(tmp_path, onnx_bytes, meta.model_copy(update={"feature_names": ["depth_imbalance_1", "not_a_feature"]}))
    manager = ModelManager(FileSource(str(tmp_path)), warmup_runs=1)
    assert asyncio.run(manager.poll_once()) == "refused"
    assert "does not compute: ['not_a_feature']" in manager.refused["v-odd"]


def test_a_model_is_proven_on_its_gate_markets_only_and_persistence_everywhere(tmp_path):
    from btcpred.common.model_artifact import read_local

    artifact(tmp_path, "v1")
    _, meta = read_local(tmp_path)
    assert meta.proven_on("test") and not meta.proven_on("binance.com-spot")  # its own venue's held-out window
    listed = meta.model_copy(update={"proven_markets": ["binance.com-spot", "binance.com-usdm"]})
    assert listed.proven_on("binance.com-usdm") and not listed.proven_on("test")
    assert meta.model_copy(update={"model_kind": "persistence"}).proven_on("anywhere")


class SourceWithChallengers(FileSource):
    def __init__(self, path, listed) -> None:
        super().__init__(str(path))
        self.listed = listed

    def challengers(self):
        return self.listed


def test_challengers_load_beside_production_and_go_when_no_longer_listed(tmp_path):
    artifact(tmp_path / "prod", "prod")
    artifact(tmp_path / "c1", "c1", coef_sign=-1.0)
    sha = json.loads((tmp_path / "c1" / "metadata.json").read_text())["sha256"]
    source = SourceWithChallengers(
        tmp_path / "prod", [("c1", str(tmp_path / "c1"), sha), ("bad", str(tmp_path / "c1"), "0" * 64)]
    )
    manager = ModelManager(source, warmup_runs=1)
    asyncio.run(manager.poll_once())
    assert asyncio.run(manager.poll_challengers()) == "ok"
    assert list(manager.shadows) == ["c1"] and manager.current.version == "prod"
    assert "bad" in manager.refused  # a wrong artifact is refused for good, and production is untouched
    from btcpred.inference.model_manager import MODEL_LOADS

    refused = MODEL_LOADS.labels("refused")._value.get()
    source.listed = [("bad2", str(tmp_path / "c1"), "1" * 64)]
    asyncio.run(manager.poll_challengers())
    assert MODEL_LOADS.labels("refused")._value.get() == refused + 1 and "bad2" in manager.refused  # counted
    source.listed = []
    asyncio.run(manager.poll_challengers())
    assert manager.shadows == {}
