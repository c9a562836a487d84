"""Champion against challengers on what this service published, with the test the gate uses.

The shadow scores are in data time on the same targets as the champion's, so the rows match by
feature time; the loss differential then goes through ``btcpred.common.forecast_skill`` exactly
as the hourly gate's does (5-minute blocks, wild block bootstrap, interval agreeing with p).
``versus`` reports the decision the gate would take on these rows: a fixed-sample verdict, read
once (at the end of a demo, by an operator), not a test to re-run every cycle. ``OnlineContest``
is the one read every cycle and acted on: an always-valid test whose lifetime error is alpha.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from btcpred.common.contest_decision import Decision
from btcpred.common.forecast_skill import ALPHA, json_figure, loss_test, skill_figures, time_blocks
from btcpred.common.sequential_test import BettingTest, BlockedDifferential
from btcpred.inference.scoring import ScoredPrediction, log_errors


def skill_of(rows: list[ScoredPrediction]) -> dict:
    """R²_OS against persistence on scored rows, its interval and p-value."""
    times, model, base = log_errors(rows)
    y = -np.asarray(base, float)
    return skill_figures(np.asarray(times), y, np.asarray(model, float) + y)


def versus(champion: list[ScoredPrediction], challenger: list[ScoredPrediction], alpha: float = ALPHA) -> dict:
    """The challenger's squared log-return error minus the champion's on the rows both were scored on."""
    c_times, c_err, _ = log_errors(champion)
    by_time = dict(zip(c_times, c_err))
    x_times, x_err, _ = log_errors(challenger)
    matched = [(t, x, by_time[t]) for t, x in zip(x_times, x_err) if t in by_time]
    if not matched:
        return {"n": 0, "decision": "no verdict: nothing scored yet"}
    times = np.array([m[0] for m in matched])
    diff = np.array([m[1] ** 2 - m[2] ** 2 for m in matched])
    test = loss_test(diff, time_blocks(times), alpha)
    if math.isnan(test.pvalue):
        decision = f"no verdict: {test.blocks} block(s) of 5 minutes, the test needs 6"
    elif test.a_better:
        decision = "the challenger would be promoted on this market"
    elif test.significant:
        decision = "the champion is better"
    else:
        decision = f"no difference at alpha {alpha}: the champion stays"
    return {
        "n": test.n,
        "blocks": test.blocks,
        "mean_loss_diff": json_figure(test.mean_diff),
        "ci": [json_figure(test.ci[0]), json_figure(test.ci[1])],
        "pvalue": json_figure(test.pvalue),
        "decision": decision,
    }


def _squared_log_error(row: ScoredPrediction) -> tuple[float, float] | None:
    """(the prediction's, persistence's) squared log-return error on one scored row."""
    if min(row.current_price, row.predicted_price, row.realized_price) <= 0:
        return None
    realized = math.log(row.realized_price / row.current_price)
    return (math.log(row.predicted_price / row.current_price) - realized) ** 2, realized**2


class OnlineContest:
    """The always-valid tests (``btcpred.common.sequential_test``) of the champion and its challengers on
    this market, fed with every scored row in data time, read every cycle.

    Per challenger: is it better than the champion (champion's loss minus its own, positive)? For a
    model champion: is it worse than persistence (its loss minus persistence's, positive)? A test that
    reaches ``1 / alpha`` gives one ``Decision``; a new champion starts every test afresh, since what
    they measured was against the old one.
    """

    def __init__(self, market: str, alpha: float = ALPHA, memory: int = 200) -> None:
        self.market = market
        self.alpha = alpha
        self.champion: str | None = None
        self.champion_loss: OrderedDict[int, float] = OrderedDict()  # feature time -> champion's loss
        self.memory = memory
        self.demotion: BlockedDifferential | None = None
        self.promotions: dict[str, BlockedDifferential] = {}
        self.decided: set[str] = set()

    def new_champion(self, version: str) -> None:
        if version == self.champion:
            return
        self.champion = version
        self.champion_loss.clear()
        self.promotions.clear()
        self.decided.clear()
        # persistence (built in, or the registry's persistence artifact) is the bar itself: nothing to demote it to
        is_persistence = version == "persistence" or version.startswith("persistence-")
        self.demotion = None if is_persistence else BlockedDifferential(BettingTest(self.alpha))

    def champion_row(self, row: ScoredPrediction) -> Decision | None:
        losses = _squared_log_error(row)
        if losses is None or self.champion is None:
            return None
        self.champion_loss[row.feature_time_ms] = losses[0]
        while len(self.champion_loss) > self.memory:
            self.champion_loss.popitem(last=False)
        if self.demotion is None or self.champion in self.decided:
            return None
        self.demotion.add(row.feature_time_ms, losses[0] - losses[1])
        if self.demotion.test.rejected:
            self.decided.add(self.champion)
            return Decision("demote", self.champion, "persistence", self.market, row.feature_time_ms, self.demotion.figures())
        return None

    def challenger_row(self, version: str, row: ScoredPrediction) -> Decision | None:
        losses = _squared_log_error(row)
        champion = self.champion_loss.get(row.feature_time_ms)
        if losses is None or champion is None or version in self.decided or version == self.champion:
            return None
        test = self.promotions.setdefault(version, BlockedDifferential(BettingTest(self.alpha)))
        test.add(row.feature_time_ms, champion - losses[0])
        if test.test.rejected:
            self.decided.add(version)
            return Decision("promote", version, self.champion or "persistence", self.market, row.feature_time_ms, test.figures())
        return None

    def state(self) -> dict:
        """For /accuracy: each running test's e-value and how much evidence it has."""
        return {
            "champion": self.champion,
            "alpha": self.alpha,
            "demotion": self.demotion.figures() if self.demotion else None,
            "promotion": {v: t.figures() for v, t in self.promotions.items()},
        }
