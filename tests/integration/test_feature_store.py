"""Feature store against the real PostgreSQL server, in a private schema per test."""

import pyarrow.compute as pc
import pytest
import sqlalchemy as sa

from btcpred.adapters.db import migrate
from btcpred.adapters.db.schema import FEATURE_STORE_COLUMNS, engine_for
from btcpred.batch.feature_builder import build_rows, replay
from btcpred.batch.feature_store import load_features, read_training_data
from btcpred.batch.recordings import depth20_events
from btcpred.batch.silver import feature_table
from tests.conftest import BINANCE_US_BOOK

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def real_table():
    events = (e for e, _ in zip(depth20_events(BINANCE_US_BOOK, "BTCUSDT"), range(1500)))
    return feature_table(build_rows(replay(events, "BTCUSDT")), "binance.us", "BTCUSDT", "test")


def tables(engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) | set(sa.inspect(engine).get_view_names())


def test_migrations_go_up_and_down(isolated_settings):
    engine = engine_for(isolated_settings.postgres)
    assert tables(engine) == set()
    migrate.upgrade(isolated_settings.postgres)
    assert tables(engine) == {
        "alembic_version",
        "feature_store",
        "ml_experiments",
        "model_registry",
        "data_quality_metrics",
        "ml_training_data",
        "predictions",
    }
    migrate.downgrade(isolated_settings.postgres, "base")
    assert tables(engine) == {"alembic_version"}
    migrate.upgrade(isolated_settings.postgres)  # and up again: downgrade left nothing behind
    columns = [c["name"] for c in sa.inspect(engine).get_columns("feature_store")]
    # the loader's column list matches the migrated table (a later migration's columns come last)
    assert sorted(columns) == sorted([*FEATURE_STORE_COLUMNS, "loaded_at"])
    engine.dispose()


def test_reloading_a_day_replaces_rows_instead_of_duplicating(pg_engine, real_table):
    first = load_features(pg_engine, real_table)
    assert first.rows == real_table.num_rows > 1000
    changed = real_table.set_column(
        real_table.column_names.index("data_quality"), "data_quality", pc.multiply(real_table.column("data_quality"), 0.0)
    )
    load_features(pg_engine, changed)
    with pg_engine.connect() as conn:
        count, quality = conn.execute(sa.text("SELECT count(*), max(data_quality) FROM feature_store")).one()
        metrics = conn.execute(sa.text("SELECT rows, trainable_rows FROM data_quality_metrics")).all()
    assert count == real_table.num_rows
    assert quality == 0.0  # the second load's values won
    assert metrics == [(real_table.num_rows, 0)]


def test_training_view_returns_only_full_quality_labelled_rows(pg_engine, real_table):
    load_features(pg_engine, real_table)
    data = read_training_data(pg_engine, "binance.us", "BTCUSDT")
    quality = real_table.column("data_quality").to_pylist()
    labels = real_table.column("label_return").to_pylist()
    expected = [i for i, (q, lab) in enumerate(zip(quality, labels)) if q >= 1 and lab is not None]
    assert len(data) == len(expected) < real_table.num_rows  # the sampled file has holes the score catches
    assert list(data.ts_ms) == [real_table.column("ts_ms")[i].as_py() for i in expected]
    assert list(data.y) == [labels[i] for i in expected]


def test_the_seed_training_query_runs_verbatim(pg_engine, real_table):
    """The seed's query, as written there, on the migrated view: its time window selects by data time."""
    load_features(pg_engine, real_table)
    ts = [
        t
        for t, q, lab in zip(
            real_table.column("ts_ms").to_pylist(),
            real_table.column("data_quality").to_pylist(),
            real_table.column("label_return").to_pylist(),
        )
        if q >= 1 and lab is not None
    ]
    start, end = ts[10], ts[20]
    from datetime import datetime, timezone

    iso = lambda ms: datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat()  # noqa: E731
    with pg_engine.connect() as conn:
        rows = (
            conn.execute(
                sa.text(
                    f"SELECT * FROM ml_training_data WHERE timestamp BETWEEN '{iso(start)}' AND '{iso(end)}' "
                    "AND data_quality_score > 0.95"
                )
            )
            .mappings()
            .all()
        )
    assert sorted(r["ts_ms"] for r in rows) == ts[10:21]  # BETWEEN is inclusive at both ends
    assert all(r["data_quality_score"] == 1.0 for r in rows)
    assert min(r["timestamp"] for r in rows) == datetime.fromtimestamp(start / 1000, timezone.utc)
