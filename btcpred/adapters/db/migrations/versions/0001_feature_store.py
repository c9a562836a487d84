"""Feature store, experiments, model registry, data-quality metrics and the training view.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copy of the feature list at this revision: migrations must not change when code does.
FEATURES = (
    "ret_1s",
    "ret_5s",
    "vol_imbalance",
    "spread_bp",
    "depth_imbalance_1",
    "depth_imbalance_5",
    "depth_imbalance_10",
    "microprice_minus_mid",
    "ofi_1s",
    "ofi_2s",
    "ofi_5s",
    "realized_vol_5s",
    "trade_intensity_5s",
    "signed_flow_1s",
    "signed_flow_5s",
)
NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "feature_store",
        sa.Column("venue", sa.Text, nullable=False),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("ts_ms", sa.BigInteger, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        *(sa.Column(name, sa.Float(53), nullable=False) for name in FEATURES),
        sa.Column("mid", sa.Float(53), nullable=False),
        sa.Column("book_update_id", sa.BigInteger, nullable=False),
        sa.Column("book_valid", sa.Boolean, nullable=False),
        sa.Column("book_age_ms", sa.Float(53), nullable=False),
        sa.Column("label_mid", sa.Float(53)),
        sa.Column("label_return", sa.Float(53)),
        sa.Column("label_age_ms", sa.Float(53)),
        sa.Column("data_quality", sa.Float(53), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("venue", "symbol", "ts_ms"),
        sa.CheckConstraint("data_quality BETWEEN 0 AND 1", name="data_quality_range"),
    )
    op.create_table(
        "ml_experiments",
        sa.Column("experiment_id", sa.Text, primary_key=True),
        sa.Column("model_kind", sa.Text, nullable=False),
        sa.Column("model_version", sa.Text),
        sa.Column("hyperparameters", JSONB, nullable=False),
        sa.Column("feature_names", JSONB, nullable=False),
        sa.Column("data_ranges", JSONB, nullable=False),
        sa.Column("metrics", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_table(
        "model_registry",
        sa.Column("model_version", sa.Text, primary_key=True),
        sa.Column("artifact_uri", sa.Text, nullable=False),
        sa.Column("checksum_sha256", sa.Text, nullable=False),
        sa.Column("feature_names", JSONB, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("experiment_id", sa.Text, sa.ForeignKey("ml_experiments.experiment_id")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("promoted_at", sa.DateTime(timezone=True)),
        sa.Column("archived_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("status IN ('staging', 'production', 'archived')", name="status_known"),
        sa.CheckConstraint("checksum_sha256 ~ '^[0-9a-f]{64}$'", name="checksum_is_sha256"),
    )
    # at most one production model: the inference service must never have to choose
    op.create_index(
        "one_production_model", "model_registry", ["status"], unique=True, postgresql_where=sa.text("status = 'production'")
    )
    op.create_table(
        "data_quality_metrics",
        sa.Column("venue", sa.Text, nullable=False),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("trainable_rows", sa.Integer, nullable=False),
        sa.Column("invalid_book_rows", sa.Integer, nullable=False),
        sa.Column("stale_book_rows", sa.Integer, nullable=False),
        sa.Column("missing_label_rows", sa.Integer, nullable=False),
        sa.Column("mean_data_quality", sa.Float(53), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("venue", "symbol", "day"),
    )
    op.execute(
        "CREATE VIEW ml_training_data AS SELECT venue, symbol, ts_ms, "
        + ", ".join(FEATURES)
        + ", mid, label_mid, label_return FROM feature_store"
        " WHERE data_quality >= 1 AND label_return IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP VIEW ml_training_data")
    op.drop_table("data_quality_metrics")
    op.drop_index("one_production_model", table_name="model_registry")
    op.drop_table("model_registry")
    op.drop_table("ml_experiments")
    op.drop_table("feature_store")
