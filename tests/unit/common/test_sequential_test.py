"""The betting test: wealth by hand, its lifetime error under the null however often it is read, its power."""

import numpy as np
import pytest

from btcpred.common.sequential_test import BettingTest, BlockedDifferential

pytestmark = pytest.mark.unit


def test_wealth_by_hand():
    t = BettingTest(alpha=0.05)
    t.add_block(1.0)  # sets the scale only
    assert t.wealth == 1.0 and t.blocks == 1
    t.add_block(2.0)  # scale 1, x = 1, but the stake before any bet is 0 / (1 + 0) = 0
    assert t.wealth == 1.0 and (t.sum_x, t.sum_x2) == (1.0, 1.0)
    t.add_block(-1.0)  # scale median(1, 2) = 1.5, x = -2/3, stake 1 / 2
    assert t.wealth == pytest.approx(1 - 0.5 * 2 / 3)
    t.add_block(2.0)  # scale median(1, 2, 1) = 1, x = 1, stake (1/3) / (1 + 1 + 4/9)
    assert t.wealth == pytest.approx((1 - 1 / 3) * (1 + (1 / 3) / (2 + 4 / 9)))
    assert not t.rejected


def _clustered_blocks(rng, n, shift=0.0):
    """Block sums symmetric about ``shift``, heavy-tailed, volatility clustered (a slowly varying scale)."""
    log_vol = np.zeros(n)
    for i in range(1, n):
        log_vol[i] = 0.9 * log_vol[i - 1] + rng.normal(0, 0.4)
    return shift + np.exp(log_vol) * rng.standard_t(3, n)


def test_read_after_every_block_the_null_is_rejected_at_most_alpha_of_the_time():
    """400 lifetimes of 200 blocks (about 17 hours each) under the null, read after every block:
    the share that ever crossed 1/alpha stays under alpha, with room for the Monte Carlo error."""
    rng = np.random.default_rng(11)
    ever = 0
    for _ in range(400):
        t = BettingTest(alpha=0.05)
        for s in _clustered_blocks(rng, 200, shift=-0.0):
            t.add_block(float(s))
            if t.rejected:
                ever += 1
                break
    assert ever / 400 <= 0.05, ever  # typically well under: Ville's bound is not tight for this bet


def test_a_challenger_clearly_better_is_promoted_within_a_day_of_blocks():
    rng = np.random.default_rng(12)
    crossed_at = []
    for _ in range(50):
        t = BettingTest(alpha=0.05)
        for i, s in enumerate(_clustered_blocks(rng, 288, shift=0.8)):
            t.add_block(float(s))
            if t.rejected:
                crossed_at.append(i + 1)
                break
    assert len(crossed_at) >= 45  # power of at least 90 % over a day
    assert np.median(crossed_at) < 100


def test_a_worse_challenger_is_never_promoted_and_the_stake_stays_at_zero():
    t = BettingTest()
    for s in _clustered_blocks(np.random.default_rng(3), 200, shift=-1.0):
        t.add_block(float(s))
    assert not t.rejected and t.stake() == 0.0


def test_rows_are_summed_into_five_minute_blocks_closed_early_by_a_gap():
    d = BlockedDifferential()
    closed = [d.add(ts, 1.0) for ts in range(0, 300_000, 2_000)]  # 150 rows, 5 minutes
    assert not any(closed) and d.test.blocks == 0
    assert d.add(300_000, 2.0)  # the first row past 5 minutes closes the block of 150
    assert list(d.test.recent) == [150.0]
    assert not d.add(300_000, 5.0)  # a row out of time order (a repeat) is ignored
    assert d.add(400_000, 1.0)  # 98 s after the last row: a gap closes the block early
    assert list(d.test.recent) == [150.0, 2.0] and d.rows == 152
    assert d.figures()["blocks"] == 2 and d.figures()["mean_diff"] == pytest.approx(153 / 152)
