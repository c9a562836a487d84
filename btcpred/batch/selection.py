"""Which candidate the gate judges: the simplest one the validation hour cannot tell from the best.

The lowest validation loss alone picks whichever model one hour happened to favour. On these
data the differences between candidates are a few parts in ten thousand of the loss, and the pick
flipped between the MLP and the one-feature ridge when three rows of the first hour changed, while
the MLP then lost the gate and persistence served where the ridge would have passed. So the rule
is the one-standard-error rule (Breiman, Friedman, Olshen and Stone 1984; Hastie, Tibshirani and
Friedman 2009, 7.10): among the models, the simplest whose validation loss exceeds the best one's by
at most one standard error of the difference, that error from 5-minute blocks of data time
(``forecast_skill.time_blocks``: the 10 s labels of neighbouring rows overlap). Persistence is
picked only when it has the lowest validation loss outright, as before: simplicity is preferred
among the models, never imposed over them.

Simpler means fewer inputs; a ridge before an MLP on as many. Ties keep the candidates' order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from btcpred.batch.datasets import FeatureSet
from btcpred.batch.modeling import predict_return
from btcpred.common.forecast_skill import loss_test, time_blocks

PERSISTENCE = "persistence"


@dataclass(frozen=True, slots=True)
class Pick:
    kind: str
    reason: str  # empty when the pick is simply the lowest validation loss


def complexity(kind: str, features: tuple[str, ...]) -> tuple[int, int]:
    return (len(features), 0 if kind.startswith("ridge") else 1)


def pick_on_validation(fitted: dict, val: FeatureSet) -> Pick:
    """``fitted``: kind -> ``train.Candidate`` (model, features, validation MSE), in the candidates' order."""
    persistence_mse = float(np.mean(np.square(val.y))) if len(val) else float("inf")
    if not fitted:
        return Pick(PERSISTENCE, "")
    best = min(fitted, key=lambda kind: fitted[kind].val_mse)
    if persistence_mse <= fitted[best].val_mse:
        return Pick(PERSISTENCE, "")
    losses = {kind: np.square(val.y - predict_return(c.model, val.columns(c.features))) for kind, c in fitted.items()}
    blocks = time_blocks(val.ts_ms, val.venue)
    simplest_first = sorted(fitted, key=lambda kind: complexity(kind, fitted[kind].features))
    for kind in simplest_first:
        if kind == best or complexity(kind, fitted[kind].features) >= complexity(best, fitted[best].features):
            break
        test = loss_test(losses[kind] - losses[best], blocks)
        if np.isfinite(test.se) and test.mean_diff <= test.se:
            return Pick(
                kind, f"{best}'s lower validation loss is within one standard error ({test.mean_diff:.3g} <= {test.se:.3g})"
            )
    return Pick(best, "")
