"""Table definitions the Python code queries with (the migrations own the DDL).

Columns of ``feature_store`` follow ``udfs.features.FEATURE_NAMES``: a new
feature means a new migration, which is the point of versioning the schema.
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from common.config import PostgresConfig
from udfs.features import FEATURE_NAMES

metadata = sa.MetaData()

LABEL_COLUMNS = ("mid", "book_update_id", "book_valid", "book_age_ms", "label_mid", "label_return",
                 "label_age_ms", "data_quality")
FEATURE_STORE_COLUMNS = ("venue", "symbol", "ts_ms", "source", *FEATURE_NAMES, *LABEL_COLUMNS)

feature_store = sa.Table(
    "feature_store", metadata,
    sa.Column("venue", sa.Text, primary_key=True),
    sa.Column("symbol", sa.Text, primary_key=True),
    sa.Column("ts_ms", sa.BigInteger, primary_key=True),
    sa.Column("source", sa.Text, nullable=False),
    *(sa.Column(name, sa.Float(53), nullable=False) for name in FEATURE_NAMES),
    sa.Column("mid", sa.Float(53), nullable=False),
    sa.Column("book_update_id", sa.BigInteger, nullable=False),
    sa.Column("book_valid", sa.Boolean, nullable=False),
    sa.Column("book_age_ms", sa.Float(53), nullable=False),
    sa.Column("label_mid", sa.Float(53)),
    sa.Column("label_return", sa.Float(53)),
    sa.Column("label_age_ms", sa.Float(53)),
    sa.Column("data_quality", sa.Float(53), nullable=False),
    sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
)

ml_experiments = sa.Table(
    "ml_experiments", metadata,
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
    "model_registry", metadata,
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

data_quality_metrics = sa.Table(
    "data_quality_metrics", metadata,
    sa.Column("venue", sa.Text, primary_key=True),
    sa.Column("symbol", sa.Text, primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("trainable_rows", sa.Integer, nullable=False),
    sa.Column("invalid_book_rows", sa.Integer, nullable=False),
    sa.Column("stale_book_rows", sa.Integer, nullable=False),
    sa.Column("missing_label_rows", sa.Integer, nullable=False),
    sa.Column("mean_data_quality", sa.Float(53), nullable=False),
    sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
)

ml_training_data = sa.Table(
    "ml_training_data", metadata,
    sa.Column("venue", sa.Text), sa.Column("symbol", sa.Text), sa.Column("ts_ms", sa.BigInteger),
    *(sa.Column(name, sa.Float(53)) for name in FEATURE_NAMES),
    sa.Column("mid", sa.Float(53)), sa.Column("label_mid", sa.Float(53)), sa.Column("label_return", sa.Float(53)),
)


def database_url(cfg: PostgresConfig) -> str:
    query = {"options": f"-csearch_path={cfg.schema_name}"} if cfg.schema_name else {}
    return sa.URL.create("postgresql+psycopg", username=cfg.user, password=cfg.password.get_secret_value(),
                         host=cfg.host, port=cfg.port, database=cfg.database,
                         query=query).render_as_string(hide_password=False)


def engine_for(cfg: PostgresConfig) -> sa.Engine:
    return sa.create_engine(database_url(cfg), pool_pre_ping=True)
