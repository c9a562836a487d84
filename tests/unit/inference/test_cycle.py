import asyncio
import math

import pytest

from btcpred.inference.cadence import next_boundary_ms, run_aligned
from btcpred.inference.cycle import make_prediction
from btcpred.inference.hot_state import HotState
from btcpred.inference.models import PersistencePredictor

NOW_US = 1_800_000_000_000_000


def state(age_ms=100.0, book_valid="1.0", with_book=True, market_age_ms=None):
    feat = {
        "mid": "100.5",
        "book_valid": book_valid,
        "ts": "1723161255500000",
        "book_update_id": "42",
        "emitted_at_us": str(int(NOW_US - age_ms * 1000)),
    }
    if market_age_ms is not None:
        feat["market_wall_us"] = str(int(NOW_US - market_age_ms * 1000))
    book = {"best_bid": "100.0", "best_ask": "101.0"} if with_book else {}
    return HotState(feat, book, {}, False)


def predict(s, last_price=None):
    return make_prediction("BTCUSDT", s, 2000, NOW_US, PersistencePredictor(), 5000, last_price)


def test_fresh_features_give_a_persistence_prediction_with_provenance():
    p = predict(state())
    assert (p.source, p.model_version, p.current_price, p.predicted_price_10s, p.confidence) == (
        "redis",
        "persistence",
        100.5,
        100.5,
        0.5,
    )
    assert p.features_age_ms == 100.0
    assert p.feature_time_ms == 1723161255500 and p.book_update_id == 42


@pytest.mark.parametrize(
    "s, reason",
    [
        (state(age_ms=5001), "stale_features"),
        # written 100 ms ago by a job catching up after an outage, about a market 3 minutes old
        (state(age_ms=100, market_age_ms=180_000), "stale_market_data"),
        (state(book_valid="0.0"), "book_invalid"),
        (HotState({}, {}, {}, False), "no_features"),
    ],
)
def test_degraded_inputs_fall_back_without_error(s, reason):
    p = predict(s, last_price=99.0)
    assert p.source == "fallback" and p.fallback_reason == reason and p.confidence == 0.0
    assert p.predicted_price_10s == p.current_price


def test_price_comes_from_features_when_book_hash_missing_and_from_memory_when_all_missing():
    assert predict(state(with_book=False)).current_price == 100.5
    assert predict(HotState({}, {}, {}, False), last_price=99.0).current_price == 99.0
    assert predict(HotState({}, {}, {}, False)).current_price is None


def test_next_boundary_is_strictly_after_now():
    assert next_boundary_ms(0, 2000) == 2000
    assert next_boundary_ms(1999.9, 2000) == 2000
    assert next_boundary_ms(2000, 2000) == 4000


def test_aligned_loop_reports_missed_boundaries_when_a_cycle_overruns():
    clock = {"t": 10.5}
    seen, missed = [], []

    async def fake_sleep(delay):
        clock["t"] += max(delay, 0.0005)

    async def cycle(boundary, jitter):
        seen.append(boundary)
        if len(seen) == 2:
            clock["t"] += 4.5  # this cycle overran two boundaries
        if len(seen) == 4:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(run_aligned(2000, cycle, missed.append, clock=lambda: clock["t"], sleep=fake_sleep))
    assert seen == [12000, 14000, 20000, 22000]
    assert missed == [2]


def test_market_age_is_wall_clock_minus_the_features_market_time_on_our_clock():
    p = predict(state(age_ms=100, market_age_ms=700))
    assert p.source == "redis" and p.market_age_ms == 700.0 and p.features_age_ms == 100.0
    assert predict(state(market_age_ms=5000)).source == "redis"  # the limit itself still serves


class ProvenModel:
    """A model's surface for the cycle: a fixed 10 bp return, gate evidence on ``proven`` only."""

    version = "ridge-x"

    def __init__(self, proven: str) -> None:
        self.proven = proven

    def predict(self, s, base_price):
        return base_price * 1.001, 0.6

    def proven_on(self, market):
        return market == self.proven

    def interval(self, s, base_price, predicted_price, persistence, recalibration=None):
        """Half-width 1 USD, or the recalibrated quantile times a volatility scale of 1e-3 in log return."""
        coverage = 0.5 if persistence else 0.8
        if recalibration is None or not recalibration.ready:
            return predicted_price - 1.0, predicted_price + 1.0, coverage, 1e-3
        half = recalibration.quantile(0.0) * 1e-3
        return predicted_price * math.exp(-half), predicted_price * math.exp(half), coverage, 1e-3


def test_a_model_serves_only_the_market_it_is_proven_on_and_runs_in_shadow_elsewhere():
    s = state()
    s.book["best_bid"], s.book["best_ask"] = "100.9", "101.1"  # the book moved on since the features (mid 100.5)
    home = make_prediction("BTCUSDT", s, 2000, NOW_US, ProvenModel("binance.us"), 5000, None, "binance.us")
    assert (home.source, home.model_version, home.challengers) == ("redis", "ridge-x", [])
    # the return applies to the mid it was predicted from, at the features' exchange time
    assert home.base_price == 100.5 and home.predicted_price_10s == pytest.approx(100.5 * 1.001)
    assert home.current_price == 101.0 and home.target_time_ms == home.feature_time_ms + 10_000
    assert (home.price_low_10s, home.price_high_10s, home.interval_coverage) == pytest.approx(
        (100.5 * 1.001 - 1, 100.5 * 1.001 + 1, 0.8)
    )
    away = make_prediction("BTCUSDT", s, 2000, NOW_US, ProvenModel("binance.us"), 5000, None, "binance.com-spot")
    assert (away.source, away.model_version, away.predicted_price_10s, away.confidence) == ("redis", "persistence", 100.5, 0.5)
    [shadow] = away.challengers
    assert shadow.model_version == "ridge-x" and shadow.predicted_price_10s == pytest.approx(100.5 * 1.001)
    assert shadow.why_not_served == "unproven_on_market:binance.com-spot" and away.market == "binance.com-spot"
    # persistence serving in the model's place states persistence's interval, around the base price
    assert (away.price_low_10s, away.price_high_10s, away.interval_coverage) == (99.5, 101.5, 0.5)
    # no shadow on a cycle that falls back anyway
    stale = make_prediction("BTCUSDT", state(age_ms=9000), 2000, NOW_US, ProvenModel("x"), 5000, None, "binance.com-spot")
    assert stale.source == "fallback" and stale.challengers == [] and stale.price_low_10s is None


def test_the_registrys_other_candidates_run_in_shadow_beside_a_proven_champion():
    champion, other = ProvenModel("binance.us"), ProvenModel("binance.com-spot")
    other.version = "mlp-y"
    p = make_prediction("BTCUSDT", state(), 2000, NOW_US, champion, 5000, None, "binance.us", (champion, other))
    assert p.model_version == "ridge-x" and [c.model_version for c in p.challengers] == ["mlp-y"]  # never itself
    assert p.challengers[0].why_not_served == "unproven_on_market:binance.us"
    other.proven = "binance.us"
    assert (
        make_prediction("BTCUSDT", state(), 2000, NOW_US, champion, 5000, None, "binance.us", (other,))
        .challengers[0]
        .why_not_served
        == "not promoted"
    )


def test_a_shadow_that_breaks_costs_the_champion_nothing():
    class Broken(ProvenModel):
        version = "broken"

        def predict(self, s, base_price):
            raise RuntimeError("onnxruntime: bad graph")

    p = make_prediction("BTCUSDT", state(), 2000, NOW_US, ProvenModel("m"), 5000, None, "m", (Broken("m"),))
    assert (p.source, p.model_version) == ("redis", "ridge-x") and p.predicted_price_10s == pytest.approx(100.5 * 1.001)
    [shadow] = p.challengers
    assert shadow.predicted_price_10s is None and shadow.why_not_served == "not promoted; failed:RuntimeError"


def test_the_interval_and_the_confidence_recalibrate_on_the_markets_realized_rows():
    """With a window of realized rows, the stated interval is the window's quantile times the scale, and a
    model's confidence is the hit rate of rows whose scaled move was alike; persistence keeps 0.5."""
    from btcpred.common.recalibration import Recalibration

    window = Recalibration(coverage=0.8, window=100, min_rows=100)
    for i in range(100):  # every row predicted +1 scale; 75 went further up (scaled errors (i + 1) / 100 <= 1),
        # 25 went down (scaled errors 1 + (i + 1) / 100: 1.01, 1.05, 1.09, ...)
        window.add(realized=(1e-3 + (i + 1) * 1e-5) if i % 4 else -(i + 1) * 1e-5, predicted=1e-3, scale=1e-3)
    home = make_prediction(
        "BTCUSDT", state(), 2000, NOW_US, ProvenModel("binance.us"), 5000, None, "binance.us", recalibration=window
    )
    q = window.quantile(0.0)  # ceil(101 * 0.8) = 81st smallest scaled error: the 6th of the down rows
    assert q == pytest.approx(1.21)
    assert home.price_high_10s == pytest.approx(home.predicted_price_10s * math.exp(q * 1e-3))
    assert home.volatility_scale == 1e-3
    # every row in the window predicted a move of one scale: one bin, hit rate 3 in 4, shrunk towards the same 3 in 4
    assert home.confidence == pytest.approx(0.75)  # not the artifact's 0.6
    away = make_prediction(
        "BTCUSDT", state(), 2000, NOW_US, ProvenModel("binance.us"), 5000, None, "binance.com-spot", recalibration=window
    )
    assert away.model_version == "persistence" and away.confidence == 0.5
