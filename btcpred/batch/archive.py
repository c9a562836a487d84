"""The system's own archive becomes training data: bronze SBE frames -> feature store, hour by hour.

    python -m btcpred.batch.archive [--stream NAME] [--symbol BTCUSDT] [--venue binance.com] [--through-now] [--rebuild]

The SBE archiver (``btcpred/reliability/sbe_archiver.py``) keeps every frame of the market-data
stream, REST snapshots put in band included, in hour partitions of receipt time. This
puts an hour's Kinesis records back together in stream order, decodes them with the job's
own decode step (``decode_record``) and replays them through the job's state machine
(``btcpred.batch.feature_builder.replay``), so a stored feature equals the one the live job wrote
for the same data time. Rows go to ``silver/db_ready/{symbol}/archive/`` and the feature
store (an upsert: loading an hour twice changes nothing).

Hours continue each other: an hour is replayed after the previous hour's records from
(shortly before) its last in-band snapshot on (``warm_up``: the book and windows carry
across the hour boundary without a new snapshot), and with the next hour's first records
after it (the labels of its last 10 s). An hour owns the boundaries whose data time lies after the latest event
of the hour before it and up to its own latest event, so consecutive hours split the
rows between them. Only complete hours (the next one has begun) are built, each once,
unless ``--through-now`` (the current hour too, as far as it goes) or ``--rebuild``. An hour
counts as built once its rows are in the feature store (a ``.loaded.json`` marker beside its
silver, written after the load commits): a build a PostgreSQL outage interrupted is picked up
again by the next run.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

from btcpred.adapters.bronze_archive import archived_hours, archived_records
from btcpred.adapters.lake import Lake
from btcpred.batch.feature_builder import _event_time_us, build_rows, replay
from btcpred.batch.feature_store import load_features, missing_columns
from btcpred.batch.silver import feature_table
from btcpred.common import entry_point
from btcpred.common.config import S3Config, load_settings
from btcpred.common.progress import Progress
from btcpred.udfs import lake_layout as layout
from btcpred.udfs.events import DepthDiffEvent, DepthSnapshotEvent, MarketEvent, TradesEvent
from btcpred.udfs.features import HISTORY_US
from btcpred.udfs.lake_layout import HOUR_US
from btcpred.udfs.long_context import LONGEST_CONTEXT_US
from btcpred.udfs.order_book import BookSynchronizer
from btcpred.udfs.records import decode_record

log = logging.getLogger(__name__)

LABEL_LOOKAHEAD_US = 15_000_000  # of the next hour's data: the 10 s label plus slack
# features' longest look-back before the hour's first row (the 5 min context), plus slack
WARM_UP_MARGIN_US = max(HISTORY_US, LONGEST_CONTEXT_US) + 4_000_000
RING_DIFFS = BookSynchronizer.__dataclass_fields__["recent_capacity"].default  # diffs a snapshot is brought forward with


def record_events(records: list[str], symbol: str) -> list[MarketEvent]:
    """The records' events of ``symbol`` in stream order, decoded exactly as the job decodes them."""
    events: list[MarketEvent] = []
    for value in records:
        for batch in decode_record(value, 0).batches:
            if batch.symbol == symbol:
                events.extend(batch.events)
    return events


def _latest_time(events: list[MarketEvent]) -> int | None:
    times = [_event_time_us(e) for e in events if isinstance(e, (DepthDiffEvent, TradesEvent))]
    return max(times) if times else None


def warm_up(events: list[MarketEvent], until_us: int | None) -> list[MarketEvent]:
    """The part of the previous hour the next one needs to continue it exactly.

    The live book was last re-anchored by an in-band snapshot, brought forward with the
    diffs the job held in its ring (received before the snapshot); features look back
    ``HISTORY_US``, the context 5 minutes. So the warm-up starts ``recent_capacity`` diffs before the last snapshot
    that lies more than ``WARM_UP_MARGIN_US`` of data before the hour's end; without one, the
    whole previous hour.
    """
    if until_us is None:
        return events
    latest, early_snapshots = 0, []
    for i, e in enumerate(events):
        if isinstance(e, DepthSnapshotEvent) and latest < until_us - WARM_UP_MARGIN_US:
            early_snapshots.append(i)
        elif isinstance(e, (DepthDiffEvent, TradesEvent)):
            latest = max(latest, _event_time_us(e))
    if not early_snapshots:
        return events
    start, diffs = early_snapshots[-1], 0
    while start > 0 and diffs < RING_DIFFS:
        start -= 1
        diffs += isinstance(events[start], DepthDiffEvent)
    return events[start:]


@dataclass(frozen=True, slots=True)
class HourBuilt:
    hour_us: int
    key: str
    rows: int
    trainable: int


def build_hour(lake: Lake, engine: sa.Engine | None, stream: str, symbol: str, venue: str, hour_us: int) -> HourBuilt:
    """Rows of one receipt hour into silver and (given an engine) the feature store."""
    before = record_events(archived_records(lake, stream, symbol, hour_us - HOUR_US, hour_us - 1), symbol)
    own = record_events(archived_records(lake, stream, symbol, hour_us, hour_us + HOUR_US - 1), symbol)
    after = record_events(archived_records(lake, stream, symbol, hour_us + HOUR_US, hour_us + 2 * HOUR_US - 1), symbol)
    lo, hi = _latest_time(before), _latest_time(own)
    rows = []
    if hi is not None:
        head = [e for e in after if _event_time_us(e) <= hi + LABEL_LOOKAHEAD_US] if after else []
        run = replay(warm_up(before, lo) + own + head, symbol)
        rows = [r for r in build_rows(run) if (lo is None or r.ts_ms * 1000 > lo) and r.ts_ms * 1000 <= hi]
    table = feature_table(rows, venue, symbol, f"archive:{stream}")
    key = layout.archive_silver_key(symbol, stream, hour_us)
    lake.put_table(key, table)
    if engine is not None:
        if rows:
            load_features(engine, table)  # raises on a PostgreSQL outage: no marker, the next run builds it again
        lake.put_bytes(
            layout.archive_loaded_key(symbol, stream, hour_us),
            json.dumps({"rows": len(rows), "loaded_at": datetime.now(timezone.utc).isoformat()}).encode(),
        )
    return HourBuilt(hour_us, key, len(rows), sum(1 for r in rows if r.trainable))


def _built(lake: Lake, symbol: str, stream: str, hour_us: int, loading: bool) -> bool:
    """The hour's silver exists with every current column (one from before a feature existed is built
    again) and, when loading the feature store, its load marker too: an hour whose load failed after
    its silver was written (a PostgreSQL outage) used to count as built and never reached the store."""
    key = layout.archive_silver_key(symbol, stream, hour_us)
    if not lake.exists(key) or missing_columns(lake.column_names(key)):
        return False
    return not loading or lake.exists(layout.archive_loaded_key(symbol, stream, hour_us))


def build(
    s3: S3Config,
    engine: sa.Engine | None,
    stream: str,
    symbol: str,
    venue: str,
    through_now: bool = False,
    rebuild: bool = False,
    now_us: int | None = None,
) -> list[HourBuilt]:
    """Every archive hour of the lake not built yet (complete hours only, unless ``through_now``), oldest first."""
    lake = Lake(s3)
    lake.ensure_bucket()  # a fresh deployment: no archive yet is no hours, not an error
    now_us = now_us if now_us is not None else int(datetime.now(timezone.utc).timestamp() * 1e6)
    current_hour = now_us // HOUR_US * HOUR_US
    todo = [
        hour_us
        for hour_us in archived_hours(lake, symbol, stream)
        if (hour_us < current_hour or through_now)  # the current hour is still being written: built once it has passed
        and (rebuild or hour_us >= current_hour or not _built(lake, symbol, stream, hour_us, engine is not None))
    ]
    built = []
    progress = Progress("archive hours built", len(todo), log)
    for hour_us in todo:
        done = build_hour(lake, engine, stream, symbol, venue, hour_us)
        built.append(done)
        progress.step(f"{_iso(hour_us)}: {done.rows} rows ({done.trainable} trainable) -> {done.key}")
    return built


def _iso(time_us: int) -> str:
    return datetime.fromtimestamp(time_us / 1e6, timezone.utc).strftime("%Y-%m-%d %H:%M")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    entry_point.add_config(parser)
    parser.add_argument("--stream", default=None, help="archived stream name (default: kinesis.stream)")
    entry_point.add_market(parser)
    parser.add_argument("--through-now", action="store_true", help="also the current hour, as far as it is archived")
    parser.add_argument("--rebuild", action="store_true", help="build hours already built again")
    args = parser.parse_args(argv)
    entry_point.setup_logging()
    settings = load_settings(args.config)
    venue, symbol = entry_point.market_of(args, settings)
    from btcpred.adapters.db import migrate
    from btcpred.adapters.db.schema import engine_for

    if settings.postgres.apply_migrations:
        migrate.upgrade(settings.postgres)
    engine = engine_for(settings.postgres, "loader")
    try:
        built = build(
            settings.s3,
            engine,
            args.stream or settings.kinesis.stream,
            symbol,
            venue,
            args.through_now,
            args.rebuild,
        )
    finally:
        engine.dispose()
    print(
        json.dumps(
            {
                "hours": len(built),
                "rows": sum(b.rows for b in built),
                "trainable": sum(b.trainable for b in built),
                "keys": [b.key for b in built],
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
