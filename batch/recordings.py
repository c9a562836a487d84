"""Market-data files in the formats of ``shared/data``, read as one event stream each.

Two formats are understood, told apart by content rather than by path so that
any directory of such files can be evaluated:

* hftbacktest raw WebSocket captures of binance.com (``<receipt> <json>`` lines,
  gzip): depth diffs, trades and the REST snapshot that anchors the book;
* top-20 book snapshots sampled about once a second (Binance.US parquet,
  columns ``timestamp``, ``bid_price_1..20``, ``bid_size_1..20``, ``ask_*``).

USD-M futures captures are recognised and skipped: futures depth diffs chain by
``pu`` (previous final update id), not by ``U = u + 1`` as spot diffs do, so the
spot synchroniser would mark every futures diff a gap.
"""
from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq

from ingest.loaders.hftbacktest_ws import HftbacktestWsLoader
from udfs.events import DepthSnapshotEvent, MarketEvent

log = logging.getLogger(__name__)

DEPTH20_LEVELS = 20
E8 = Decimal(100_000_000)


class UnsupportedRecording(ValueError):
    """A file that is market data but not one this pipeline can turn into features."""


@dataclass(frozen=True, slots=True)
class Recording:
    """One file of market data: where it came from and how to read it."""

    path: Path
    kind: str  # "ws_capture" | "depth20"
    venue: str  # "binance.com-spot" | "binance.us"
    symbol: str

    @property
    def name(self) -> str:
        return self.path.name

    def events(self) -> Iterator[MarketEvent]:
        """Events in stream order (the order the exchange sent them)."""
        if self.kind == "ws_capture":
            return (captured.event for captured in HftbacktestWsLoader(self.path, self.symbol).events())
        return depth20_events(self.path, self.symbol)


def _units(value: float) -> int:
    """e8 units of a parquet double, through its shortest decimal form (78439.6 -> exactly 7843960000000)."""
    return int(Decimal(repr(value)) * E8)


def depth20_events(path: Path, symbol: str) -> Iterator[DepthSnapshotEvent]:
    """Each row as a full-book snapshot; its row number serves as the update id (the file has none)."""
    table = pq.read_table(path)
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    timestamps = columns["timestamp"]
    for row, ts_ms in enumerate(timestamps):
        sides = []
        for side in ("bid", "ask"):
            levels = []
            for level in range(1, DEPTH20_LEVELS + 1):
                price, size = columns[f"{side}_price_{level}"][row], columns[f"{side}_size_{level}"][row]
                if price is None or size is None or price <= 0 or size <= 0:
                    continue
                levels.append((_units(price), _units(size)))
            sides.append(tuple(levels))
        yield DepthSnapshotEvent(symbol, ts_ms * 1000, row + 1, sides[0], sides[1])


def _head_messages(path: Path, lines: int = 200) -> list[dict]:
    messages = []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            _, _, payload = line.partition(" ")
            if payload.strip():
                msg = json.loads(payload)
                messages.append(msg if isinstance(msg, dict) else {})
            if len(messages) >= lines:
                break
    return messages


def identify(path: Path, symbol: str = "BTCUSDT") -> Recording:
    """Recognise one file's format; UnsupportedRecording says why a file is refused."""
    if path.suffix == ".parquet":
        names = set(pq.read_schema(path).names)
        needed = {"timestamp", "bid_price_1", "bid_size_1", "ask_price_1", "ask_size_1"}
        if not needed <= names:
            raise UnsupportedRecording(f"{path.name}: parquet without top-of-book columns {sorted(needed - names)}")
        return Recording(path, "depth20", "binance.us", symbol)
    if path.suffix == ".gz":
        try:
            head = _head_messages(path)
        except (OSError, ValueError) as exc:
            raise UnsupportedRecording(f"{path.name}: not a gzip of JSON lines ({exc})") from None
        streamed = [m["data"] for m in head if "@" in str(m.get("stream", "")) and isinstance(m.get("data"), dict)]
        if not streamed:
            raise UnsupportedRecording(f"{path.name}: not a combined-stream capture")
        if any(d.get("e") == "depthUpdate" and "pu" in d for d in streamed):
            raise UnsupportedRecording(f"{path.name}: USD-M futures capture (pu-chained diffs) is not supported")
        symbol = str(next((d["s"] for d in streamed if "s" in d), symbol)).upper()
        return Recording(path, "ws_capture", "binance.com-spot", symbol)
    raise UnsupportedRecording(f"{path.name}: unknown file type")


def discover(data_dir: Path) -> list[Recording]:
    """Every usable recording under ``data_dir``; refused files are logged, never silently dropped."""
    found: list[Recording] = []
    for path in sorted(p for p in Path(data_dir).rglob("*") if p.is_file()):
        if path.name.endswith((".tsv", ".md", ".txt")):
            continue
        try:
            found.append(identify(path))
        except UnsupportedRecording as exc:
            log.warning("skipping %s", exc)
    return found
