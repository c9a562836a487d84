"""The online ridge as a challenger: predicts from ``feat:``, learns from each realized label.

It is never proven by the gate (it has no artifact and no archive fit): it runs in shadow on the
market the service serves, scored like every challenger, and serves there only if the online
contest promotes it (``btcpred.inference.contest``). Its weights are checkpointed every
``CHECKPOINT_EVERY`` learned rows to ``pred:online:{symbol}`` as JSON (the inference user's one
kind of write is an append) and read back at start: a restart does not forget the market.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict

import numpy as np
from prometheus_client import Counter

from btcpred.common.online_ridge import OnlineRidge
from btcpred.common.recalibration import Recalibration
from btcpred.inference.hot_state import HotState
from btcpred.inference.models import FeatureUnavailable, Interval

log = logging.getLogger("inference.online")
REFUSED_CHECKPOINTS = Counter(
    "inference_online_checkpoints_refused_total", "Online ridge checkpoints read back that did not parse or fit (started afresh)"
)

# scale-free inputs every binance.com feature vector carries: book imbalance, order flow, trade flow, returns
ONLINE_FEATURES = ("depth_imbalance_1", "ofi_norm_1s", "ofi_norm_5s", "signed_flow_1s", "signed_flow_5s", "ret_1s", "ret_5s")
VERSION = "online-ridge"
CHECKPOINT_EVERY = 30  # learned rows (a minute of 2 s predictions)
REMEMBERED = 64  # feature vectors kept until their label is known (10 s at 2 s is 5; replays run faster)


class OnlineRidgePredictor:
    version = VERSION

    def __init__(self, forgetting: float = 0.999) -> None:
        self.model = OnlineRidge(ONLINE_FEATURES, forgetting=forgetting)
        self.inputs: OrderedDict[int, np.ndarray] = OrderedDict()  # feature time ms -> the inputs predicted from
        self.learned_since_checkpoint = 0

    def _inputs(self, features: dict[str, str]) -> np.ndarray:
        x = np.empty(len(ONLINE_FEATURES))
        for i, name in enumerate(ONLINE_FEATURES):
            raw = features.get(name)
            if raw is None:
                raise FeatureUnavailable(name)
            x[i] = float(raw)
        return x

    def predict(self, state: HotState, current_price: float) -> tuple[float, float]:
        x = self._inputs(state.features)
        ts = state.features.get("ts")
        if ts:
            self.inputs[int(ts) // 1000] = x
            while len(self.inputs) > REMEMBERED:
                self.inputs.popitem(last=False)
        return current_price * math.exp(self.model.predict(x)), 0.5  # no calibration: a coin's confidence

    def learn(self, feature_time_ms: int, realized: float) -> bool:
        """The label of a feature vector it predicted from; True when a checkpoint is due."""
        x = self.inputs.pop(feature_time_ms, None)
        if x is None or not self.model.update(x, realized):
            return False
        self.learned_since_checkpoint += 1
        return self.learned_since_checkpoint >= CHECKPOINT_EVERY

    def proven_on(self, market: str) -> bool:
        return False  # no gate evidence anywhere: only the online contest can make it serve

    def interval(
        self,
        state: HotState,
        base_price: float,
        predicted_price: float,
        persistence: bool,
        recalibration: Recalibration | None = None,
    ) -> Interval | None:
        return None  # no held-out errors to size one from

    def checkpoint(self) -> str:
        self.learned_since_checkpoint = 0
        return self.model.to_json()

    def restore(self, text: str) -> None:
        """A checkpoint read back; a bad one is logged and the model starts afresh (it learns again)."""
        try:
            self.model = OnlineRidge.from_json(text, ONLINE_FEATURES)
        except (ValueError, KeyError, TypeError) as exc:
            REFUSED_CHECKPOINTS.inc()
            log.warning("online ridge checkpoint refused, starting afresh: %s", exc)
