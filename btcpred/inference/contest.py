"""Champion against challengers on what this service published, with the test the gate uses.

The shadow scores are in data time on the same targets as the champion's, so the rows match by
feature time; the loss differential then goes through ``btcpred.common.forecast_skill`` exactly
as the hourly gate's does (5-minute blocks, wild block bootstrap, interval agreeing with p).
What it reports is the decision the gate would take on these rows: a fixed-sample verdict,
read once (at the end of a demo, by an operator), not a test to re-run every cycle.
"""
from __future__ import annotations

import math

import numpy as np

from btcpred.common.forecast_skill import ALPHA, json_figure, loss_test, skill_vs_persistence, time_blocks
from btcpred.inference.scoring import ScoredPrediction, log_errors


def skill_of(rows: list[ScoredPrediction]) -> dict:
    """R²_OS against persistence on scored rows, its interval and p-value."""
    times, model, base = log_errors(rows)
    if not times:
        return {"n": 0}
    y = -np.asarray(base)
    s = skill_vs_persistence(y, np.asarray(model) + y, time_blocks(np.asarray(times)))
    return {"n": len(times), "blocks": s.test.blocks, "r2_os": json_figure(s.r2_os),
            "r2_os_ci": [json_figure(s.r2_os_ci[0]), json_figure(s.r2_os_ci[1])], "pvalue": json_figure(s.test.pvalue)}


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
    return {"n": test.n, "blocks": test.blocks, "mean_loss_diff": json_figure(test.mean_diff),
            "ci": [json_figure(test.ci[0]), json_figure(test.ci[1])], "pvalue": json_figure(test.pvalue), "decision": decision}
