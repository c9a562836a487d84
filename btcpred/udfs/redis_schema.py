"""Redis hot-state keys, field names and TTLs: the contract between job and inference.

Field names follow the seed schema exactly; extra fields are additive
(``last_update_id`` on ``ob:``, ``book_valid`` and provenance on ``feat:``).
Values are decimal strings; floats use ``repr`` so they round-trip exactly.
"""

from __future__ import annotations

from btcpred.udfs.events import to_float
from btcpred.udfs.features import Snapshot
from btcpred.udfs.order_book import OrderBook
from btcpred.udfs.trade_window import WindowStats

BOOK_DEPTH = 10
TRADE_TTL_S = 300
FEATURE_TTL_S = 120
# Stream bounds (entries kept, trimmed approximately): the one place each is set
FEATURE_HISTORY_MAXLEN = 20_000  # feathist: 20,000 boundaries of 500 ms (~2.8 h)
EVENT_STREAM_MAXLEN = 10_000  # gaps:, late:, drift:, reanchor log, pred:contest:
DEAD_LETTER_MAXLEN = 100_000  # deadletter:
PREDICTION_STREAM_MAXLEN = 50_000  # pred: (27.8 h of 2 s cycles)
ONLINE_CHECKPOINTS_KEPT = 10  # pred:online: (the newest restores)


def tag(symbol: str) -> str:
    """``{BTCUSDT}``: a Redis Cluster hash tag. Every key of a symbol lands in one slot, so the
    writer's MULTI/EXEC and Lua swap (several keys of one symbol) work on a cluster unchanged."""
    return "{" + symbol + "}"


def ob_key(symbol: str) -> str:
    return f"ob:{tag(symbol)}"


def trade_key(symbol: str, window: str) -> str:
    return f"tr:{tag(symbol)}:{window}"


def next_key(key: str) -> str:
    """Where the next version of a hash is built before it is RENAMEd over ``key``."""
    return f"{key}:next"


def feat_key(symbol: str) -> str:
    return f"feat:{tag(symbol)}"


def feat_history_key(symbol: str) -> str:
    """Redis stream of every feature vector written (bounded), for replay scoring and tests."""
    return f"feathist:{tag(symbol)}"


def reanchor_key(symbol: str) -> str:
    return f"reanchor:{tag(symbol)}"


def drift_stream_key(symbol: str) -> str:
    """Stream of drift checks: levels of the live book that differed from a snapshot at the same update id."""
    return f"drift:{tag(symbol)}"


def reanchor_log_key(symbol: str) -> str:
    """Stream of finished re-anchors (reason, snapshot id, duration, attempts, outcome)."""
    return f"reanchors:{tag(symbol)}"


def prediction_stream_key(symbol: str) -> str:
    return f"pred:{tag(symbol)}"


def online_model_stream_key(symbol: str) -> str:
    """Checkpoints of the online ridge's weights (JSON), newest last."""
    return f"pred:online:{tag(symbol)}"


def contest_stream_key(symbol: str) -> str:
    """The online contest's decisions (promotions, demotions) on this symbol's market, in order."""
    return f"pred:contest:{tag(symbol)}"


def dead_letter_stream_key() -> str:
    return "dlq:hotpath"


def late_stream_key(symbol: str) -> str:
    return f"late:{tag(symbol)}"


def gap_stream_key(symbol: str) -> str:
    return f"gaps:{tag(symbol)}"


def _num(value: float) -> str:
    return repr(float(value))


def ob_fields(book: OrderBook, event_time_us: int, valid: bool = True) -> dict[str, str]:
    """Top levels of the book; ``book_valid`` is 0 from a sequence gap until the re-anchor lands."""
    bids = book.top_bids(BOOK_DEPTH)
    asks = book.top_asks(BOOK_DEPTH)
    fields: dict[str, str] = {
        "ts_us": str(event_time_us),
        "last_update_id": str(book.last_update_id),
        "book_valid": "1" if valid else "0",
    }
    if bids and asks:
        best_bid, best_ask = to_float(bids[0][0]), to_float(asks[0][0])
        fields.update(best_bid=_num(best_bid), best_ask=_num(best_ask), spread=_num(best_ask - best_bid))
    for side, levels in (("bid", bids), ("ask", asks)):
        for i in range(BOOK_DEPTH):
            price, qty = levels[i] if i < len(levels) else (0, 0)
            fields[f"{side}{i + 1}_p"] = _num(to_float(price))
            fields[f"{side}{i + 1}_q"] = _num(to_float(qty))
    return fields


def trade_fields(stats: WindowStats) -> dict[str, str]:
    return {
        "count": str(stats.count),
        "vol": _num(stats.vol),
        "signed_vol": _num(stats.signed_vol),
        "vwap_minus_mid": _num(stats.vwap_minus_mid),
        "last_ts_us": str(stats.last_ts_us),
    }


def feat_fields(snapshot: Snapshot, emitted_at_us: int, market_wall_us: int | None = None) -> dict[str, str]:
    """``ts`` is the exchange time (µs) the features describe; ``emitted_at_us`` the wall clock when
    written; ``market_wall_us`` that exchange time on our clock (``ts`` plus the observed receipt lag),
    absent before any event carried a receipt: serving's freshness is measured from it."""
    fields = {name: _num(value) for name, value in snapshot.features.items() if name != "book_update_id"}
    fields["book_update_id"] = str(int(snapshot.features["book_update_id"]))
    fields["ts"] = str(snapshot.time_us)
    fields["emitted_at_us"] = str(emitted_at_us)
    if market_wall_us is not None:
        fields["market_wall_us"] = str(market_wall_us)
    return fields
