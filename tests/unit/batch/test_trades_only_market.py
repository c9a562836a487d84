"""A trades-only market through the loop: rows and labels by hand, and the real COIN-M day walked forward."""

import math
from pathlib import Path

import numpy as np
import pytest

from btcpred.batch import backtest, trade_rows
from btcpred.batch.report import by_volatility_regime
from btcpred.udfs.features import HORIZON_US, PREDICTION_STEP_US
from btcpred.udfs.trade_features import LONGEST_US, TRADE_FEATURE_NAMES, TradeTape
from tests.conftest import SHARED_DATA

S = 1_000_000
COINM_DAY = SHARED_DATA / "raw" / "data_vision"


def test_rows_start_with_full_context_and_label_the_last_trade_price_ten_seconds_on():
    """A tape written for the test (not market data): a trade every second, the price stepping up by 1."""
    tape = TradeTape()
    for i in range(400):
        tape.add(i * S, 100.0 + i, 1.0, i % 2 == 0)
    rows = trade_rows.rows_of(tape, "m")
    first = LONGEST_US  # the first trade is at 0: the first grid point with 300 s behind it
    assert rows.ts_ms[0] == first // 1000 and np.all(np.diff(rows.ts_ms) == PREDICTION_STEP_US // 1000)
    assert rows.ts_ms[-1] == 388_000  # the last grid point with a trade 10 s on (the tape ends at 399 s)
    assert rows.ts_ms[-1] * 1000 + HORIZON_US <= 399 * S < (rows.ts_ms[-1] + 2000) * 1000 + HORIZON_US
    assert rows.names == TRADE_FEATURE_NAMES
    # at 300 s the last trade is the 300th (price 400); 10 s on it is 410
    assert rows.mid[0] == 400.0 and rows.y[0] == pytest.approx(math.log(410 / 400))


@pytest.fixture(scope="module")
def coinm_day(tmp_path_factory):
    if not (COINM_DAY / "BTCUSD_PERP-aggTrades-2026-05-08.zip").exists():
        pytest.skip(f"the COIN-M day is not in {COINM_DAY}")
    return trade_rows.from_directory(COINM_DAY)


@pytest.mark.shared_data
def test_the_coinm_day_walked_forward_serves_skill_the_placebo_never_promotes_a_model(coinm_day):
    """The loop on the real day: the served R²_OS against persistence has a 95 % interval above 0, direction
    above 53 %, and at least 20 gate decisions; the same loop on labels moved 6 hours on promotes no model."""
    assert len(coinm_day) > 40_000 and set(coinm_day.venue) == {"binance.com-coinm-trades"}
    steps = backtest.backtest(coinm_day)
    scored, pred = backtest.served_predictions(coinm_day, steps)
    served = backtest.summary_of(scored, pred)
    assert served["r2_ci95"][0] > 0 and served["direction_accuracy"] > 0.53
    gated = [s for s in steps if "promoted" in s.decision or "kept" in s.decision]
    assert len(gated) >= 20
    placebo = backtest.backtest(backtest.placebo(coinm_day, 6))
    assert sum(backtest.promoted_a_model(s) for s in placebo) == 0
    regimes = by_volatility_regime(scored, pred)
    assert regimes["feature"] == "trade_vol_30s" and sum(regimes[k]["n"] for k in ("calm", "middle", "wild")) == len(scored)


def test_placebo_moves_each_label_by_whole_hours_within_its_market():
    from btcpred.batch.datasets import FeatureSet

    n = 3600  # two hours of 2 s rows
    data = FeatureSet(
        np.array(["a"] * n, dtype=object), np.arange(n) * 2000, np.zeros((n, 1)), np.arange(n, dtype=float), np.ones(n), ("x",)
    )
    moved = backtest.placebo(data, 1.0)
    assert moved.y[1800] == 0.0 and moved.y[0] == 1800.0  # one hour = 1,800 rows on
    assert sorted(moved.y) == sorted(data.y)  # every label kept, none invented


def test_a_trade_stamped_outside_its_files_day_is_refused_not_allowed_to_stall_the_tape():
    """One aggregate trade a day in the future would make every later trade of the file "out of
    order"; bounded to the file's UTC day, it alone is refused."""
    from btcpred.adapters.loaders.base import CapturedEvent
    from btcpred.adapters.loaders.data_vision import AggTradesFile
    from btcpred.udfs.events import TradeEntry, TradesEvent

    day = AggTradesFile(Path("BTCUSD_PERP-aggTrades-2026-05-08.zip"), "BTCUSD_PERP", "2026-05-08", "verified")
    lo, hi = day.day_bounds_us()
    assert (lo, hi - lo) == (1778198400 * 10**6, 86_400 * 10**6)

    def trade(t_us, trade_id):
        return CapturedEvent(t_us, TradesEvent("BTCUSD_PERP", t_us, t_us, (TradeEntry(trade_id, 100 * 10**8, 10**8, False),)))

    events = [trade(lo + 1_000_000, 1), trade(hi + 3_600_000_000, 2), trade(lo + 2_000_000, 3), trade(lo - 1, 4)]
    tape, refused = trade_rows.tape_of(events, day.day_bounds_us())
    assert list(tape.times) == [lo + 1_000_000, lo + 2_000_000] and refused == 2
    unbounded, refused = trade_rows.tape_of(events)
    assert list(unbounded.times) == [lo + 1_000_000, hi + 3_600_000_000] and refused == 2  # the later day's trade won
