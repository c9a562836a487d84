"""The simulated exchange's state: the book it serves and the trades it has printed.

It consumes captured events in order and answers what Binance would: the SBE
frames for each stream, the JSON bookTicker of the perpetual that leads the symbol
(where a perpetual's capture is replayed beside spot), REST depth snapshots consistent with the stream so far,
and aggregate trades. It also remembers its top-10 book at every update id so a
test can compare the pipeline's book with the exchange's at the same id.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass

from btcpred.adapters.loaders.base import CapturedEvent
from btcpred.udfs import sbe
from btcpred.udfs.events import (
    BestBidAskEvent,
    DepthDiffEvent,
    DepthSnapshotEvent,
    Level,
    MarketEvent,
    PerpQuoteEvent,
    TradesEvent,
    to_float,
)
from btcpred.udfs.order_book import OrderBook

TOP_HISTORY_LIMIT = 50_000
AGG_TRADE_HISTORY_LIMIT = 200_000


PERP_STREAM_PREFIX = "perp:"  # the futures endpoint's streams, apart from the SBE ones of the same name


def stream_name(event: MarketEvent) -> str:
    symbol = event.symbol.lower()
    if isinstance(event, PerpQuoteEvent):
        return f"{PERP_STREAM_PREFIX}{symbol}@bookTicker"
    if isinstance(event, TradesEvent):
        return f"{symbol}@trade"
    if isinstance(event, BestBidAskEvent):
        return f"{symbol}@bestBidAsk"
    if isinstance(event, DepthDiffEvent):
        return f"{symbol}@depth"
    return f"{symbol}@depth20"


@dataclass(frozen=True, slots=True)
class AggTrade:
    agg_id: int
    price_e8: int
    qty_e8: int
    first_trade_id: int
    last_trade_id: int
    time_ms: int
    is_buyer_maker: bool

    def to_json(self) -> dict:
        return {
            "a": self.agg_id,
            "p": f"{to_float(self.price_e8):.8f}",
            "q": f"{to_float(self.qty_e8):.8f}",
            "f": self.first_trade_id,
            "l": self.last_trade_id,
            "T": self.time_ms,
            "m": self.is_buyer_maker,
            "M": True,
        }


def _decimal(units: int) -> str:
    return f"{units // 100_000_000}.{units % 100_000_000:08d}"


def perp_book_ticker_json(event: PerpQuoteEvent, perp_symbol: str) -> str:
    """The USD-M futures bookTicker message (raw stream form) for a perpetual quote; prices as exact decimals."""
    ms = event.event_time_us // 1000
    return json.dumps(
        {
            "e": "bookTicker",
            "u": event.book_update_id,
            "s": perp_symbol,
            "b": _decimal(event.bid_price_e8),
            "B": _decimal(event.bid_qty_e8),
            "a": _decimal(event.ask_price_e8),
            "A": _decimal(event.ask_qty_e8),
            "T": ms,
            "E": ms,
        },
        separators=(",", ":"),
    )


class SimulatedExchange:
    def __init__(self, events: list[CapturedEvent]) -> None:
        snapshots = [c.event for c in events if isinstance(c.event, DepthSnapshotEvent)]
        if not snapshots:
            raise ValueError("capture has no REST depth snapshot: the exchange cannot serve a book")
        self.symbol = snapshots[0].symbol
        self.book = OrderBook.from_snapshot(snapshots[0])
        self.tops: OrderedDict[int, tuple[list[Level], list[Level]]] = OrderedDict()
        self._remember_top()
        self.agg_trades: list[AggTrade] = []
        self.last_event_time_us = 0
        self.perp_symbol = self.symbol  # the futures symbol its bookTicker messages name (USD-M: the same)

    def _remember_top(self) -> None:
        self.tops[self.book.last_update_id] = (self.book.top_bids(10), self.book.top_asks(10))
        while len(self.tops) > TOP_HISTORY_LIMIT:
            self.tops.popitem(last=False)

    def process(self, captured: CapturedEvent) -> tuple[str, bytes | str] | None:
        """Advance the exchange by one recorded event; returns the (stream, SBE frame) to publish,
        or for the perpetual's quote, its futures bookTicker JSON text."""
        event = captured.event
        if isinstance(event, DepthSnapshotEvent):
            return None  # the recorded REST answer, not a stream message
        if isinstance(event, PerpQuoteEvent):
            return stream_name(event), perp_book_ticker_json(event, self.perp_symbol)
        self.last_event_time_us = max(self.last_event_time_us, event.event_time_us)
        if isinstance(event, DepthDiffEvent) and event.last_update_id > self.book.last_update_id:
            self.book.apply_levels(event)
            self._remember_top()
        elif isinstance(event, TradesEvent):
            self._record_agg_trades(event)
        return stream_name(event), sbe.encode(event)

    def _record_agg_trades(self, event: TradesEvent) -> None:
        for t in event.trades:
            last = self.agg_trades[-1] if self.agg_trades else None
            time_ms = event.transact_time_us // 1000
            if last and last.price_e8 == t.price_e8 and last.is_buyer_maker == t.is_buyer_maker and last.time_ms == time_ms:
                self.agg_trades[-1] = AggTrade(
                    last.agg_id, last.price_e8, last.qty_e8 + t.qty_e8, last.first_trade_id, t.trade_id, time_ms, t.is_buyer_maker
                )
            else:
                agg_id = last.agg_id + 1 if last else 1
                self.agg_trades.append(AggTrade(agg_id, t.price_e8, t.qty_e8, t.trade_id, t.trade_id, time_ms, t.is_buyer_maker))
        if len(self.agg_trades) > AGG_TRADE_HISTORY_LIMIT:
            del self.agg_trades[: len(self.agg_trades) - AGG_TRADE_HISTORY_LIMIT]

    def depth_json(self, limit: int) -> dict:
        """``GET /api/v3/depth`` as Binance answers it."""
        fmt = lambda levels: [[f"{to_float(p):.8f}", f"{to_float(q):.8f}"] for p, q in levels]  # noqa: E731
        return {
            "lastUpdateId": self.book.last_update_id,
            "bids": fmt(self.book.top_bids(limit)),
            "asks": fmt(self.book.top_asks(limit)),
        }

    def agg_trades_json(self, from_id: int | None, start_ms: int | None, end_ms: int | None, limit: int) -> list[dict]:
        rows = self.agg_trades
        if from_id is not None:
            rows = [a for a in rows if a.agg_id >= from_id]
        if start_ms is not None:
            rows = [a for a in rows if a.time_ms >= start_ms]
        if end_ms is not None:
            rows = [a for a in rows if a.time_ms <= end_ms]
        rows = rows[:limit] if (from_id is not None or start_ms is not None) else rows[-limit:]
        return [a.to_json() for a in rows]

    def top_at(self, update_id: int) -> tuple[list[Level], list[Level]] | None:
        return self.tops.get(update_id)
