"""Trade-count imbalance, multi-level OFI and the 30 s / 5 min context; two duplicate inputs dropped.

Added (``btcpred.udfs.features``): ``count_imbalance_1s/5s``, ``ofi_l5/l10_norm_1s/5s`` and
``CONTEXT_FEATURES`` (``ret``, ``realized_vol``, ``signed_flow`` and ``count_imbalance`` over 30 s
and 300 s). Nullable: the multi-level flow and the context are absent while their look-back
reaches before the first event a replay or a job saw, and the training view does not require them
(a candidate reading them leaves out the rows without, as for the quote features).

Dropped: ``vol_imbalance`` (``depth_imbalance_10`` under another name) and ``microprice_offset_bp``
(half the spread times ``depth_imbalance_1``, in bp: the venue's spread level and nothing else).
The training view names both, so it is dropped and created again with 0002's grants, its seed
columns (0006) at the end as before; its full-quality rule no longer names the dropped column.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Frozen copies: migrations must not change when code does.
FEATURES_0001 = (
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
ADDED_0003 = ("ofi_norm_1s", "ofi_norm_2s", "ofi_norm_5s", "microprice_offset_bp")
ADDED_0004 = ("quote_imbalance", "quote_microprice_offset_bp", "quote_lead_bp", "quote_ofi_norm_1s", "quote_ofi_norm_5s")
ADDED_0005 = ("perp_lead_1s_bp", "perp_lead_5s_bp")
SEED_COLUMNS = ', to_timestamp(ts_ms / 1000.0) AS "timestamp", data_quality AS data_quality_score'
DROPPED = ("vol_imbalance", "microprice_offset_bp")
ADDED = (
    "count_imbalance_1s",
    "count_imbalance_5s",
    "ofi_l5_norm_1s",
    "ofi_l5_norm_5s",
    "ofi_l10_norm_1s",
    "ofi_l10_norm_5s",
    "ret_30s",
    "realized_vol_30s",
    "signed_flow_30s",
    "count_imbalance_30s",
    "ret_300s",
    "realized_vol_300s",
    "signed_flow_300s",
    "count_imbalance_300s",
)


def _keep(names: tuple[str, ...], dropped: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(n for n in names if n not in dropped)


def _view(dropped: tuple[str, ...], added: tuple[str, ...]) -> str:
    """The view as 0006 made it, less ``dropped``, with ``added`` before the seed columns."""
    required = _keep(ADDED_0003, dropped)
    return (
        "CREATE VIEW ml_training_data AS SELECT venue, symbol, ts_ms, "
        + ", ".join(_keep(FEATURES_0001, dropped))
        + ", mid, label_mid, label_return"
        + "".join(f", {name}" for name in _keep(ADDED_0003 + ADDED_0004 + ADDED_0005, dropped) + added)
        + SEED_COLUMNS
        + " FROM feature_store WHERE data_quality >= 1 AND label_return IS NOT NULL"
        + "".join(f" AND {name} IS NOT NULL" for name in required)
    )


def _grant_view() -> None:
    for role in ("trainer", "reporting"):
        op.execute(f"""
DO $$
DECLARE r text := current_user || '_{role}';
BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
    EXECUTE format('GRANT SELECT ON TABLE %I.ml_training_data TO %I', current_schema(), r);
  END IF;
END $$""")


def upgrade() -> None:
    op.execute("DROP VIEW ml_training_data")
    for name in DROPPED:
        op.drop_column("feature_store", name)
    for name in ADDED:
        op.add_column("feature_store", sa.Column(name, sa.Float(53), nullable=True))
    op.execute(_view(DROPPED, ADDED))
    _grant_view()


def downgrade() -> None:
    # Rows loaded since have no value for the dropped columns: they come back NULL-able, and the
    # view as 0006 left it requires microprice_offset_bp, so those rows leave the training view.
    op.execute("DROP VIEW ml_training_data")
    for name in ADDED:
        op.drop_column("feature_store", name)
    for name in DROPPED:
        op.add_column("feature_store", sa.Column(name, sa.Float(53), nullable=True))
    op.execute(_view((), ()))
    _grant_view()
