"""The one interface every capture format implements."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from udfs.events import MarketEvent


@dataclass(frozen=True, slots=True)
class CapturedEvent:
    """An event as recorded: the collector's receipt time (µs, its own clock) and the event."""

    receipt_time_us: int
    event: MarketEvent


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
