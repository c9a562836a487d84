"""Recursive least squares with forgetting: equal to a batch weighted ridge, tracks a change, checkpoints as JSON."""

import numpy as np
import pytest

from btcpred.common.online_ridge import BP, OnlineRidge

pytestmark = pytest.mark.unit


def test_without_forgetting_or_drifting_inputs_it_equals_the_batch_ridge():
    """lambda = 1, inputs already centred with unit variance kept fixed: w = (X'X + ridge I)^-1 X'y (in bp)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = (X @ np.array([2.0, -1.0, 0.5]) + rng.normal(0, 0.5, 300)) / BP
    m = OnlineRidge(("a", "b", "c"), forgetting=1.0, ridge=10.0, warm_rows=0)
    m.rows, m.mean, m.var = 1, np.zeros(3), np.ones(3)  # standardization fixed at identity: plain RLS
    for x, target in zip(X, y):
        m.mean, m.var = np.zeros(3), np.ones(3)
        assert m.update(x, target)
    expected = np.linalg.solve(X.T @ X + 10.0 * np.eye(3), X.T @ (y * BP))
    assert m.w == pytest.approx(expected, rel=1e-6)


def test_with_forgetting_it_follows_a_relation_that_flips():
    rng = np.random.default_rng(1)
    m = OnlineRidge(("x",), forgetting=0.99, ridge=1.0, warm_rows=50)
    for sign in (1.0, -1.0):
        for _ in range(1000):
            x = rng.normal()
            m.update(np.array([x]), sign * 3e-4 * x + rng.normal(0, 1e-4))
        assert np.sign(m.predict(np.array([1.0]))) == sign  # the newest regime wins within a few hundred rows


def test_it_predicts_no_move_until_warm_and_refuses_non_finite_rows():
    m = OnlineRidge(("x",), warm_rows=3)
    assert not m.update(np.array([np.nan]), 1e-4) and not m.update(np.array([1.0]), float("inf")) and m.rows == 0
    for v in (1.0, 2.0):
        m.update(np.array([v]), v * 1e-4)
    assert m.predict(np.array([2.0])) == 0.0  # 2 rows of 3
    m.update(np.array([3.0]), 3e-4)
    assert m.predict(np.array([3.0])) > 0 and m.predict(np.array([np.nan])) == 0.0


def test_a_checkpoint_restores_the_same_model_and_a_foreign_or_bad_one_is_refused():
    rng = np.random.default_rng(2)
    m = OnlineRidge(("a", "b"), warm_rows=0)
    for _ in range(50):
        x = rng.normal(size=2)
        m.update(x, 1e-4 * x[0])
    again = OnlineRidge.from_json(m.to_json(), ("a", "b"))
    probe = np.array([0.3, -0.2])
    assert again.predict(probe) == m.predict(probe) and again.rows == 50
    with pytest.raises(ValueError, match="checkpoint for"):
        OnlineRidge.from_json(m.to_json(), ("a", "c"))
    bad = m.to_json().replace('"rows": 50', '"rows": -1')
    with pytest.raises(ValueError):
        OnlineRidge.from_json(bad, ("a", "b"))
    import json

    poisoned = json.loads(m.to_json())
    poisoned["var"][0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        OnlineRidge.from_json(json.dumps(poisoned), ("a", "b"))
    poisoned["var"][0] = 1.0
    poisoned["P"] = [[1.0]]
    with pytest.raises(ValueError, match="shape"):
        OnlineRidge.from_json(json.dumps(poisoned), ("a", "b"))


def test_a_row_that_would_overflow_the_state_is_refused_and_nothing_changes():
    m = OnlineRidge(("a",), warm_rows=0)
    for v in (1.0, -1.0, 0.5):
        m.update(np.array([v]), v * 1e-4)
    before = m.to_json()
    assert not m.update(np.array([1e300]), 1e-4)  # finite, but its square is not
    assert m.to_json() == before and m.rows == 3
    assert np.isfinite(m.predict(np.array([1e300])))  # never a non-finite price to publish
