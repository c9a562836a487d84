"""Bronze -> silver: one replay of each raw recording, three parquet datasets.

* ``silver/db_ready``: feature-store rows (2 s feature vectors, 10 s labels,
  quality score), typed exactly as the ``feature_store`` table, ready for COPY;
* ``silver/bars_1m``: 1-minute mid-price bars, with trade counts and volume where the
  recording has trades;
* ``silver/snapshots``: the top-20 book as of each whole second.

Object names are derived from the bronze file name, so re-running a day
overwrites its objects instead of adding copies.
"""

from __future__ import annotations

import logging
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa

from btcpred.adapters.db.schema import LABEL_COLUMN_TYPES
from btcpred.adapters.lake import Lake
from btcpred.batch.feature_builder import FeatureRow, Replay, build_rows, replay
from btcpred.batch.recordings import Recording, discover
from btcpred.udfs.events import to_float
from btcpred.udfs.features import FEATURE_NAMES
from btcpred.udfs.lake_layout import day_partition, recording_key, recording_prefix, silver_key

log = logging.getLogger(__name__)

ARROW_TYPES = {float: pa.float64(), int: pa.int64(), bool: pa.bool_()}


def feature_table(rows: Iterable[FeatureRow], venue: str, symbol: str, source: str) -> pa.Table:
    rows = list(rows)
    columns: dict[str, list] = {
        "venue": [venue] * len(rows),
        "symbol": [symbol] * len(rows),
        "ts_ms": [r.ts_ms for r in rows],
        "source": [source] * len(rows),
    }
    for name in FEATURE_NAMES:
        columns[name] = [r.features[name] for r in rows]
    for name in LABEL_COLUMN_TYPES:
        columns[name] = [getattr(r, name) for r in rows]
    schema = pa.schema(
        [("venue", pa.string()), ("symbol", pa.string()), ("ts_ms", pa.int64()), ("source", pa.string())]
        + [(name, pa.float64()) for name in FEATURE_NAMES]
        + [(name, ARROW_TYPES[kind]) for name, kind in LABEL_COLUMN_TYPES.items()]
    )
    return pa.Table.from_pydict(columns, schema=schema)


def bars_table(run: Replay, symbol: str) -> pa.Table:
    bars: dict[int, list[float]] = {}
    for time_us, mid in zip(run.timeline.times_us, run.timeline.mids):
        minute = time_us // 60_000_000 * 60_000
        bar = bars.get(minute)
        if bar is None:
            bars[minute] = [mid, mid, mid, mid, 1]
        else:
            bar[1], bar[2], bar[3], bar[4] = max(bar[1], mid), min(bar[2], mid), mid, bar[4] + 1
    minutes = sorted(bars)
    trades = [run.trade_minutes.get(m, [0, 0.0, 0.0]) for m in minutes]
    return pa.table(
        {
            "symbol": [symbol] * len(minutes),
            "minute_ms": pa.array(minutes, pa.int64()),
            "open": [bars[m][0] for m in minutes],
            "high": [bars[m][1] for m in minutes],
            "low": [bars[m][2] for m in minutes],
            "close": [bars[m][3] for m in minutes],
            "book_updates": pa.array([bars[m][4] for m in minutes], pa.int64()),
            "trades": pa.array([t[0] for t in trades], pa.int64()),
            "volume": [t[1] for t in trades],
            "vwap": [t[2] / t[1] if t[1] else None for t in trades],
        }
    )


def snapshots_table(run: Replay, symbol: str) -> pa.Table:
    level = pa.list_(pa.struct([("price", pa.float64()), ("qty", pa.float64())]))

    def levels(side):
        return [{"price": to_float(p), "qty": to_float(q)} for p, q in side]

    return pa.table(
        {
            "symbol": [symbol] * len(run.book_samples),
            "ts_ms": pa.array([s[0] for s in run.book_samples], pa.int64()),
            "bids": pa.array([levels(s[1]) for s in run.book_samples], level),
            "asks": pa.array([levels(s[2]) for s in run.book_samples], level),
        }
    )


def _by_day(table: pa.Table, time_column: str, symbol: str) -> dict[str, pa.Table]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, ts in enumerate(table.column(time_column).to_pylist()):
        groups[day_partition(symbol, ts)].append(i)
    return {part: table.take(pa.array(idx)) for part, idx in groups.items()}


def archive_to_bronze(lake: Lake, data_dir: Path) -> list[str]:
    """Copy every usable recording under ``data_dir`` into bronze, unchanged (same key on re-runs)."""
    keys = []
    for rec in discover(data_dir):
        first = next((e for e in rec.events() if e.event_time_us > 0), None)
        if first is None:
            log.warning("%s holds no events; not archived", rec.name)
            continue
        for path in rec.paths:  # a continued stream is kept together, under the day its first file starts
            key = recording_key(rec.kind, rec.symbol, first.event_time_us // 1000, path.name)
            lake.put_bytes(key, path.read_bytes())
            keys.append(key)
    return keys


def silver_from_recording(lake: Lake, rec: Recording) -> dict[str, int]:
    """Write the three silver datasets for one recording; returns rows written per dataset."""
    run = replay(rec.events(), rec.symbol)
    stem = rec.name.split(".")[0]
    written = {}
    tables = {
        "db_ready": (feature_table(build_rows(run), rec.venue, rec.symbol, stem), "ts_ms"),
        "bars_1m": (bars_table(run, rec.symbol), "minute_ms"),
        "snapshots": (snapshots_table(run, rec.symbol), "ts_ms"),
    }
    for dataset, (table, time_column) in tables.items():
        written[dataset] = table.num_rows
        for part, day_table in _by_day(table, time_column, rec.symbol).items():
            lake.put_table(silver_key(dataset, part, stem), day_table)
    if written["db_ready"] == 0:
        log.warning("%s: no feature rows (the book was never anchored: no depth snapshot in the recording?)", rec.name)
    return written


RECORDING_KINDS = ("ws_capture", "depth20")  # the bronze datasets archive_to_bronze writes


def bronze_to_silver(lake: Lake) -> dict[str, dict[str, int]]:
    """Rebuild silver from every bronze recording. The objects are fetched together, so files
    that continue each other are replayed as one stream (``discover``)."""
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in RECORDING_KINDS:
            for key in lake.keys(recording_prefix(kind)):
                local = Path(tmp) / key
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_bytes(lake.get_bytes(key))
        for rec in discover(Path(tmp)):
            report[str(rec.path.relative_to(tmp))] = silver_from_recording(lake, rec)
    return report
