"""The seed's training query runs verbatim: ``timestamp`` and ``data_quality_score`` on the training view.

    SELECT * FROM ml_training_data WHERE timestamp BETWEEN '...' AND '...' AND data_quality_score > 0.95

``timestamp`` is the row's data time (``ts_ms``) as a ``timestamptz``; ``data_quality_score`` is the
feature store's ``data_quality`` (the view keeps full-quality rows only, so it reads 1). Appended at
the view's end, so 0002's grants stay.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
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
WHERE_0003 = " WHERE data_quality >= 1 AND label_return IS NOT NULL" + "".join(f" AND {name} IS NOT NULL" for name in ADDED_0003)
SEED_COLUMNS = ', to_timestamp(ts_ms / 1000.0) AS "timestamp", data_quality AS data_quality_score'


def _view(extra: str) -> str:
    return (
        "CREATE OR REPLACE VIEW ml_training_data AS SELECT venue, symbol, ts_ms, "
        + ", ".join(FEATURES_0001)
        + ", mid, label_mid, label_return"
        + "".join(f", {name}" for name in ADDED_0003 + ADDED_0004 + ADDED_0005)
        + extra
        + " FROM feature_store"
        + WHERE_0003
    )


def upgrade() -> None:
    op.execute(_view(SEED_COLUMNS))


def downgrade() -> None:
    op.execute("DROP VIEW ml_training_data")
    op.execute(_view("").replace("CREATE OR REPLACE", "CREATE"))
    for role in ("trainer", "reporting"):
        op.execute(f"""
DO $$
DECLARE r text := current_user || '_{role}';
BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
    EXECUTE format('GRANT SELECT ON TABLE %I.ml_training_data TO %I', current_schema(), r);
  END IF;
END $$""")
