import math

import pytest

from btcpred.inference.scoring import OnlineScorer


def test_scores_against_mid_ten_seconds_later_in_data_time():
    s = OnlineScorer(horizon_ms=10_000)
    s.record_prediction(1_000, current_price=100.0, predicted_price=101.0)
    s.record_prediction(1_500, current_price=100.0, predicted_price=99.0)
    s.record_mid(11_000, 102.0)  # realized for the first: model error -1, persistence -2
    s.record_mid(11_500, 100.0)  # realized for the second: no move; model error -1, persistence 0
    acc = s.accuracy()
    assert acc.scored == 2
    assert acc.mae == 1.0 and acc.rmse == 1.0
    assert acc.persistence_mae == 1.0 and acc.persistence_rmse == math.sqrt((4 + 0) / 2)
    assert acc.directional_accuracy == 1.0  # one non-zero move (up), predicted up


def test_each_row_reaches_the_recalibration_once_its_outcome_is_known_with_its_scale():
    told = []
    s = OnlineScorer(horizon_ms=10_000, on_scored=told.append)
    s.record_prediction(1_000, 100.0, 101.0, low=99.0, high=103.0, scale=2e-4)
    s.record_prediction(1_000, 100.0, 101.0, scale=2e-4)  # the next cycle on the same features: not twice
    assert told == []  # its outcome is 10 s of data time away
    s.record_mid(11_000, 102.0)
    [row] = told
    assert (row.feature_time_ms, row.predicted_price, row.realized_price, row.scale) == (1_000, 101.0, 102.0, 2e-4)


def test_mid_before_prediction_and_repeated_cycles_count_once():
    s = OnlineScorer(horizon_ms=10_000)
    s.record_mid(12_000, 50.0)
    s.record_prediction(2_000, 49.0, 49.0)  # target already known: scored at once
    s.record_prediction(2_000, 49.0, 49.0)  # the next cycle reused the same features
    acc = s.accuracy()
    assert acc.scored == 1 and acc.mae == 1.0
    assert acc.directional_accuracy is None  # the price moved, but a no-change prediction takes no side


def test_prediction_whose_target_is_skipped_is_dropped_not_kept_forever():
    s = OnlineScorer(horizon_ms=10_000)
    s.record_prediction(0, 1.0, 1.0)
    s.record_mid(9_500, 1.0)
    s.record_mid(25_000, 1.0)  # history jumped past 10_000 by more than a horizon
    assert not s.pending and s.accuracy().scored == 0


def test_bias_and_calibration_slope_by_hand():
    scorer = OnlineScorer(horizon_ms=10_000)
    # predicted moves +1, +2, +3 from 100; realized moves +0.5, +1.5, +1.0
    for t, (predicted, realized) in enumerate([(101.0, 100.5), (102.0, 101.5), (103.0, 101.0)]):
        scorer.record_prediction(t * 1000, 100.0, predicted)
        scorer.record_mid(t * 1000 + 10_000, realized)
    acc = scorer.accuracy()
    # errors +0.5, +0.5, +2.0 -> bias 1.0; slope = cov(p, r) / var(p) = ((-1)(-0.5) + 0 + (1)(0)) / 2 = 0.25
    assert acc.scored == 3 and acc.bias == pytest.approx(1.0) and acc.calibration_slope == pytest.approx(0.25)


def test_calibration_slope_is_undefined_for_a_model_that_never_moves():
    scorer = OnlineScorer(horizon_ms=10_000)
    for t in range(3):
        scorer.record_prediction(t * 1000, 100.0, 100.0)
        scorer.record_mid(t * 1000 + 10_000, 100.0 + t)
    assert scorer.accuracy().calibration_slope is None
