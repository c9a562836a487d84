"""Rolling recalibration of the interval and the confidence: figures by hand, no look-ahead, coverage under a shift."""

import numpy as np
import pytest

from btcpred.common.recalibration import PRIOR_ROWS, Recalibration, replay

pytestmark = pytest.mark.unit


def test_the_artifacts_quantile_stands_until_the_window_has_min_rows():
    r = Recalibration(coverage=0.5, window=10, min_rows=5)
    for e in (1.0, 2.0, 3.0, 4.0):
        r.add(realized=e * 1e-4, predicted=0.0, scale=1e-4)
    assert r.quantile(fallback=9.0) == 9.0  # 4 rows: not yet
    r.add(5e-4, 0.0, 1e-4)
    assert r.quantile(fallback=9.0) == pytest.approx(3.0)  # ceil(6 * 0.5) = 3rd smallest of 1..5


def test_the_window_keeps_only_the_newest_rows_and_ignores_rows_without_a_scale():
    r = Recalibration(coverage=0.8, window=5, min_rows=5)
    for e in (100.0, 100.0, 1.0, 2.0, 3.0, 4.0, 5.0):  # the two large errors fall out of the window
        r.add(e, 0.0, 1.0)
    r.add(1e9, 0.0, 0.0)  # no scale: never stated an interval, says nothing
    r.add(float("nan"), 0.0, 1.0)
    assert list(r.scaled_errors) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert r.quantile(fallback=0.0) == 5.0  # ceil(6 * 0.8) = 5th


def test_each_miss_raises_the_level_and_each_hit_lowers_it_by_the_step():
    """Adaptive conformal: miss level += step * (nominal miss rate - missed)."""
    r = Recalibration(coverage=0.8, window=10, min_rows=5, step=0.1)
    r.add(realized=3.0, predicted=0.0, scale=1.0, stated_quantile=2.0)  # missed: 0.2 + 0.1 * (0.2 - 1) = 0.12
    assert r.level == pytest.approx(0.88)
    r.add(realized=1.0, predicted=0.0, scale=1.0, stated_quantile=2.0)  # held: 0.12 + 0.1 * 0.2 = 0.14
    assert r.level == pytest.approx(0.86)
    r.add(realized=1.0, predicted=0.0, scale=1.0)  # no interval was stated: the level stays
    assert r.level == pytest.approx(0.86) and len(r.scaled_errors) == 3
    for _ in range(20):
        r.add(9.0, 0.0, 1.0, stated_quantile=1.0)
    assert r.level == 0.99  # bounded: never a demand for more than the window can state
    assert r.quantile(fallback=0.0) == 9.0  # ceil(11 * 0.99) = 11 > 10 rows: the largest error


def test_confidence_is_the_hit_rate_of_the_bin_shrunk_towards_the_windows():
    r = Recalibration(window=200, min_rows=100)
    # 100 small predicted moves right half the time, 100 large ones right 90 % of the time
    for i in range(100):
        r.add(realized=1.0 if i % 2 else -1.0, predicted=0.1, scale=1.0)
    for i in range(100):
        r.add(realized=1.0 if i % 10 else -1.0, predicted=2.0, scale=1.0)
    overall = (50 + 90) / 200
    # the quartile edges (0.1, 1.05, 2.0) put the small moves in the first bin and the large ones in the third;
    # a move past the window's range counts with its extreme rows
    large = r.confidence(3.0, 1.0, fallback=0.5)
    assert large == pytest.approx((90 + PRIOR_ROWS * overall) / (100 + PRIOR_ROWS))
    small = r.confidence(0.05, 1.0, fallback=0.5)
    assert small == pytest.approx((50 + PRIOR_ROWS * overall) / (100 + PRIOR_ROWS))
    assert r.confidence(3.0, 0.0, fallback=0.42) == 0.42  # no scale: the artifact's figure
    assert Recalibration(min_rows=100).confidence(1.0, 1.0, fallback=0.6) == 0.6  # empty window


def test_replay_adds_a_row_only_once_its_outcome_is_known():
    """Rows 1 s apart, horizon 3 s: row i sees rows up to i - 3. A look-ahead would see its own error."""
    n = 8
    ts = np.arange(n) * 1000
    y = np.array([1.0, 1.0, 1.0, 1.0, 10.0, 10.0, 10.0, 10.0])
    seen: list[int] = []

    class Counting(Recalibration):
        def quantile(self, fallback):
            seen.append(len(self.scaled_errors))
            return super().quantile(fallback)

    hits, _ = replay(
        ts,
        np.array(["m"] * n, dtype=object),
        y,
        np.zeros(n),
        np.ones(n),
        np.full(n, 5.0),
        np.full(n, 0.5),
        0.5,
        horizon_ms=3000,
        make=lambda c: Counting(c, window=10, min_rows=1, step=0.0),
    )
    assert seen == [0, 0, 0, 1, 2, 3, 4, 5]
    # row 4 (error 10) uses the quantile of rows 0-1 (errors 1): a miss; the fallback 5 would have missed too
    assert hits.tolist() == [True, True, True, True, False, False, False, False]


def test_replay_keeps_markets_apart():
    ts = np.array([0, 0, 5000, 5000])
    market = np.array(["a", "b", "a", "b"], dtype=object)
    y = np.array([1.0, 100.0, 1.0, 100.0])
    hits, _ = replay(
        ts,
        market,
        y,
        np.zeros(4),
        np.ones(4),
        np.full(4, 2.0),
        np.full(4, 0.5),
        0.5,
        horizon_ms=1000,
        make=lambda c: Recalibration(c, window=10, min_rows=1, step=0.0),
    )
    # market b's second row uses b's own first row (quantile 100), never a's (1)
    assert hits.tolist() == [True, False, True, True]


def test_rolling_window_restores_coverage_where_the_artifacts_quantile_is_wrong():
    """The artifact sized on a calm venue (quantile 1.28 of a unit normal), served where scaled errors are twice
    as wide: its own interval covers ~48 %; the rolling one comes back to 80 % within a window."""
    rng = np.random.default_rng(7)
    n = 4000
    ts = np.arange(n) * 2000
    y = rng.normal(0, 2.0, n)
    market = np.array(["m"] * n, dtype=object)
    hits, _ = replay(ts, market, y, np.zeros(n), np.ones(n), np.full(n, 1.2816), np.full(n, 0.5), 0.8, horizon_ms=10_000)
    artifact_coverage = float(np.mean(np.abs(y) <= 1.2816))
    assert artifact_coverage == pytest.approx(0.478, abs=0.02)  # P(|Z| <= 0.64)
    assert float(hits[500:].mean()) == pytest.approx(0.8, abs=0.02)
