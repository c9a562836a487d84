"""The report's table by volatility regime: which rows fall in which third, and each third's own skill."""

import numpy as np

from btcpred.batch.datasets import FeatureSet
from btcpred.batch.report import by_volatility_regime, regime_table
from btcpred.udfs.features import FEATURE_NAMES

N = 1800  # an hour of 2 s rows


def test_each_third_is_scored_on_its_own_rows():
    rng = np.random.default_rng(7)
    X = np.zeros((N, len(FEATURE_NAMES)))
    vol = rng.permutation(np.repeat([1.0, 2.0, 3.0], N // 3))  # the thirds interleaved in time
    X[:, FEATURE_NAMES.index("realized_vol_5s")] = vol
    y = rng.standard_normal(N) * 1e-4
    data = FeatureSet(np.array(["v"] * N, dtype=object), np.arange(N) * 2000, X, y, np.full(N, 60_000.0))
    pred = np.where(vol == 3.0, y, 0.0)  # right on every wild row, persistence elsewhere
    block = by_volatility_regime(data, pred)
    assert block["feature"] == "realized_vol_5s" and [block[k]["n"] for k in ("calm", "middle", "wild")] == [600] * 3
    assert block["calm"]["r2"] == 0.0 and block["middle"]["r2"] == 0.0 and block["wild"]["r2"] == 1.0
    assert block["wild"]["dm_pvalue"] < 0.05 and block["wild"]["r2_ci95"][0] > 0
    table = regime_table(block)
    assert table[2].startswith("| regime | volatility | n | R²_OS")
    assert table[-1].startswith("| wild | >= 2.33 | 600 | 1.0000 |")  # edges at the 1/3 and 2/3 quantiles
    assert regime_table(by_volatility_regime(data.take(np.arange(20)), pred[:20])) == ["Too few rows to split by volatility."]
