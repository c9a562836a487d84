"""The champion/challenger gate on real 10 s returns (the Binance.US hour the training split holds out).

The candidates are test devices, not models: noise (a deliberately useless candidate), and
shrunken copies of the realized return (informative by construction, at chosen strengths).
"""

import numpy as np
import pytest

from btcpred.batch.gate import Comparison, compare, decide, price_errors


@pytest.fixture(scope="module")
def window(binance_us_rows):
    data = binance_us_rows
    last = np.sort(np.argsort(data.ts_ms)[-1400:])  # the newest ~50 minutes: what a training run never fits on
    return data.y[last], data.mid[last], data.ts_ms[last]


@pytest.mark.shared_data
def test_a_useless_candidate_is_never_promoted(window):
    y, mid, ts = window
    for seed in range(5):
        noise = np.random.default_rng(seed).normal(0.0, y.std(), len(y))  # same size as real moves, no information
        d = decide("noise", noise, y, mid, ts, champion=None)
        assert not d.promote, d
        assert d.comparisons[0].rival == "persistence" and d.comparisons[0].rmse_ratio > 1.0
        # nor over a production model that is itself useless
        assert not decide("noise", noise, y, mid, ts, champion=("old-noise", noise[::-1].copy())).promote


@pytest.mark.shared_data
def test_promoted_only_when_it_beats_both_persistence_and_production(window):
    y, mid, ts = window
    strong, weak = 0.5 * y, 0.2 * y
    first = decide("strong", strong, y, mid, ts, champion=None)
    assert first.promote and [c.rival for c in first.comparisons] == ["persistence"]
    assert first.comparisons[0].dm_pvalue < 0.01 and first.comparisons[0].rmse_ratio < 1.0
    # beats persistence, loses to production: production stays
    lost = decide("weak", weak, y, mid, ts, champion=("strong", strong))
    assert [c.beats for c in lost.comparisons] == [True, False] and not lost.promote
    assert "strong" in lost.reason
    # beats both
    won = decide("strong", strong, y, mid, ts, champion=("weak", weak))
    assert won.promote and all(c.beats for c in won.comparisons)
    # the production model itself is never "promoted" again
    assert not decide("strong", strong, y, mid, ts, champion=("strong", strong)).promote


@pytest.mark.shared_data
def test_persistence_replaces_a_bad_production_model_and_serves_when_there_is_none(window):
    y, mid, ts = window
    zeros = np.zeros(len(y))
    bad = np.random.default_rng(0).normal(0.0, 2 * y.std(), len(y))
    assert decide("persistence", zeros, y, mid, ts, champion=("bad", bad), challenger_is_persistence=True).promote
    assert not decide("persistence", zeros, y, mid, ts, champion=("good", 0.5 * y), challenger_is_persistence=True).promote
    alone = decide("persistence", zeros, y, mid, ts, champion=None, challenger_is_persistence=True)
    assert alone.promote and alone.comparisons == ()


def test_comparison_figures_by_hand():
    mid = np.array([100.0, 100.0, 100.0, 100.0])
    y = np.log(np.array([101.0, 99.0, 100.0, 102.0]) / 100.0)
    half = y / 2
    e = price_errors(y, half, mid)
    assert e == pytest.approx(100 * np.exp(half) - np.array([101.0, 99.0, 100.0, 102.0]))
    c = compare("persistence", y, mid, half, np.zeros(4), np.zeros(4, dtype=np.int64))
    rmse_half = np.sqrt(np.mean(e**2))
    rmse_zero = np.sqrt(np.mean(np.array([1.0, 1.0, 0.0, 2.0]) ** 2))
    assert c.rmse_ratio == pytest.approx(rmse_half / rmse_zero)
    assert np.isnan(c.dm_pvalue) and not c.beats  # 4 rows in one block: too few for the block test
    assert not Comparison("x", 0.5, -3.0, float("nan")).beats and Comparison("x", 0.5, -3.0, 0.01).beats
    assert not Comparison("x", 1.5, 3.0, 0.01).beats  # significant, but worse


PLACEBO_RUNS = 200


@pytest.mark.shared_data
def test_placebo_real_predictions_on_labels_an_hour_away_are_promoted_at_most_5_percent(binance_us_rows):
    """Size check: a ridge fitted on the first Binance.US hour predicts the later hours, and the gate
    judges it against labels shifted by 1 to 2 hours (no information left), on one-hour windows.

    Shrunken copies of the predictions (x0.1, x0.01) put the placebo at the test's boundary, where
    the squared-prediction penalty vanishes and only the test's own size stands between noise and
    promotion. Over 200 runs per strength, at alpha 0.05: at most 5 % promoted, and the upper end of
    the Clopper-Pearson 95 % interval of the rate under 10 %.
    """
    from scipy.stats import beta

    from btcpred.batch.modeling import OFI_FEATURES, fit_ridge, predict_return

    data = binance_us_rows.take(np.argsort(binance_us_rows.ts_ms, kind="stable"))
    first_hour = data.ts_ms < data.ts_ms[0] + 3_600_000
    model = fit_ridge(data.columns(OFI_FEATURES)[first_hour], data.y[first_hour], alpha=1.0)
    later = data.take(np.flatnonzero(~first_hour))
    pred = predict_return(model, later.columns(OFI_FEATURES))
    n, window = len(later), 1_800  # one hour of 2 s rows
    assert n > 2 * window + 1_000
    for strength in (1.0, 0.1, 0.01):
        promoted = 0
        for k in range(PLACEBO_RUNS):
            shift = window + k * ((n - 2 * window) // PLACEBO_RUNS)  # rows; >= 1 h either way round the circle
            start = (k * 131) % (n - window)
            rows = slice(start, start + window)
            y = np.roll(later.y, -shift)[rows]
            d = decide("placebo", strength * pred[rows], y, later.mid[rows], later.ts_ms[rows], champion=None)
            promoted += d.promote
        upper = beta.ppf(0.975, promoted + 1, PLACEBO_RUNS - promoted)
        assert promoted / PLACEBO_RUNS <= 0.05 and upper < 0.10, (strength, promoted)
