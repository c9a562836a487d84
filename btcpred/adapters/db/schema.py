"""The tables as the Python code queries them; the migrations own the DDL.

``feature_store`` and ``data_quality_metrics`` are written with SQL (COPY and
upserts) from ``FEATURE_STORE_COLUMNS``, which follows
``btcpred.udfs.features.FEATURE_NAMES``: a new feature means a new migration, and a test
checks the migrated table against this list.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from btcpred.common.config import PgRole, PostgresConfig
from btcpred.udfs.features import FEATURE_NAMES

metadata = sa.MetaData()

# what a feature-store row carries beside its features, with the Python type of each value
# (silver's parquet takes its column types from here: btcpred/batch/silver.py)
LABEL_COLUMN_TYPES: dict[str, type] = {
    "mid": float,
    "book_update_id": int,
    "book_valid": bool,
    "book_age_ms": float,
    "label_mid": float,
    "label_return": float,
    "label_age_ms": float,
    "data_quality": float,
}
LABEL_COLUMNS = tuple(LABEL_COLUMN_TYPES)
FEATURE_STORE_COLUMNS = ("venue", "symbol", "ts_ms", "source", *FEATURE_NAMES, *LABEL_COLUMNS)

ml_experiments = sa.Table(
    "ml_experiments",
    metadata,
    sa.Column("experiment_id", sa.Text, primary_key=True),
    sa.Column("model_kind", sa.Text, nullable=False),
    sa.Column("model_version", sa.Text),
    sa.Column("hyperparameters", JSONB, nullable=False),
    sa.Column("feature_names", JSONB, nullable=False),
    sa.Column("data_ranges", JSONB, nullable=False),
    sa.Column("metrics", JSONB, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

model_registry = sa.Table(
    "model_registry",
    metadata,
    sa.Column("model_version", sa.Text, primary_key=True),
    sa.Column("artifact_uri", sa.Text, nullable=False),
    sa.Column("checksum_sha256", sa.Text, nullable=False),
    sa.Column("feature_names", JSONB, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("experiment_id", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("promoted_at", sa.DateTime(timezone=True)),
    sa.Column("archived_at", sa.DateTime(timezone=True)),
)

ml_training_data = sa.Table(
    "ml_training_data",
    metadata,
    sa.Column("venue", sa.Text),
    sa.Column("symbol", sa.Text),
    sa.Column("ts_ms", sa.BigInteger),
    *(sa.Column(name, sa.Float(53)) for name in FEATURE_NAMES),
    sa.Column("mid", sa.Float(53)),
    sa.Column("label_mid", sa.Float(53)),
    sa.Column("label_return", sa.Float(53)),
)


predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("symbol", sa.Text, primary_key=True),
    sa.Column("boundary_ms", sa.BigInteger, primary_key=True),
    sa.Column("model_version", sa.Text, primary_key=True),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("market", sa.Text),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("fallback_reason", sa.Text),
    sa.Column("feature_time_ms", sa.BigInteger),
    sa.Column("target_time_ms", sa.BigInteger),
    sa.Column("base_price", sa.Float(53)),
    sa.Column("predicted_price", sa.Float(53)),
    sa.Column("price_low", sa.Float(53)),
    sa.Column("price_high", sa.Float(53)),
    sa.Column("confidence", sa.Float(53)),
)


def database_url(cfg: PostgresConfig, role: PgRole | None = None) -> str:
    """As ``role`` (config.PostgresConfig); None: the schema owner, for migrations and tests only."""
    user, password = cfg.credentials(role)
    query = {"options": f"-csearch_path={cfg.schema_name}"} if cfg.schema_name else {}
    query["sslmode"] = cfg.sslmode
    if cfg.sslrootcert:
        query["sslrootcert"] = cfg.sslrootcert
    return sa.URL.create(
        "postgresql+psycopg",
        username=user,
        password=password or None,
        host=cfg.host,
        port=cfg.port,
        database=cfg.database,
        query=query,
    ).render_as_string(hide_password=False)


def engine_for(cfg: PostgresConfig, role: PgRole | None = None) -> sa.Engine:
    return sa.create_engine(database_url(cfg, role), pool_pre_ping=True)
