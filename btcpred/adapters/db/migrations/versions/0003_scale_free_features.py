"""Scale-free features: OFI in units of the window's best-level depth and the micro-price offset in bp.

Rows loaded before this revision have no values for them (NULL) and the training view
leaves them out: a model trained on them would see zeros that mean "unknown". Rebuilding
the silver data and reloading it (``btcpred.batch.train --data`` or ``btcpred.batch.archive``) fills them.
The view is replaced in place with its new columns appended, so the grants of 0002 stay.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen copies, as in 0001: migrations must not change when code does.
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
ADDED = ("ofi_norm_1s", "ofi_norm_2s", "ofi_norm_5s", "microprice_offset_bp")
LABELLED = " WHERE data_quality >= 1 AND label_return IS NOT NULL"


def _view(features: tuple[str, ...], where: str) -> str:
    return (
        "CREATE OR REPLACE VIEW ml_training_data AS SELECT venue, symbol, ts_ms, "
        + ", ".join(FEATURES_0001)
        + ", mid, label_mid, label_return"
        + "".join(f", {name}" for name in features)
        + " FROM feature_store"
        + where
    )


def upgrade() -> None:
    for name in ADDED:
        op.add_column("feature_store", sa.Column(name, sa.Float(53), nullable=True))
    op.execute(_view(ADDED, LABELLED + "".join(f" AND {name} IS NOT NULL" for name in ADDED)))


def downgrade() -> None:
    # A view's columns cannot be dropped in place: recreate it as 0001 made it, and its grants (0002).
    op.execute("DROP VIEW ml_training_data")
    op.execute(_view((), LABELLED).replace("CREATE OR REPLACE", "CREATE"))
    for name in ADDED:
        op.drop_column("feature_store", name)
    for role in ("trainer", "reporting"):  # the roles 0002 lets read the view
        op.execute(f"""
DO $$
DECLARE r text := current_user || '_{role}';
BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
    EXECUTE format('GRANT SELECT ON TABLE %I.ml_training_data TO %I', current_schema(), r);
  END IF;
END $$""")
