import math

import numpy as np
import pytest

from btcpred.batch.metrics import calibration_table, direction_accuracy, evaluate, expected_calibration_error


def test_direction_against_hand_values():
    y = np.array([1.0, -1.0, 2.0, 0.0])
    pred = np.array([0.5, -0.5, 1.0, 0.5])
    acc, n = direction_accuracy(y, pred)
    assert (acc, n) == (1.0, 3)  # the unmoved row does not count
    acc, n = direction_accuracy(np.array([1.0, 1.0, -1.0]), np.array([1.0, -1.0, 0.0]))
    assert (acc, n) == (0.5, 2)  # a zero prediction takes no side


def test_evaluate_prices_errors_and_persistence_ratio():
    mid = np.array([100.0, 100.0])
    y = np.log(np.array([101.0, 99.0]) / 100.0)
    e = evaluate(y, y * 0.5, mid, np.array([0, 2_000]))
    # persistence errors are 1 USD each; the half-move model's are |100*sqrt(1.01)-101| and |100*sqrt(0.99)-99|
    half = np.array([100 * math.sqrt(1.01) - 101, 100 * math.sqrt(0.99) - 99])
    assert e.rmse_persistence == pytest.approx(1.0)
    assert e.rmse == pytest.approx(math.sqrt(np.mean(half**2)))
    assert e.rmse_ratio == pytest.approx(e.rmse / 1.0)
    assert e.r2 == pytest.approx(1 - 0.25)  # R²_OS on log returns: each error is half the move
    assert e.blocks == 1 and math.isnan(e.dm_pvalue)  # two rows are one block: no verdict


def test_calibration_table_bins_by_confidence():
    conf = np.array([0.9, 0.5, 0.6, 0.8])
    correct = np.array([1.0, 0.0, 1.0, 1.0])
    rows = calibration_table(conf, correct, bins=2)
    assert rows == [
        {"n": 2, "mean_confidence": 0.55, "hit_rate": 0.5},
        {"n": 2, "mean_confidence": pytest.approx(0.85), "hit_rate": 1.0},
    ]


def test_expected_calibration_error_by_hand():
    # two equal-count bins: confidences 0.5, 0.5 (hits 1, 0: rate 0.5) and 0.8, 0.8 (hits 1, 1: rate 1.0)
    conf = np.array([0.8, 0.5, 0.8, 0.5])
    correct = np.array([1.0, 1.0, 1.0, 0.0])
    assert expected_calibration_error(conf, correct, bins=2) == pytest.approx((2 * 0.0 + 2 * 0.2) / 4)
    assert expected_calibration_error(np.array([]), np.array([])) is None


def test_served_scoring_answers_persistence_outside_the_trusted_range():
    """batch.report scores a model as inference serves it: an out-of-range row is the fallback's zero return."""
    from btcpred.batch.datasets import FeatureSet
    from btcpred.batch.report import score
    from btcpred.common.model_artifact import Calibration

    class Model:  # the OnnxModel surface report.score reads
        version = "m"
        meta = type(
            "Meta",
            (),
            {
                "feature_names": ["ret_1s"],
                "guard_low": [-1.0],
                "guard_high": [1.0],
                "interval": None,
                "calibration": Calibration(abs_return=[], hit_rate=[]),
            },
        )()

        def predict(self, X):
            return np.full(len(X), 1e-4)

        def confidence(self, pred):
            return np.full(len(pred), 0.5)

    from btcpred.udfs.features import FEATURE_NAMES

    X = np.zeros((3, len(FEATURE_NAMES)))
    X[:, FEATURE_NAMES.index("ret_1s")] = [0.0, 5.0, -1.0]  # the middle row is outside [-1, 1]
    data = FeatureSet(np.array(["v"] * 3, dtype=object), np.arange(3), X, np.full(3, 1e-4), np.full(3, 100.0))
    assert score(Model(), data).pred.tolist() == [1e-4, 0.0, 1e-4]


def test_brier_score_and_its_skill_against_the_best_constant_by_hand():
    from btcpred.batch.metrics import brier

    conf = np.array([0.8, 0.8, 0.4, 0.4])
    correct = np.array([1.0, 1.0, 0.0, 1.0])
    # (0.04 + 0.04 + 0.16 + 0.36) / 4 = 0.15; hit rate 0.75, constant's Brier 0.75 * 0.25 = 0.1875
    score, skill = brier(conf, correct)
    assert score == pytest.approx(0.15) and skill == pytest.approx(1 - 0.15 / 0.1875)
    flat = brier(np.full(4, 0.75), correct)
    assert flat[1] == pytest.approx(0.0)  # a constant at the hit rate: no skill


def test_interval_hits_use_the_models_quantile_where_it_answered_and_persistences_where_the_guard_did():
    from btcpred.batch.datasets import FeatureSet
    from btcpred.batch.report import interval_hits
    from btcpred.common.model_artifact import PredictionInterval
    from btcpred.udfs.features import FEATURE_NAMES

    spec = PredictionInterval(coverage=0.8, vol_floor=1e-4, model_quantile=1.0, persistence_quantile=2.0, n=100)
    model = type("Model", (), {"meta": type("Meta", (), {"interval": spec})()})()
    X = np.zeros((3, len(FEATURE_NAMES)))
    X[:, FEATURE_NAMES.index("realized_vol_5s")] = 1e-4  # scale 2e-4: model half-width 2e-4, persistence's 4e-4
    y = np.array([1e-4, 3e-4, 4e-4])
    data = FeatureSet(np.array(["v"] * 3, dtype=object), np.arange(3), X, y, np.full(3, 100.0))
    pred = np.array([1e-4, 0.0, 1e-4])
    inside = np.array([True, False, True])  # the middle row: outside the guard, persistence answered
    assert interval_hits(model, data, pred, inside).tolist() == [True, True, False]
