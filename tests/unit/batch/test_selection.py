"""The one-standard-error pick on validation, on rows built to make each case certain (not market data)."""

import numpy as np

from btcpred.batch.datasets import FeatureSet
from btcpred.batch.modeling import fit_ridge, predict_return
from btcpred.batch.selection import PERSISTENCE, pick_on_validation
from btcpred.batch.train import Candidate
from btcpred.udfs.features import FEATURE_NAMES

ONE = ("depth_imbalance_1",)
TWO = ("depth_imbalance_1", "ofi_norm_1s")
N = 1800  # an hour of 2 s rows: 12 blocks of 5 minutes


def rows(weight_two: float, seed: int, noise: float = 1.0) -> FeatureSet:
    rng = np.random.default_rng(seed)
    X = np.zeros((N, len(FEATURE_NAMES)))
    a, b = rng.standard_normal(N), rng.standard_normal(N)
    X[:, FEATURE_NAMES.index(ONE[0])] = a
    X[:, FEATURE_NAMES.index(TWO[1])] = b
    y = (a + weight_two * b + noise * rng.standard_normal(N)) * 1e-4
    return FeatureSet(np.array(["v"] * N, dtype=object), np.arange(N) * 2000, X, y, np.ones(N))


def fitted(train: FeatureSet, val: FeatureSet) -> dict[str, Candidate]:
    out = {}
    for kind, features in (("ridge_two", TWO), ("ridge_one", ONE)):  # the complex one first: order must not matter
        model = fit_ridge(train.columns(features), train.y, alpha=1.0)
        pred = predict_return(model, val.columns(features))
        out[kind] = Candidate(kind, features, {"alpha": 1.0}, model, float(np.mean((val.y - pred) ** 2)))
    return out


def test_a_second_input_that_adds_nothing_loses_to_the_simpler_model_within_one_error():
    train, val = rows(0.0, 1), rows(0.0, 101)
    candidates = fitted(train, val)
    assert candidates["ridge_two"].val_mse < candidates["ridge_one"].val_mse  # by chance, as validation hours do
    pick = pick_on_validation(candidates, val)
    assert pick.kind == "ridge_one"
    assert pick.reason.startswith("ridge_two's lower validation loss is within one standard error")


def test_an_input_that_carries_signal_is_kept():
    train, val = rows(1.0, 3), rows(1.0, 4)
    pick = pick_on_validation(fitted(train, val), val)
    assert pick == type(pick)("ridge_two", "")


def test_persistence_is_picked_only_when_its_loss_is_lowest_outright():
    train, val = rows(0.0, 5, noise=1.0), rows(0.0, 6, noise=1.0)
    val_flipped = FeatureSet(val.venue, val.ts_ms, val.X, -val.y, val.mid)  # the relation reversed out of sample
    assert pick_on_validation(fitted(train, val_flipped), val_flipped).kind == PERSISTENCE
    assert pick_on_validation({}, val).kind == PERSISTENCE
