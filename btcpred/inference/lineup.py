"""Who answers this market: the registry's production model and challengers, as the online contest ruled.

The registry says which model is in production and which run beside it; the gate's evidence
(``proven_markets``) says where each may serve. The service's always-valid contest
(``btcpred.inference.contest.OnlineContest``) adds evidence of its own on the market it serves:
a challenger it promoted serves there as champion, a champion it demoted is replaced by
persistence and runs in shadow. Its decisions are in ``pred:contest:`` and survive a restart.
"""

from __future__ import annotations

from btcpred.common.recalibration import Recalibration
from btcpred.inference.hot_state import HotState
from btcpred.inference.models import Interval, Predictor


class RuledOnline:
    """A predictor whose standing on ``market`` the online contest decided; elsewhere its own evidence holds."""

    def __init__(self, inner: Predictor, market: str, proven: bool) -> None:
        self.inner = inner
        self.market = market
        self.proven = proven
        self.version = inner.version

    def predict(self, state: HotState, current_price: float) -> tuple[float, float]:
        return self.inner.predict(state, current_price)

    def proven_on(self, market: str) -> bool:
        return self.proven if market == self.market else self.inner.proven_on(market)

    def interval(
        self,
        state: HotState,
        base_price: float,
        predicted_price: float,
        persistence: bool,
        recalibration: Recalibration | None = None,
    ) -> Interval | None:
        return self.inner.interval(state, base_price, predicted_price, persistence, recalibration)


def lineup(
    production: Predictor | None, challengers: tuple[Predictor, ...], verdicts: dict[str, str], market: str
) -> tuple[Predictor | None, tuple[Predictor, ...]]:
    """(the predictor ``make_prediction`` serves if it is proven here, the ones it runs in shadow).

    ``verdicts``: model version -> the contest's last action on this market ("promote" | "demote"),
    oldest first. The newest promotion among the loaded models is champion; a demoted one never is.
    """
    everyone = ([production] if production is not None else []) + [c for c in challengers if c is not production]
    loaded = {p.version: p for p in everyone}
    promoted = [v for v, action in verdicts.items() if action == "promote" and v in loaded]
    champion = loaded[promoted[-1]] if promoted else production
    if champion is None:
        return None, tuple(everyone)
    action = verdicts.get(champion.version)
    ruled: Predictor = RuledOnline(champion, market, proven=action == "promote") if action else champion
    return ruled, tuple(p for p in everyone if p is not champion)
