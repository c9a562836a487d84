"""The system's own archive becomes training data: Kinesis -> SBE archiver -> bronze -> batch.archive ->
silver and the feature store, equal to a replay of the same capture, hour by hour, once.

The real 2024-08-08 spot capture is put into a stream with its receipt stamps moved so an
hour boundary of the archive falls in its middle, so the book must carry from one archive
hour into the next without a new snapshot (the capture has one snapshot, at its start).
"""

import pytest
import sqlalchemy as sa

from btcpred.adapters import bronze_archive
from btcpred.adapters.lake import Lake
from btcpred.batch import archive
from btcpred.batch.feature_builder import build_rows, replay
from btcpred.reliability.sbe_archiver import SbeArchiver
from btcpred.udfs import lake_layout as layout
from btcpred.udfs.features import FEATURE_NAMES, same_feature
from tests.integration.conftest import put_real_frames

pytestmark = pytest.mark.integration


@pytest.mark.timeout(300)
def test_archive_hours_become_feature_rows_equal_to_the_replay(stream_settings, spot_events, pg_engine):
    settings, client = stream_settings
    stream = settings.kinesis.stream
    lake = Lake(settings.s3)
    receipts = [c.receipt_time_us for c in spot_events]
    middle = (receipts[0] + receipts[-1]) // 2
    put_real_frames(client, stream, spot_events, receipt_shift_us=(middle // archive.HOUR_US + 1) * archive.HOUR_US - middle)
    archiver = SbeArchiver(settings, kinesis=client, lake=lake)
    archiver.run_shard(archiver.shards()[0], stop_after_idle_s=1.0)
    hours = bronze_archive.archived_hours(lake, "BTCUSDT", stream)
    assert len(hours) == 2, hours  # 23:00 and 00:00

    # incremental: while the second hour is the current one, only the first (complete) hour is built
    first = archive.build(settings.s3, pg_engine, stream, "BTCUSDT", "binance.com", now_us=hours[1] + 60_000_000)
    assert [b.hour_us for b in first] == hours[:1] and first[0].rows > 60  # ~3 min of 2 s rows
    later = archive.build(settings.s3, pg_engine, stream, "BTCUSDT", "binance.com", now_us=hours[1] + 7_200_000_000)
    assert [b.hour_us for b in later] == hours[1:]  # the first is not built again
    assert archive.build(settings.s3, pg_engine, stream, "BTCUSDT", "binance.com") == []  # nothing new

    # the rows of both hours together are the rows of one uninterrupted replay of the capture
    expected = {r.ts_ms: r for r in build_rows(replay((c.event for c in spot_events), "BTCUSDT"))}
    built = {}
    for b in first + later:
        for row in lake.get_table(b.key).to_pylist():
            assert row["ts_ms"] not in built, row["ts_ms"]  # consecutive hours split the rows, never share one
            built[row["ts_ms"]] = row
    assert set(built) == set(expected), (sorted(set(built) ^ set(expected))[:10], len(built), len(expected))
    for ts, row in built.items():
        want = expected[ts]
        for name in FEATURE_NAMES:
            assert same_feature(row[name], want.features[name], 1e-12), (ts, name)
        assert (row["book_valid"], row["book_update_id"], row["data_quality"]) == (
            want.book_valid,
            want.book_update_id,
            want.data_quality,
        ), ts
        assert row["label_return"] == want.label_return, ts  # labels across the hour boundary too
    boundary_ms = hours[1] // 1000
    assert any(ts < boundary_ms for ts in built) and sum(1 for r in built.values() if r["label_return"] is not None) > 100

    # the feature store holds them once, whatever was built twice
    count = "SELECT count(*) FROM feature_store WHERE venue = 'binance.com' AND symbol = 'BTCUSDT'"
    with pg_engine.connect() as conn:
        stored = conn.execute(sa.text(count)).scalar()
    rebuilt = archive.build(settings.s3, pg_engine, stream, "BTCUSDT", "binance.com", rebuild=True)
    assert len(rebuilt) == 2
    with pg_engine.connect() as conn:
        assert conn.execute(sa.text(count)).scalar() == stored == len(built)
        source = conn.execute(sa.text("SELECT DISTINCT source FROM feature_store WHERE venue = 'binance.com'")).scalars().all()
    assert source == [f"archive:{stream}"]

    # an hour built before a feature existed is built again, and only that one
    stale = lake.get_table(rebuilt[0].key).drop(["ofi_norm_5s"])
    lake.put_table(rebuilt[0].key, stale)
    again = archive.build(settings.s3, pg_engine, stream, "BTCUSDT", "binance.com")
    assert [b.hour_us for b in again] == hours[:1]
    assert "ofi_norm_5s" in lake.column_names(rebuilt[0].key)


@pytest.mark.timeout(300)
def test_an_hour_whose_load_failed_is_built_again_not_lost(stream_settings, spot_events, pg_engine):
    """A PostgreSQL outage while an hour loads: its silver is written, its load raises. The hour must
    not count as built (before: silver alone marked it, and the hour never reached the feature store)."""
    settings, client = stream_settings
    stream = settings.kinesis.stream
    lake = Lake(settings.s3)
    put_real_frames(client, stream, spot_events[:6000])
    archiver = SbeArchiver(settings, kinesis=client, lake=lake)
    archiver.run_shard(archiver.shards()[0], stop_after_idle_s=1.0)
    [hour] = bronze_archive.archived_hours(lake, "BTCUSDT", stream)
    later = hour + 7_200_000_000

    down = sa.create_engine(pg_engine.url.set(port=1), connect_args={"connect_timeout": 2})  # nothing listens there
    with pytest.raises(sa.exc.OperationalError):
        archive.build(settings.s3, down, stream, "BTCUSDT", "binance.com", now_us=later)
    assert lake.exists(layout.archive_silver_key("BTCUSDT", stream, hour))  # silver written before the load failed
    assert not lake.exists(layout.archive_loaded_key("BTCUSDT", stream, hour))

    [built] = archive.build(settings.s3, pg_engine, stream, "BTCUSDT", "binance.com", now_us=later)
    assert built.hour_us == hour and built.rows > 0
    with pg_engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT count(*) FROM feature_store WHERE source = :s"), {"s": f"archive:{stream}"}
        ).scalar()
    assert stored == built.rows
    assert archive.build(settings.s3, pg_engine, stream, "BTCUSDT", "binance.com", now_us=later) == []  # once loaded
