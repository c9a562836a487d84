"""Raw combined-stream WebSocket captures as recorded by hftbacktest's collector.

One message a line: ``<receipt timestamp> <raw JSON>``; the timestamp is in µs
in older files and ns in newer ones (told apart by magnitude). JSON payloads
are ``depthUpdate`` diffs, ``trade`` events, ``bookTicker`` updates and one REST
``GET /api/v3/depth`` snapshot line.

USD-M and COIN-M perpetual captures use the same layout. Their diffs chain by ``pu`` (the
previous diff's final update id) instead of ``U = previous u + 1``, and the first diff after
a snapshot ``L`` is the one with ``U <= L <= u``. A futures diff is read with its
``first_update_id`` set to ``pu + 1``: in that vocabulary the spot synchroniser's rules are
exactly the futures rules (a diff continues the book iff ``pu`` equals the local id; after a
snapshot the diffs with ``u <= L`` are dropped and the next one must have ``pu + 1 <= L + 1
<= u``), so one ``BookSynchronizer`` keeps both books and a broken ``pu`` chain is a gap.
COIN-M quantities are contracts (100 USD each for BTCUSD_PERP), kept as such: features that
read sizes are ratios of sizes.

Spot JSON bookTicker carries no event time. It is stamped with the latest exchange
event time seen before it in the capture (never ahead of the exchange clock,
and immune to the collector's clock offset, ~1.3 s in the 2024 spot file); the few
before the capture's first exchange event cannot be stamped and are left out
(``unstamped_quotes`` counts them).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

from btcpred.adapters.loaders.base import CapturedEvent, parse_units
from btcpred.udfs.events import (
    BestBidAskEvent,
    DepthDiffEvent,
    DepthSnapshotEvent,
    MarketEvent,
    TradeEntry,
    TradesEvent,
)

_NS_THRESHOLD = 10**17  # receipt stamps above this are nanoseconds


def _levels(rows: list[list[str]]) -> tuple[tuple[int, int], ...]:
    return tuple((parse_units(p), parse_units(q)) for p, q in rows)


class HftbacktestWsLoader:
    def __init__(self, path: str | Path, symbol: str = "BTCUSDT") -> None:
        self.path = Path(path)
        self.symbol = symbol
        self.unstamped_quotes = 0  # spot bookTicker lines before any event time, left out

    def _open(self):
        return gzip.open(self.path, "rt") if self.path.suffix == ".gz" else open(self.path)

    def events(self) -> Iterator[CapturedEvent]:
        last_exchange_us = 0
        with self._open() as fh:
            for line in fh:
                stamp, _, payload = line.partition(" ")
                if not payload.strip():
                    continue
                receipt = int(stamp)
                receipt_us = receipt // 1000 if receipt > _NS_THRESHOLD else receipt
                msg = json.loads(payload)
                data = msg.get("data", msg)
                event = self._convert(data, last_exchange_us)
                if event is None:
                    continue
                if not isinstance(event, (BestBidAskEvent, DepthSnapshotEvent)):
                    last_exchange_us = max(last_exchange_us, event.event_time_us)
                yield CapturedEvent(receipt_us, event)

    def _convert(self, data: dict, last_exchange_us: int) -> MarketEvent | None:
        kind = data.get("e")
        if kind == "depthUpdate":
            return DepthDiffEvent(
                symbol=data["s"],
                event_time_us=data["E"] * 1000,
                first_update_id=data["pu"] + 1 if "pu" in data else data["U"],
                last_update_id=data["u"],
                bids=_levels(data["b"]),
                asks=_levels(data["a"]),
            )
        if kind == "trade" and data.get("X", "MARKET") != "MARKET":
            return None  # futures liquidation / ADL fills: not trades of the order book
        if kind == "trade":
            entry = TradeEntry(data["t"], parse_units(data["p"]), parse_units(data["q"]), bool(data["m"]))
            return TradesEvent(data["s"], data["E"] * 1000, data["T"] * 1000, (entry,))
        if kind is None and "lastUpdateId" in data:
            return DepthSnapshotEvent(
                symbol=self.symbol,
                event_time_us=last_exchange_us,
                book_update_id=data["lastUpdateId"],
                bids=_levels(data["bids"]),
                asks=_levels(data["asks"]),
            )
        if kind in (None, "bookTicker") and {"u", "b", "a", "B", "A"} <= data.keys():
            if "E" not in data and not last_exchange_us:
                self.unstamped_quotes += 1
                return None
            return BestBidAskEvent(  # futures bookTicker has its own event time; spot's has none
                symbol=data["s"],
                event_time_us=data["E"] * 1000 if "E" in data else last_exchange_us,
                book_update_id=data["u"],
                bid_price_e8=parse_units(data["b"]),
                bid_qty_e8=parse_units(data["B"]),
                ask_price_e8=parse_units(data["a"]),
                ask_qty_e8=parse_units(data["A"]),
            )
        return None  # other streams (markPrice, ...) are not part of the spot SBE feed
