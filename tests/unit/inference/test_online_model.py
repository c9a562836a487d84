"""The online ridge as a challenger: it learns from the labels of the vectors it predicted from, and checkpoints."""

import math

import numpy as np
import pytest

from btcpred.inference.hot_state import HotState
from btcpred.inference.models import FeatureUnavailable
from btcpred.inference.online_model import CHECKPOINT_EVERY, ONLINE_FEATURES, REFUSED_CHECKPOINTS, OnlineRidgePredictor

pytestmark = pytest.mark.unit


def state(ts_ms: int, flow: float) -> HotState:
    features = {name: "0.0" for name in ONLINE_FEATURES} | {"signed_flow_5s": str(flow), "ts": str(ts_ms * 1000)}
    return HotState(features, {}, {}, False)


def test_it_learns_the_flow_from_realized_labels_and_asks_for_a_checkpoint_every_minute():
    rng = np.random.default_rng(5)
    online = OnlineRidgePredictor()
    checkpoints = 0
    for i in range(600):
        flow = float(rng.uniform(-1, 1))
        online.predict(state(i * 2000, flow), 100.0)
        checkpoints += online.learn(i * 2000, 2e-4 * flow + float(rng.normal(0, 5e-5)))
        if checkpoints and online.learned_since_checkpoint >= CHECKPOINT_EVERY:
            online.checkpoint()
    price, confidence = online.predict(state(10**9, 1.0), 100.0)
    # 2 bp per unit of flow, shrunk by the ridge prior (100, decayed to ~55 after 600 rows, against ~450
    # effective rows under forgetting 0.999): about 2 * 450 / 505 = 1.78 bp
    assert 1.6e-4 < math.log(price / 100.0) < 1.95e-4 and confidence == 0.5
    assert online.model.rows == 600 and not online.proven_on("binance.com-spot")
    assert online.learn(123, 1e-4) is False  # a label for a vector it never predicted from teaches nothing


def test_a_missing_feature_is_a_fallback_and_a_bad_checkpoint_starts_afresh():
    online = OnlineRidgePredictor()
    with pytest.raises(FeatureUnavailable):
        online.predict(HotState({"ts": "1"}, {}, {}, False), 100.0)
    refused = REFUSED_CHECKPOINTS._value.get()
    online.restore('{"features": ["something else"]}')
    assert online.model.rows == 0  # refused, logged, counted; it learns again
    assert REFUSED_CHECKPOINTS._value.get() == refused + 1
    saved = OnlineRidgePredictor()
    for i in range(40):
        saved.predict(state(i * 2000, 0.5), 100.0)
        saved.learn(i * 2000, 1e-4)
    online.restore(saved.checkpoint())
    assert online.model.rows == 40 and np.array_equal(online.model.w, saved.model.w)
