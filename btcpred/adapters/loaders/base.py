"""The one interface every capture format implements."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from btcpred.udfs.events import BestBidAskEvent, MarketEvent, PerpQuoteEvent


@dataclass(frozen=True, slots=True)
class CapturedEvent:
    """An event as recorded: the collector's receipt time (µs, its own clock) and the event."""

    receipt_time_us: int
    event: MarketEvent


def merge_perp_quotes(spot: Iterable[CapturedEvent], perp: Iterable[CapturedEvent], symbol: str) -> Iterator[CapturedEvent]:
    """A spot capture with a perpetual capture's best bid/ask updates merged in by the collector's
    receipt time (captures recorded side by side), as PerpQuoteEvents leading ``symbol``; each
    stream keeps its own order, spot first on equal receipt times."""
    quotes = (
        CapturedEvent(c.receipt_time_us, PerpQuoteEvent.leading(c.event, symbol))
        for c in perp
        if type(c.event) is BestBidAskEvent
    )
    return heapq.merge(spot, quotes, key=lambda c: c.receipt_time_us)


class CaptureLoader(Protocol):
    def events(self) -> Iterator[CapturedEvent]: ...


def parse_units(text: str) -> int:
    """Exact e8 units of a decimal string such as "61837.63000000" (no float round trip)."""
    negative = text.startswith("-")
    whole, _, frac = text.lstrip("+-").partition(".")
    if len(frac) > 8 and frac[8:].strip("0"):
        raise ValueError(f"{text!r} has more than 8 decimals")
    units = int(whole or "0") * 100_000_000 + int((frac[:8] or "0").ljust(8, "0"))
    return -units if negative else units
