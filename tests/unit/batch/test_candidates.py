"""Which candidates a training set can train: optional features only where nearly every row has them."""

import numpy as np

from btcpred.batch.datasets import FeatureSet
from btcpred.batch.train import CANDIDATES, candidates_for
from btcpred.udfs.features import DEEP_OFI_FEATURES, FEATURE_NAMES, PERP_FEATURES, QUOTE_FEATURES
from btcpred.udfs.long_context import CONTEXT_FEATURES

WARM = ["ridge_depth_ofi", "ridge_context"]  # the multi-level OFI and the context, present once warmed up


def feature_set(n: int, quotes_missing: int, perp_missing: int, traded: int = 0, context_missing: int = 0) -> FeatureSet:
    X = np.ones((n, len(FEATURE_NAMES)))
    for name in ("signed_flow_1s", "signed_flow_5s"):
        X[traded:, FEATURE_NAMES.index(name)] = 0.0  # no trade in the window: the 1 Hz Binance.US book has none
    for names, missing in (
        (QUOTE_FEATURES, quotes_missing),
        (PERP_FEATURES, perp_missing),
        (CONTEXT_FEATURES, context_missing),
    ):
        X[:missing, [FEATURE_NAMES.index(name) for name in names]] = np.nan  # the first boundaries, before the stream
    return FeatureSet(np.array(["v"] * n, dtype=object), np.arange(n) * 2000, X, np.zeros(n), np.ones(n))


def test_the_perp_candidate_competes_only_where_99_percent_of_rows_have_its_features():
    data, candidates = candidates_for(feature_set(1000, quotes_missing=3, perp_missing=10))
    assert [c[0] for c in candidates] == [c[0] for c in CANDIDATES] + WARM + ["ridge_quotes", "ridge_perp"]
    assert len(data) == 990 and np.isfinite(data.X).all()  # every candidate is judged on the same rows
    assert candidates[-1][1][-2:] == PERP_FEATURES
    data, candidates = candidates_for(feature_set(1000, quotes_missing=3, perp_missing=14))  # 11 of the 997 left: 98.9 %
    assert [c[0] for c in candidates][-1] == "ridge_quotes" and len(data) == 997
    data, candidates = candidates_for(feature_set(1000, quotes_missing=1000, perp_missing=1000))  # Binance.US
    assert [c[0] for c in candidates] == [c[0] for c in CANDIDATES] + WARM and len(data) == 1000


def test_the_context_candidate_competes_once_99_percent_of_rows_have_five_minutes_behind_them():
    data, candidates = candidates_for(feature_set(1000, quotes_missing=1000, perp_missing=1000, context_missing=10))
    assert "ridge_context" in [c[0] for c in candidates] and len(data) == 990
    assert set(CONTEXT_FEATURES) <= set(candidates[-1][1]) and not set(DEEP_OFI_FEATURES) & set(candidates[-1][1])
    data, candidates = candidates_for(feature_set(1000, quotes_missing=1000, perp_missing=1000, context_missing=11))
    assert "ridge_context" not in [c[0] for c in candidates] and len(data) == 1000  # no row dropped for it


def test_the_trade_flow_candidates_compete_only_where_most_rows_saw_a_trade():
    _, candidates = candidates_for(feature_set(1000, quotes_missing=1000, perp_missing=1000, traded=499))
    names = [c[0] for c in candidates]
    assert names == [c[0] for c in CANDIDATES] + WARM  # 49.9 % of rows with a trade in the last 5 s: flow would mostly read 0
    _, candidates = candidates_for(feature_set(1000, quotes_missing=1000, perp_missing=1000, traded=500))
    names = [c[0] for c in candidates]
    assert names == [c[0] for c in CANDIDATES] + ["ridge_flow_book", "ridge_all"] + WARM
    candidates = [c for c in candidates if c[0] == "ridge_all"]
    assert "signed_flow_5s" in candidates[-1][1] and "trade_intensity_5s" not in candidates[-1][1]  # counts are a venue's unit
