"""The conformal prediction interval: quantile by hand, the scale, and what serving states from it."""

import math

import numpy as np
import pytest

from btcpred.common.model_artifact import PredictionInterval, conformal_quantile, fit_interval


def test_conformal_quantile_is_the_ceil_n_plus_one_times_coverage_th_smallest():
    scores = np.array([5.0, 1.0, 4.0, 2.0, 3.0])
    assert conformal_quantile(scores, 0.5) == 3.0  # ceil(6 * 0.5) = 3rd smallest
    assert conformal_quantile(scores, 0.8) == 5.0  # ceil(6 * 0.8) = 5th
    assert conformal_quantile(scores, 0.9) == math.inf  # ceil(6 * 0.9) = 6 > n: no finite bound exists


def test_fit_interval_picks_the_floor_on_one_half_and_the_quantiles_on_the_other():
    vol = np.tile([1.0, 3.0], 100)  # positive everywhere: every candidate floor is 1.0 or 3.0
    y = np.concatenate([np.tile([2.0, 4.0], 50), np.tile([4.0, 8.0], 50)])
    spec = fit_interval(y, np.zeros(200), vol, 0.8)
    # first half: |y| / (vol + 1) = 1 throughout (mean width 1 * 3); with floor 3: 0.5 and 0.67 (width 0.67 * 5)
    assert spec.vol_floor == 1.0 and spec.n == 100
    # second half, floor 1: |y| / (vol + 1) = 2 throughout
    assert spec.persistence_quantile == 2.0 and spec.model_quantile == 2.0
    assert spec.half_width(3.0) == 8.0 and spec.half_width(-1.0) == 2.0  # a negative volatility counts as 0
    assert fit_interval(y[:50], np.zeros(50), vol[:50], 0.8) is None  # too few rows to size one


def test_coverage_on_exchangeable_rows_is_the_nominal_one():
    """Rows drawn like the validation rows: the interval holds about 80 % of them, at every volatility."""
    rng = np.random.default_rng(4)
    vol = rng.gamma(2.0, 1e-4, 20_000)
    y = rng.standard_t(5, 20_000) * vol
    pred = 0.1 * y + rng.normal(0, 1e-5, 20_000)
    spec = fit_interval(y[:10_000], pred[:10_000], vol[:10_000], 0.8)  # quantiles from 5,000 of them
    half = np.array([spec.half_width(v) for v in vol[10_000:]])
    inside = np.abs(y[10_000:] - pred[10_000:]) <= half
    assert inside.mean() == pytest.approx(0.8, abs=0.025)
    # scaled by volatility, calm and wild minutes share the misses far more evenly than under one width for all
    calm = vol[10_000:] < np.median(vol)
    width = np.quantile(np.abs(y[:10_000] - pred[:10_000]), 0.8)  # one width for all
    flat = np.abs(y[10_000:] - pred[10_000:]) <= width
    gap_scaled = abs(inside[calm].mean() - inside[~calm].mean())
    gap_flat = abs(flat[calm].mean() - flat[~calm].mean())
    assert gap_scaled < gap_flat / 2, (gap_scaled, gap_flat)


def test_serving_states_the_artifacts_interval_around_its_prediction(tmp_path):
    from btcpred.common.model_artifact import read_local, write_local
    from btcpred.inference.hot_state import HotState
    from btcpred.inference.models import OnnxPredictor
    from tests.unit.inference.test_model_manager import artifact

    artifact(tmp_path, "v1")
    onnx_bytes, meta = read_local(tmp_path)
    spec = PredictionInterval(coverage=0.8, vol_floor=1e-4, model_quantile=2.0, persistence_quantile=3.0, n=500)
    write_local(tmp_path, onnx_bytes, meta.model_copy(update={"interval": spec}))
    from btcpred.common.model_artifact import OnnxModel

    predictor = OnnxPredictor(OnnxModel(*read_local(tmp_path)))
    state = HotState({"realized_vol_5s": "3e-4"}, {}, {}, False)
    low, high, coverage, scale = predictor.interval(state, 100.0, 100.0 * math.exp(1e-4), persistence=False)
    assert (low, high, coverage, scale) == pytest.approx((100 * math.exp(1e-4 - 8e-4), 100 * math.exp(1e-4 + 8e-4), 0.8, 4e-4))
    low, high, _, _ = predictor.interval(state, 100.0, 100.0, persistence=True)
    assert (low, high) == pytest.approx((100 * math.exp(-12e-4), 100 * math.exp(12e-4)))
    assert predictor.interval(HotState({}, {}, {}, False), 100.0, 100.0, False) is None  # no volatility: no interval


def test_an_artifact_with_an_infinite_bound_is_refused_and_none_is_fitted():
    """An infinite quantile (too few rows for the coverage) is no JSON number and no interval: training
    states none, and an artifact carrying one is refused at the edge."""
    with pytest.raises(ValueError, match="finite"):
        PredictionInterval(coverage=0.8, vol_floor=1e-4, model_quantile=math.inf, persistence_quantile=1.0, n=100)
    rng = np.random.default_rng(1)
    y, vol = rng.normal(0, 1e-4, 100), np.full(100, 1e-4)
    assert fit_interval(y, np.zeros(100), vol, 0.99) is None  # ceil(51 * 0.99) = 51 > the 50 rows sized on
