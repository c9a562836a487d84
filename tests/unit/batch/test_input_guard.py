"""The trusted input range an artifact carries, against values worked out by hand."""

import numpy as np
import pytest

from btcpred.batch.modeling import input_guard


def test_quantile_range_widened_by_its_own_width():
    # 0..1000 in steps of 1: the 0.1 % and 99.9 % quantiles are 1.0 and 999.0 (linear
    # interpolation over 1001 points), width 998, so the trusted range is [-997, 1997].
    column = np.arange(1001, dtype=float)
    low, high = input_guard(column.reshape(-1, 1))
    assert low == pytest.approx([1.0 - 998.0])
    assert high == pytest.approx([999.0 + 998.0])


def test_a_burst_in_training_does_not_widen_the_range():
    """One extreme row moves the sd a lot and the 0.1 %..99.9 % quantiles not at all."""
    calm = np.tile(np.linspace(-1.0, 1.0, 2001), 1)
    burst = np.append(calm, 1e6)
    assert input_guard(burst.reshape(-1, 1))[1][0] == pytest.approx(input_guard(calm.reshape(-1, 1))[1][0], rel=1e-3)
    assert np.std(burst) > 1000 * np.std(calm)


def test_a_constant_column_trusts_only_its_value():
    low, high = input_guard(np.column_stack([np.zeros(50), np.arange(50.0)]))
    assert (low[0], high[0]) == (0.0, 0.0)
    assert low[1] < 0.0 < 49.0 < high[1]
