"""The one skill test: blocks in data time, the statistic against statsmodels, and a test and
interval that cannot disagree."""

import math

import numpy as np
import pytest
import statsmodels.api as sm

from btcpred.common.forecast_skill import BLOCK_MS, MIN_BLOCKS, loss_test, r2_os, skill_vs_persistence, time_blocks

STEP_MS = 2_000


def test_blocks_are_spans_of_data_time_that_never_cross_a_market_or_a_gap():
    hour = np.arange(0, 3_600_000, STEP_MS)
    blocks = time_blocks(hour)
    assert len(set(blocks.tolist())) == 12 and np.bincount(blocks).tolist() == [150] * 12
    # a second market with the same clock, and a 61 s hole inside the first: new blocks at both
    ts = np.concatenate([hour[:100], hour[100:200] + 61_000, hour[:100]])
    venue = np.array(["a"] * 200 + ["b"] * 100)
    blocks = time_blocks(ts, venue)
    assert blocks[:100].tolist() == [0] * 100 and blocks[100:200].tolist() == [1] * 100
    assert blocks[200:].tolist() == [2] * 100
    # a trailing sliver (under half a block) joins the block before it; half a block or more stands alone
    sliver = np.arange(0, BLOCK_MS + 60_000, STEP_MS)
    assert set(time_blocks(sliver).tolist()) == {0}
    half = np.arange(0, BLOCK_MS + BLOCK_MS // 2 + STEP_MS, STEP_MS)
    assert set(time_blocks(half).tolist()) == {0, 1}


def test_statistic_by_hand_on_six_blocks():
    d = np.array([1.0, 3.0, -1.0, 0.0, 2.0, 2.0, 4.0, 0.0, -2.0, 1.0, 1.0, 1.0])
    blocks = np.repeat(np.arange(6), 2)
    # block sums 4, -1, 4, 4, -1, 2; mean 12/12 = 1; residual sums S - 2*1 = 2, -3, 2, 2, -3, 0
    se = math.sqrt(6 / 5 * (4 + 9 + 4 + 4 + 9 + 0)) / 12
    t = loss_test(d, blocks)
    assert (t.n, t.blocks, t.mean_diff) == (12, 6, 1.0)
    assert t.se == pytest.approx(se) and t.stat == pytest.approx(1.0 / se)


@pytest.mark.parametrize("seed", range(3))
def test_statistic_equals_statsmodels_clustered_ols(seed):
    """An OLS of the differential on a constant, errors clustered by block: the same t, the same se."""
    rng = np.random.default_rng(seed)
    ts = np.arange(0, 2 * 3_600_000, STEP_MS)
    vol = np.repeat(rng.gamma(2.0, 1.0, 24), 150)  # volatility that clusters by block
    d = vol * rng.standard_t(4, len(ts)) + 0.05
    blocks = time_blocks(ts)
    ours = loss_test(d, blocks)
    ols = sm.OLS(d, np.ones(len(d))).fit(cov_type="cluster", cov_kwds={"groups": blocks}, use_t=True)
    assert ours.mean_diff == pytest.approx(float(ols.params[0]))
    assert ours.se == pytest.approx(float(ols.bse[0]), rel=1e-10)
    assert ours.stat == pytest.approx(float(ols.tvalues[0]), rel=1e-10)
    # the bootstrap p-value is near the clustered t(G-1) one, not equal to it
    assert abs(ours.pvalue - float(ols.pvalues[0])) < 0.05


def test_interval_excludes_zero_exactly_when_the_test_rejects():
    rng = np.random.default_rng(11)
    ts = np.arange(0, 3_600_000, STEP_MS)
    blocks = time_blocks(ts)
    outcomes = {True: 0, False: 0}
    for i in range(300):
        shift = rng.uniform(-0.25, 0.25)  # effects around the critical value: both outcomes occur often
        d = rng.standard_t(3, len(ts)) * np.repeat(rng.gamma(2.0, 1.0, 12), 150) + shift
        for alpha in (0.05, 0.01):
            t = loss_test(d, blocks, alpha=alpha, reps=499)
            excludes = t.ci[0] > 0 or t.ci[1] < 0
            assert excludes == (t.pvalue < alpha), (i, alpha, t)
            outcomes[excludes] += 1
    assert min(outcomes.values()) > 50


def test_skill_interval_is_the_tests_interval_rescaled():
    rng = np.random.default_rng(5)
    ts = np.arange(0, 3_600_000, STEP_MS)
    y = rng.normal(0, 1e-4, len(ts))
    for pred in (0.3 * y + rng.normal(0, 0.5e-4, len(y)), rng.normal(0, 0.3e-4, len(y))):
        s = skill_vs_persistence(y, pred, time_blocks(ts))
        assert s.r2_os == pytest.approx(1 - np.sum((y - pred) ** 2) / np.sum(y**2))
        scale = len(y) / np.sum(y**2)
        assert s.r2_os == pytest.approx(-s.test.mean_diff * scale)
        assert s.r2_os_ci == pytest.approx((-s.test.ci[1] * scale, -s.test.ci[0] * scale))
        assert (s.r2_os_ci[0] > 0 or s.r2_os_ci[1] < 0) == s.test.significant
    informative = skill_vs_persistence(y, 0.3 * y, time_blocks(ts))
    assert informative.better_than_persistence and informative.r2_os_ci[0] > 0 and informative.clark_west_pvalue < 0.01
    noise = skill_vs_persistence(y, rng.normal(0, 1e-4, len(y)), time_blocks(ts))
    assert not noise.better_than_persistence and noise.r2_os < 0 and noise.clark_west_pvalue > 0.01


def test_r2_os_by_hand_and_no_verdict_on_too_few_blocks():
    y = np.array([1.0, -1.0, 2.0, 0.0])
    assert r2_os(y, np.array([0.5, -0.5, 1.0, 0.5])) == pytest.approx(1 - 1.75 / 6)
    assert r2_os(np.zeros(3), np.zeros(3)) != r2_os(np.zeros(3), np.zeros(3))  # NaN: nothing moved
    few = loss_test(np.arange(10.0), np.repeat(np.arange(MIN_BLOCKS - 1), 2))
    assert math.isnan(few.pvalue) and not few.significant and math.isnan(few.ci[0])
    flat = loss_test(np.zeros(60), np.repeat(np.arange(6), 10))  # identical forecasts: no test
    assert math.isnan(flat.pvalue) and not flat.a_better


def test_size_under_the_null_with_clustered_volatility_and_a_dozen_blocks():
    """Equal forecasts on average, heavy tails, volatility that changes from block to block, serial
    correlation inside blocks: at alpha 0.05 the test rejects about 5 % of the time (not 1 %, not 15 %)."""
    rng = np.random.default_rng(3)
    ts = np.arange(0, 3_600_000, STEP_MS)
    blocks = time_blocks(ts)
    runs, rejected = 400, 0
    for _ in range(runs):
        shocks = rng.standard_t(4, len(ts) + 4)
        overlapping = np.convolve(shocks, np.ones(5), mode="valid")  # five rows share each shock, as labels do
        d = overlapping * np.repeat(rng.gamma(1.5, 1.0, 12), 150)
        rejected += loss_test(d, blocks).significant
    assert 0.02 <= rejected / runs <= 0.08, rejected


def test_json_figures_keep_six_significant_digits_and_drop_what_json_cannot_carry():
    from btcpred.common.forecast_skill import json_figure

    assert json_figure(-1.2345678e-9) == -1.23457e-9 and json_figure(0.0625) == 0.0625
    assert json_figure(float("nan")) is None and json_figure(math.inf) is None and json_figure(None) is None
