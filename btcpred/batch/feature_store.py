"""Loading silver feature rows into PostgreSQL, idempotently and in bulk.

Rows are COPYed into a temporary table and merged with one
``INSERT ... ON CONFLICT (venue, symbol, ts_ms) DO UPDATE``: re-loading a day
replaces its rows instead of duplicating them, and a load is one transaction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pyarrow as pa
import sqlalchemy as sa

from btcpred.adapters.db.schema import FEATURE_STORE_COLUMNS, ml_training_data
from btcpred.batch.datasets import FeatureSet, from_rows
from btcpred.udfs.features import FEATURE_NAMES


class StaleSilver(ValueError):
    """A silver table written before a feature existed: rebuild it from bronze, do not load it."""


def missing_columns(names: list[str]) -> list[str]:
    return [c for c in FEATURE_STORE_COLUMNS if c not in names]


@dataclass(frozen=True, slots=True)
class LoadResult:
    rows: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def load_features(engine: sa.Engine, table: pa.Table) -> LoadResult:
    """Upsert ``table`` (silver ``db_ready`` schema) into ``feature_store``; refreshes data_quality_metrics."""
    missing = missing_columns(table.column_names)
    if missing:
        raise StaleSilver(f"silver table lacks {', '.join(missing)}: built before those features existed")
    started = time.perf_counter()
    columns = ", ".join(FEATURE_STORE_COLUMNS)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in FEATURE_STORE_COLUMNS if c not in ("venue", "symbol", "ts_ms"))
    data = table.select(list(FEATURE_STORE_COLUMNS)).to_pylist()
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        with raw.cursor() as cur:
            cur.execute("CREATE TEMP TABLE feature_load (LIKE feature_store INCLUDING DEFAULTS) ON COMMIT DROP")
            with cur.copy(f"COPY feature_load ({columns}) FROM STDIN") as copy:
                for row in data:
                    copy.write_row([row[c] for c in FEATURE_STORE_COLUMNS])
            cur.execute(
                f"INSERT INTO feature_store ({columns}, loaded_at) SELECT {columns}, now() FROM feature_load "
                f"ON CONFLICT (venue, symbol, ts_ms) DO UPDATE SET {updates}, loaded_at = now()"
            )
            cur.execute(
                """
                INSERT INTO data_quality_metrics AS m (venue, symbol, day, rows, trainable_rows, invalid_book_rows,
                                                      stale_book_rows, missing_label_rows, mean_data_quality, computed_at)
                SELECT f.venue, f.symbol, d.day, count(*),
                       count(*) FILTER (WHERE f.data_quality >= 1 AND f.label_return IS NOT NULL),
                       count(*) FILTER (WHERE NOT f.book_valid),
                       count(*) FILTER (WHERE f.book_age_ms > 3000),
                       count(*) FILTER (WHERE f.label_return IS NULL OR f.label_age_ms > 3000),
                       avg(f.data_quality), now()
                FROM feature_store f
                CROSS JOIN LATERAL (SELECT (to_timestamp(f.ts_ms / 1000.0) AT TIME ZONE 'UTC')::date AS day) d
                WHERE (f.venue, f.symbol, d.day) IN (
                    SELECT DISTINCT venue, symbol, (to_timestamp(ts_ms / 1000.0) AT TIME ZONE 'UTC')::date FROM feature_load)
                GROUP BY f.venue, f.symbol, d.day
                ON CONFLICT (venue, symbol, day) DO UPDATE SET
                    rows = EXCLUDED.rows, trainable_rows = EXCLUDED.trainable_rows,
                    invalid_book_rows = EXCLUDED.invalid_book_rows, stale_book_rows = EXCLUDED.stale_book_rows,
                    missing_label_rows = EXCLUDED.missing_label_rows,
                    mean_data_quality = EXCLUDED.mean_data_quality, computed_at = EXCLUDED.computed_at
                """
            )
    return LoadResult(len(data), time.perf_counter() - started)


def read_training_data(engine: sa.Engine, venue: str, symbol: str) -> FeatureSet:
    """The ``ml_training_data`` view (full-quality rows with labels) for one venue, in time order."""
    t = ml_training_data.c
    query = (
        sa.select(t.ts_ms, *(t[name] for name in FEATURE_NAMES), t.mid, t.label_return)
        .where(t.venue == venue, t.symbol == symbol)
        .order_by(t.ts_ms)
    )
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(query)]
    return from_rows([venue] * len(rows), rows)
