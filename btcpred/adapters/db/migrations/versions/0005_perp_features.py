"""Cross-market features: the leading perpetual's mid change beside spot's (``btcpred.udfs.features.PERP_FEATURES``).

Nullable, and NULL wherever no perpetual stream was configured beside spot or its feed was stale
at a boundary. As with 0004, the training view does not require them.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
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
ADDED = ("perp_lead_1s_bp", "perp_lead_5s_bp")
WHERE_0003 = " WHERE data_quality >= 1 AND label_return IS NOT NULL" + "".join(f" AND {name} IS NOT NULL" for name in ADDED_0003)


def _view(features: tuple[str, ...]) -> str:
    return (
        "CREATE OR REPLACE VIEW ml_training_data AS SELECT venue, symbol, ts_ms, "
        + ", ".join(FEATURES_0001)
        + ", mid, label_mid, label_return"
        + "".join(f", {name}" for name in features)
        + " FROM feature_store"
        + WHERE_0003
    )


def upgrade() -> None:
    for name in ADDED:
        op.add_column("feature_store", sa.Column(name, sa.Float(53), nullable=True))
    op.execute(_view(ADDED_0003 + ADDED_0004 + ADDED))  # columns appended in place: 0002's grants stay


def downgrade() -> None:
    # A view's columns cannot be dropped in place: recreate it as 0004 left it, with 0002's grants.
    op.execute("DROP VIEW ml_training_data")
    op.execute(_view(ADDED_0003 + ADDED_0004).replace("CREATE OR REPLACE", "CREATE"))
    for name in ADDED:
        op.drop_column("feature_store", name)
    for role in ("trainer", "reporting"):
        op.execute(f"""
DO $$
DECLARE r text := current_user || '_{role}';
BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
    EXECUTE format('GRANT SELECT ON TABLE %I.ml_training_data TO %I', current_schema(), r);
  END IF;
END $$""")
