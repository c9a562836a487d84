"""The online contest: shadow rows matched to the champion's by feature time, judged by the gate's test."""

import math

import numpy as np
import pytest

from btcpred.common.forecast_skill import loss_test, time_blocks
from btcpred.inference.contest import skill_of, versus
from btcpred.inference.scoring import ScoredPrediction, log_errors

STEP_MS = 2_000


def rows(moves: np.ndarray, predicted: np.ndarray, start_ms: int = 0) -> list[ScoredPrediction]:
    """Scored rows at 100.0 with the given realized and predicted log returns."""
    return [
        ScoredPrediction(start_ms + i * STEP_MS, 100.0, 100.0 * math.exp(p), 100.0 * math.exp(m))
        for i, (m, p) in enumerate(zip(moves, predicted))
    ]


def test_log_errors_by_hand():
    [t], [model], [base] = log_errors([ScoredPrediction(5, 100.0, 101.0, 102.0)])
    assert t == 5 and model == pytest.approx(math.log(101 / 102)) and base == pytest.approx(math.log(100 / 102))


def test_a_better_challenger_is_named_with_the_gates_own_figures():
    rng = np.random.default_rng(2)
    n = 1_200  # 40 minutes: 8 blocks
    moves = rng.normal(0, 1e-4, n)
    champion = rows(moves, np.zeros(n))
    challenger = rows(moves, 0.5 * moves)
    verdict = versus(champion, challenger[100:])  # the challenger joined later: only shared rows count
    assert verdict["n"] == n - 100 and verdict["decision"] == "the challenger would be promoted on this market"
    _, x_err, _ = log_errors(challenger[100:])
    _, c_err, _ = log_errors(champion[100:])
    expected = loss_test(np.square(x_err) - np.square(c_err), time_blocks(np.arange(100, n) * STEP_MS))
    assert verdict["pvalue"] == pytest.approx(expected.pvalue) and verdict["ci"][1] < 0
    assert verdict["mean_loss_diff"] == pytest.approx(-0.75 * np.mean(moves[100:] ** 2), rel=1e-3)
    # the same rows the other way round: the champion is better
    assert versus(challenger, champion)["decision"] == "the champion is better"
    skill = skill_of(challenger)
    assert skill["r2_os"] == pytest.approx(0.75, abs=1e-3) and skill["r2_os_ci"][0] > 0


def test_too_few_blocks_give_no_verdict():
    moves = np.random.default_rng(0).normal(0, 1e-4, 300)  # 10 minutes
    verdict = versus(rows(moves, np.zeros(300)), rows(moves, 0.5 * moves))
    assert verdict["decision"].startswith("no verdict") and verdict["pvalue"] is None
    assert versus([], rows(moves, moves))["n"] == 0
