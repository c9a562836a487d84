"""Every published prediction, champion and challengers, so any period can be scored and drawn later.

One row per (symbol, cycle boundary, model version): the champion's answer (``role`` champion,
or the flagged fallback) and each challenger's shadow answer (``role`` challenger). Written by
the retraining job from the ``pred:{symbol}`` stream (<owner>_trainer), read by reports
(<owner>_reporting).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

GRANTS = {"trainer": "SELECT, INSERT, UPDATE", "reporting": "SELECT"}


def _grant(kind: str) -> None:
    for role, privs in GRANTS.items():
        statement = (
            f"EXECUTE format('GRANT {privs} ON TABLE %I.predictions TO %I', current_schema(), r);"
            if kind == "grant"
            else "EXECUTE format('REVOKE ALL ON TABLE %I.predictions FROM %I', current_schema(), r);"
        )
        op.execute(f"""
DO $$
DECLARE r text := current_user || '_{role}';
BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
    {statement}
  END IF;
END $$""")


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("boundary_ms", sa.BigInteger, nullable=False),  # the 2 s wall-clock cycle
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),  # champion | challenger
        sa.Column("market", sa.Text),
        sa.Column("source", sa.Text, nullable=False),  # redis | fallback (a challenger: redis)
        sa.Column("fallback_reason", sa.Text),
        sa.Column("feature_time_ms", sa.BigInteger),  # data time of the features used
        sa.Column("target_time_ms", sa.BigInteger),  # data time the prediction is for
        sa.Column("base_price", sa.Float(53)),
        sa.Column("predicted_price", sa.Float(53)),
        sa.Column("price_low", sa.Float(53)),
        sa.Column("price_high", sa.Float(53)),
        sa.Column("confidence", sa.Float(53)),
        sa.PrimaryKeyConstraint("symbol", "boundary_ms", "model_version"),
    )
    op.create_index("predictions_by_feature_time", "predictions", ["symbol", "feature_time_ms"])
    _grant("grant")


def downgrade() -> None:
    _grant("revoke")
    op.drop_index("predictions_by_feature_time", "predictions")
    op.drop_table("predictions")
