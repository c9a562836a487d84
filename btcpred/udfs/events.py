"""Normalized market events, the one vocabulary every component speaks.

Prices and quantities are integers in units of 1e-8 (``*_e8``): Binance quotes
BTCUSDT with at most 8 decimals, so integer units keep the order book's price
keys exact and make equality checks between the job and the exchange simple.
Times are integer microseconds since the Unix epoch (exchange clock).
"""

from __future__ import annotations

from dataclasses import dataclass

from btcpred.udfs.pickling import fast_state

SCALE = 100_000_000  # units per 1.0 of price or quantity


def to_float(units: int) -> float:
    """Exact-as-possible float of an e8 value (IEEE division is correctly rounded)."""
    return units / SCALE


@fast_state
@dataclass(frozen=True, slots=True)
class TradeEntry:
    trade_id: int
    price_e8: int
    qty_e8: int
    is_buyer_maker: bool


@fast_state
@dataclass(frozen=True, slots=True)
class TradesEvent:
    """SBE TradesStreamEvent: one or more trades of one matching cycle."""

    symbol: str
    event_time_us: int
    transact_time_us: int
    trades: tuple[TradeEntry, ...]


@fast_state
@dataclass(frozen=True, slots=True)
class BestBidAskEvent:
    symbol: str
    event_time_us: int
    book_update_id: int
    bid_price_e8: int
    bid_qty_e8: int
    ask_price_e8: int
    ask_qty_e8: int


@fast_state
@dataclass(frozen=True, slots=True)
class PerpQuoteEvent:
    """The best bid/ask of the perpetual future that leads ``symbol`` (the spot symbol it is keyed
    to, not the future's own name: USD-M's BTCUSDT and spot's BTCUSDT share one). Its own type, not
    a BestBidAskEvent: the spot quote history must never take a perpetual's top for its own."""

    symbol: str
    event_time_us: int
    book_update_id: int
    bid_price_e8: int
    bid_qty_e8: int
    ask_price_e8: int
    ask_qty_e8: int

    @classmethod
    def leading(cls, quote: BestBidAskEvent, symbol: str) -> PerpQuoteEvent:
        """A perpetual's best bid/ask update as the quote leading spot ``symbol``."""
        return cls(
            symbol,
            quote.event_time_us,
            quote.book_update_id,
            quote.bid_price_e8,
            quote.bid_qty_e8,
            quote.ask_price_e8,
            quote.ask_qty_e8,
        )


Level = tuple[int, int]  # (price_e8, qty_e8)


@fast_state
@dataclass(frozen=True, slots=True)
class DepthSnapshotEvent:
    """A full or partial book at ``book_update_id`` (SBE 10002, also used for REST snapshots)."""

    symbol: str
    event_time_us: int
    book_update_id: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


@fast_state
@dataclass(frozen=True, slots=True)
class DepthDiffEvent:
    """Changes between update ids ``first_update_id`` and ``last_update_id``; qty 0 removes a level."""

    symbol: str
    event_time_us: int
    first_update_id: int
    last_update_id: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


MarketEvent = TradesEvent | BestBidAskEvent | PerpQuoteEvent | DepthSnapshotEvent | DepthDiffEvent
