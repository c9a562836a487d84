"""data.binance.vision daily aggTrades files (``<SYMBOL>-aggTrades-<YYYY-MM-DD>.zip``).

The zip holds one CSV. Futures files have a header row (``agg_trade_id,price,quantity,
first_trade_id,last_trade_id,transact_time,is_buyer_maker``); spot files have none and
carry an eighth column (``is_best_match``). Times are milliseconds in futures files (and
in spot files before 2025; microseconds after, told apart by magnitude). Quantities of
COIN-M files are contracts. The ``.CHECKSUM`` file published beside each zip
(``<sha256>  <name>``) is checked before a byte is read: a truncated download must not
become data.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from btcpred.adapters.loaders.base import CapturedEvent, parse_units
from btcpred.udfs.events import TradeEntry, TradesEvent

NAME = re.compile(r"^(?P<symbol>[A-Z0-9_]+)-aggTrades-(?P<day>\d{4}-\d{2}-\d{2})\.zip$")
HEADER = ["agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id", "transact_time", "is_buyer_maker"]
_US_THRESHOLD = 10**14  # transact times above this are microseconds


class DataVisionError(ValueError):
    """Not a data.binance.vision aggTrades file, or one whose bytes do not match its checksum."""


@dataclass(frozen=True, slots=True)
class AggTradesFile:
    path: Path
    symbol: str
    day: str
    checksum: str  # "verified" | "no .CHECKSUM beside it"

    def describe(self) -> str:
        return f"data.binance.vision aggTrades of {self.symbol} for {self.day} (sha256 {self.checksum})"

    def day_bounds_us(self) -> tuple[int, int]:
        """[start, end) of the file's UTC day in µs: a trade stamped outside it is not this file's
        (one far in the future would make every later trade "out of order")."""
        start = int(datetime.strptime(self.day, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp()) * 1_000_000
        return start, start + 86_400_000_000

    def events(self) -> Iterator[CapturedEvent]:
        """One TradesEvent per aggregate trade, stamped with its transact time (the file has no receipt time)."""
        with zipfile.ZipFile(self.path) as archive:
            member = archive.namelist()[0]
            with archive.open(member) as raw:
                rows = csv.reader(io.TextIOWrapper(raw, encoding="ascii"))
                for line_no, row in enumerate(rows, 1):
                    if line_no == 1 and row[: len(HEADER)] == HEADER:
                        continue
                    if len(row) < 7:
                        raise DataVisionError(f"{self.path.name} line {line_no}: {len(row)} columns, expected 7 or 8")
                    stamp = int(row[5])
                    time_us = stamp if stamp > _US_THRESHOLD else stamp * 1000
                    entry = TradeEntry(int(row[0]), parse_units(row[1]), parse_units(row[2]), row[6].strip().lower() == "true")
                    yield CapturedEvent(time_us, TradesEvent(self.symbol, time_us, time_us, (entry,)))


def identify(path: Path) -> AggTradesFile:
    """The file's symbol and day from its name, its bytes checked against the published checksum."""
    match = NAME.match(path.name)
    if match is None:
        raise DataVisionError(f"{path.name}: not named <SYMBOL>-aggTrades-<YYYY-MM-DD>.zip")
    sidecar = path.with_name(path.name + ".CHECKSUM")
    checksum = "no .CHECKSUM beside it"
    if sidecar.exists():
        expected = sidecar.read_text().split()[0].lower()
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != expected:
            raise DataVisionError(f"{path.name}: sha256 {actual[:12]}… does not match its .CHECKSUM {expected[:12]}…")
        checksum = "verified"
    return AggTradesFile(path, match["symbol"], match["day"], checksum)
