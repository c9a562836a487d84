"""The one rule set a market event must pass before anything applies it.

A frame can be well formed (the SBE decoder checks structure and exponents) and still carry
values that no exchange sends: a price of zero, a size below zero, a value that no longer fits
int64 once scaled to e8 units, a crossed quote, an event time hours ahead of when it arrived.
Applied, such a value crash-looped the job (``math.log`` of a mid <= 0, ``struct.error``
re-encoding a price past int64) or damaged keyed state for good (one far-future event time
moved every boundary ahead). Every edge runs these same rules (the ingestor, the job's keyed
operator, the REST snapshot, the perpetual's reader, the batch replays): an event that fails
becomes a dead letter with the reason returned here, and changes nothing.

| rule | events | why |
|---|---|---|
| price > 0 | every price (trades, quotes, levels) | features take ``log`` of mids and divide by them |
| quantity >= 0; trade quantity > 0 | levels and quotes; trades | 0 removes a level; a trade of nothing is not one |
| value <= int64 max in e8 units | every price and quantity | state and frames hold them as int64 |
| bid < ask | quotes, a snapshot's best levels | a crossed top is not a market |
| first update id <= last, ids >= 0 | diffs, snapshots, quotes, trades | sequencing reads them |
| event time >= 0, at most ``max_lead_us`` ahead of receipt | all but REST snapshots (time 0) | the watermark follows the newest event time |

Cost: a few comparisons per quote, one pass over a diff's levels (``bench/job_compute.py``).
"""

from __future__ import annotations

from btcpred.udfs.events import (
    BestBidAskEvent,
    DepthDiffEvent,
    DepthSnapshotEvent,
    Level,
    MarketEvent,
    PerpQuoteEvent,
    TradesEvent,
)

INT64_MAX = 2**63 - 1
DEFAULT_MAX_LEAD_US = 10_000_000  # exchange clock ahead of ours: NTP keeps both within ~1 s; replays are behind


def _levels_problem(levels: tuple[Level, ...], side: str) -> str | None:
    for price, qty in levels:
        if not 0 < price <= INT64_MAX:
            return f"{side} price {price} e8 not in (0, int64]"
        if not 0 <= qty <= INT64_MAX:
            return f"{side} quantity {qty} e8 at {price} not in [0, int64]"
    return None


def quote_problem(e: BestBidAskEvent | PerpQuoteEvent) -> str | None:
    if not (0 < e.bid_price_e8 <= INT64_MAX and 0 < e.ask_price_e8 <= INT64_MAX):
        return f"quote prices {e.bid_price_e8}/{e.ask_price_e8} e8 not in (0, int64]"
    if not (0 <= e.bid_qty_e8 <= INT64_MAX and 0 <= e.ask_qty_e8 <= INT64_MAX):
        return f"quote quantities {e.bid_qty_e8}/{e.ask_qty_e8} e8 not in [0, int64]"
    if e.bid_price_e8 >= e.ask_price_e8:
        return f"crossed quote: bid {e.bid_price_e8} >= ask {e.ask_price_e8}"
    if not 0 <= e.book_update_id <= INT64_MAX:
        return f"book update id {e.book_update_id} not in [0, int64]"
    return None


def quote_passes(e: BestBidAskEvent | PerpQuoteEvent, receipt_time_us: int | None, max_lead_us: int) -> bool:
    """``quote_problem`` and ``time_problem`` of a quote as one chained comparison: quotes are most of
    the stream, and building the reason is only needed for the rare one that fails."""
    t = e.event_time_us
    return (
        0 < e.bid_price_e8 < e.ask_price_e8 <= INT64_MAX
        and 0 <= e.bid_qty_e8 <= INT64_MAX
        and 0 <= e.ask_qty_e8 <= INT64_MAX
        and 0 <= e.book_update_id <= INT64_MAX
        and 0 <= t <= INT64_MAX
        and (not receipt_time_us or not t or t - receipt_time_us <= max_lead_us)
    )


def _trades_problem(e: TradesEvent) -> str | None:
    if not e.trades:
        return "a trades event without trades"
    for t in e.trades:
        if not 0 < t.price_e8 <= INT64_MAX:
            return f"trade {t.trade_id} price {t.price_e8} e8 not in (0, int64]"
        if not 0 < t.qty_e8 <= INT64_MAX:
            return f"trade {t.trade_id} quantity {t.qty_e8} e8 not in (0, int64]"
        if not 0 <= t.trade_id <= INT64_MAX:
            return f"trade id {t.trade_id} not in [0, int64]"
    return None


def _book_problem(e: DepthDiffEvent | DepthSnapshotEvent) -> str | None:
    problem = _levels_problem(e.bids, "bid") or _levels_problem(e.asks, "ask")
    if problem:
        return problem
    if isinstance(e, DepthDiffEvent):
        if not 0 <= e.first_update_id <= e.last_update_id <= INT64_MAX:
            return f"update ids {e.first_update_id}..{e.last_update_id} not ordered in [0, int64]"
        return None
    if not 0 <= e.book_update_id <= INT64_MAX:
        return f"book update id {e.book_update_id} not in [0, int64]"
    best_bid = max((p for p, q in e.bids if q), default=None)
    best_ask = min((p for p, q in e.asks if q), default=None)
    if best_bid is not None and best_ask is not None and best_bid >= best_ask:
        return f"crossed snapshot: best bid {best_bid} >= best ask {best_ask}"
    return None


def value_problem(event: MarketEvent) -> str | None:
    """Why ``event``'s values cannot be applied, or None when they pass every rule."""
    kind = type(event)
    if kind is BestBidAskEvent or kind is PerpQuoteEvent:
        return quote_problem(event)  # type: ignore[arg-type]
    if kind is DepthDiffEvent or kind is DepthSnapshotEvent:
        return _book_problem(event)  # type: ignore[arg-type]
    if kind is TradesEvent:
        return _trades_problem(event)  # type: ignore[arg-type]
    return f"not a market event: {kind.__name__}"


def _time_reason(t: int, receipt_time_us: int | None, max_lead_us: int) -> str | None:
    if not 0 <= t <= INT64_MAX:
        return f"event time {t} µs not in [0, int64]"
    if receipt_time_us and t and t - receipt_time_us > max_lead_us:
        return f"event time {t} µs is {(t - receipt_time_us) / 1e6:.3f} s ahead of its receipt (limit {max_lead_us / 1e6:g} s)"
    return None


def time_problem(event: MarketEvent, receipt_time_us: int | None, max_lead_us: int = DEFAULT_MAX_LEAD_US) -> str | None:
    """Why ``event``'s times cannot be trusted: negative, or further ahead of its receipt than the
    clocks can disagree. Without a receipt time (a batch replay of a file) only the sign is checked.
    REST snapshots carry time 0 and pass."""
    reason = _time_reason(event.event_time_us, receipt_time_us, max_lead_us)
    if reason is None and type(event) is TradesEvent:
        reason = _time_reason(event.transact_time_us, receipt_time_us, max_lead_us)  # type: ignore[union-attr]
    return reason


def problem(event: MarketEvent, receipt_time_us: int | None = None, max_lead_us: int = DEFAULT_MAX_LEAD_US) -> str | None:
    """Every rule at once: the reason ``event`` must be dead-lettered, or None."""
    return value_problem(event) or time_problem(event, receipt_time_us, max_lead_us)
