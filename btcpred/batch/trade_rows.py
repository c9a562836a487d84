"""Labelled rows of a trades-only market (data.binance.vision aggTrades): the tape's features every 2 s.

The label is the log return of the last trade's price 10 s later (the price in force then; no
trade in between is no change), the base price the last trade's at the row: the same definition
scoring and the reports use for this market. Rows start once the tape reaches back the longest
look-back (5 minutes).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from btcpred.adapters.loaders import data_vision
from btcpred.adapters.loaders.base import CapturedEvent
from btcpred.batch.datasets import FeatureSet
from btcpred.udfs.events import TradesEvent, to_float
from btcpred.udfs.features import HORIZON_US, PREDICTION_STEP_US
from btcpred.udfs.trade_features import LONGEST_US, TRADE_FEATURE_NAMES, TradeTape, trade_snapshot

log = logging.getLogger(__name__)


def tape_of(events: Iterable[CapturedEvent], within_us: tuple[int, int] | None = None) -> tuple[TradeTape, int]:
    """Every trade in transaction order on one tape; and how many were refused (out of order, no price,
    or stamped outside ``within_us``, the file's own day)."""
    tape, refused = TradeTape(), 0
    lo, hi = within_us if within_us is not None else (-(2**63), 2**63)
    for captured in events:
        event = captured.event
        if not isinstance(event, TradesEvent):
            continue
        for t in event.trades:
            inside = lo <= event.transact_time_us < hi
            if not inside or not tape.add(event.transact_time_us, to_float(t.price_e8), to_float(t.qty_e8), not t.is_buyer_maker):
                refused += 1
    return tape, refused


def rows_of(tape: TradeTape, venue: str) -> FeatureSet:
    """A row every ``PREDICTION_STEP_US`` on the grid, from the first with full context to the last with a label."""
    if not tape.times:
        return FeatureSet(
            np.array([], dtype=object),
            np.zeros(0, np.int64),
            np.zeros((0, len(TRADE_FEATURE_NAMES))),
            np.zeros(0),
            np.zeros(0),
            TRADE_FEATURE_NAMES,
        )
    step = PREDICTION_STEP_US
    first = -(-(tape.times[0] + LONGEST_US) // step) * step
    last = tape.times[-1] - HORIZON_US
    ts, X, y, base = [], [], [], []
    for t in range(first, last + 1, step):
        snap = trade_snapshot(t, tape)
        later = tape.price_at(t + HORIZON_US)
        if snap is None or later is None:
            continue
        ts.append(t // 1000)
        X.append([snap.features[n] for n in TRADE_FEATURE_NAMES])
        y.append(math.log(later / snap.price))
        base.append(snap.price)
    return FeatureSet(
        np.array([venue] * len(ts), dtype=object),
        np.array(ts, dtype=np.int64),
        np.array(X, dtype=np.float64).reshape(len(ts), len(TRADE_FEATURE_NAMES)),
        np.array(y),
        np.array(base),
        TRADE_FEATURE_NAMES,
    )


def trades_venue(symbol: str) -> str:
    """The market a data.binance.vision symbol names, marked as known by its trades only."""
    market = "coinm" if symbol.endswith("_PERP") else "spot"  # USD-M files carry plain symbols like spot's
    return f"binance.com-{market}-trades"


def from_directory(data_dir: Path) -> FeatureSet:
    """Rows of every aggTrades file under ``data_dir`` (one market each), concatenated."""
    sets = []
    for path in sorted(data_dir.rglob("*-aggTrades-*.zip")):
        trades = data_vision.identify(path)  # checksum-verified, or refused with the reason
        tape, refused = tape_of(trades.events(), trades.day_bounds_us())
        rows = rows_of(tape, trades_venue(trades.symbol))
        log.info("%s: %d trades (%d refused), %d rows", trades.describe(), len(tape.times), refused, len(rows))
        sets.append(rows)
    if not sets:
        return rows_of(TradeTape(), "")
    return FeatureSet(
        np.concatenate([s.venue for s in sets]),
        np.concatenate([s.ts_ms for s in sets]),
        np.vstack([s.X for s in sets]),
        np.concatenate([s.y for s in sets]),
        np.concatenate([s.mid for s in sets]),
        TRADE_FEATURE_NAMES,
    )
