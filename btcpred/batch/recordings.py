"""Market-data files in the formats of ``shared/data``, read as one event stream each.

Two formats are understood, told apart by content rather than by path so that
any directory of such files can be evaluated:

* hftbacktest raw WebSocket captures of binance.com (``<receipt> <json>`` lines,
  gzip): depth diffs, trades and the REST snapshot that anchors the book;
* top-20 book snapshots sampled about once a second (Binance.US parquet,
  columns ``timestamp``, ``bid_price_1..20``, ``bid_size_1..20``, ``ask_*``).

USD-M and COIN-M perpetual captures are read too (their ``pu``-chained diffs are
expressed in the spot sequencing vocabulary by the loader; ``btcpred/adapters/loaders/hftbacktest_ws.py``),
and data.binance.vision aggTrades files (``btcpred/adapters/loaders/data_vision.py``) are recognised,
checked against their ``.CHECKSUM`` and reported: trades without a book give no *book* feature rows;
they are a trades-only market of their own (``btcpred.batch.trade_rows``, ``backtest --trades``).

Files of one market that continue each other (the first diff of one chains onto the last
diff of another) are one recording: the book carries across them without a new snapshot.
A spot capture whose minutes a USD-M capture of the same symbol covers reads that perpetual's
best bid/ask beside its own stream (``perp``), as the live system does with ``exchange.perp_ws_url``:
the cross-market features come from the same pair of streams in training and serving.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq

from btcpred.adapters.loaders import data_vision
from btcpred.adapters.loaders.base import merge_perp_quotes
from btcpred.adapters.loaders.hftbacktest_ws import HftbacktestWsLoader
from btcpred.udfs.events import DepthDiffEvent, DepthSnapshotEvent, MarketEvent

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
    venue: str  # "binance.com-spot" | "binance.com-usdm" | "binance.com-coinm" | "binance.us"
    symbol: str
    continued_by: tuple[Path, ...] = ()  # later files of the same stream, in order
    perp: Recording | None = None  # a USD-M capture of the same minutes: its quotes lead this spot book

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def paths(self) -> tuple[Path, ...]:
        return (self.path, *self.continued_by)

    def events(self) -> Iterator[MarketEvent]:
        """Events in stream order (the order the exchange sent them), across continuing files; with a
        ``perp``, its best bid/ask updates as PerpQuoteEvents merged in by the collector's receipt time."""
        if self.kind != "ws_capture":
            return depth20_events(self.path, self.symbol)
        captured = self._captured()
        if self.perp is not None:
            captured = merge_perp_quotes(captured, self.perp._captured(), self.symbol)
        return (c.event for c in captured)

    def _captured(self):
        return (captured for path in self.paths for captured in HftbacktestWsLoader(path, self.symbol).events())


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
        symbol = str(next((d["s"] for d in streamed if "s" in d), symbol)).upper()
        futures = any(d.get("e") == "depthUpdate" and "pu" in d for d in streamed)
        market = ("coinm" if symbol.endswith("_PERP") else "usdm") if futures else "spot"
        return Recording(path, "ws_capture", f"binance.com-{market}", symbol)
    if path.suffix == ".zip":
        try:
            trades = data_vision.identify(path)  # checksum-verified, or refused with the reason
        except data_vision.DataVisionError as exc:
            raise UnsupportedRecording(str(exc)) from None
        raise UnsupportedRecording(
            f"{path.name}: {trades.describe()}: trades without a book give no book feature rows "
            "(a trades-only market: btcpred.batch.trade_rows, backtest --trades)"
        )
    if path.name.endswith(".CHECKSUM"):
        raise UnsupportedRecording(f"{path.name}: checksum of {path.name.removesuffix('.CHECKSUM')} (verified with it)")
    raise UnsupportedRecording(f"{path.name}: unknown file type")


def diff_range(rec: Recording) -> tuple[DepthDiffEvent, DepthDiffEvent] | None:
    """The first and last depth diff of one file, or None if it has none."""
    first = last = None
    for event in HftbacktestWsLoader(rec.path, rec.symbol).events():
        if isinstance(event.event, DepthDiffEvent):
            first = first or event.event
            last = event.event
    return (first, last) if first is not None else None


def continues(previous_last: DepthDiffEvent, first: DepthDiffEvent) -> bool:
    """``first`` chains onto ``previous_last`` with no update lost (the synchroniser's own rule)."""
    return first.first_update_id <= previous_last.last_update_id + 1 <= first.last_update_id


DiffRanges = dict[Path, tuple[DepthDiffEvent, DepthDiffEvent] | None]


def diff_ranges(recordings: list[Recording]) -> DiffRanges:
    """Every capture's first and last diff (one pass over each file, shared by the joins below)."""
    return {
        path: diff_range(replace(rec, path=path, continued_by=()))
        for rec in recordings
        if rec.kind == "ws_capture"
        for path in rec.paths
    }


def join_continuations(recordings: list[Recording], ranges: DiffRanges | None = None) -> list[Recording]:
    """Captures of one market whose diffs chain across files become one recording."""
    joined: list[Recording] = []
    open_ends: dict[tuple[str, str], tuple[int, DepthDiffEvent]] = {}  # (venue, symbol) -> (index, last diff)
    ranges = diff_ranges(recordings) if ranges is None else ranges
    ordered = sorted(
        recordings,
        key=lambda r: (r.kind != "ws_capture", ranges.get(r.path)[0].event_time_us if ranges.get(r.path) else 0, r.name),
    )
    for rec in ordered:
        span = ranges.get(rec.path)
        if span is None:
            joined.append(rec)
            continue
        key = (rec.venue, rec.symbol)
        head = open_ends.get(key)
        if head is not None and continues(head[1], span[0]):
            index = head[0]
            joined[index] = replace(joined[index], continued_by=(*joined[index].continued_by, rec.path))
            open_ends[key] = (index, span[1])
            log.info(
                "%s continues %s (first diff U %d after u %d): one stream",
                rec.name,
                joined[index].name,
                span[0].first_update_id,
                head[1].last_update_id,
            )
            continue
        joined.append(rec)
        open_ends[key] = (len(joined) - 1, span[1])
    return joined


def pair_perpetuals(recordings: list[Recording], ranges: DiffRanges | None = None) -> list[Recording]:
    """Each spot capture gets the USD-M capture of its symbol whose diffs span the most of its own."""
    ranges = diff_ranges(recordings) if ranges is None else ranges

    def span(rec: Recording) -> tuple[int, int] | None:
        first, last = ranges.get(rec.path), ranges.get(rec.paths[-1])
        return (first[0].event_time_us, last[1].event_time_us) if first and last else None

    perps = [(rec, span(rec)) for rec in recordings if rec.venue == "binance.com-usdm" and span(rec)]
    paired = []
    for rec in recordings:
        own = span(rec) if rec.venue == "binance.com-spot" else None
        overlaps = [
            (min(own[1], s[1]) - max(own[0], s[0]), perp)
            for perp, s in perps
            if own and perp.symbol == rec.symbol and min(own[1], s[1]) > max(own[0], s[0])
        ]
        if overlaps:
            common_us, perp = max(overlaps, key=lambda o: o[0])
            log.info("%s reads %s as its leading perpetual (%.0f s of common time)", rec.name, perp.name, common_us / 1e6)
            rec = replace(rec, perp=perp)
        paired.append(rec)
    return paired


def discover(data_dir: Path) -> list[Recording]:
    """Every usable recording under ``data_dir``, continuing files joined and spot paired with its
    perpetual; refused files are logged with the reason, never silently dropped."""
    found: list[Recording] = []
    for path in sorted(p for p in Path(data_dir).rglob("*") if p.is_file()):
        if path.name.endswith((".tsv", ".md", ".txt")):
            continue
        try:
            found.append(identify(path))
        except UnsupportedRecording as exc:
            log.warning("not used: %s", exc)
    ranges = diff_ranges(found)
    return pair_perpetuals(join_continuations(found, ranges), ranges)
