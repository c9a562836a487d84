"""Least-privilege grants for the run-time roles (the roles themselves are made by whoever runs the
database: the local stack, or the RDS master user in production; a role that does not exist is skipped).

- <owner>_loader: writes the feature store and the data-quality metrics (the batch loader).
- <owner>_trainer: reads features and labels, writes experiments and the model registry.
- <owner>_reporting: reads everything (reports, and inference reading the registry).

The owner (the migrating user) keeps DDL; no run-time role may create, alter or drop.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

GRANTS = {
    "loader": {"feature_store": "SELECT, INSERT, UPDATE, DELETE", "data_quality_metrics": "SELECT, INSERT, UPDATE, DELETE"},
    "trainer": {
        "feature_store": "SELECT",
        "data_quality_metrics": "SELECT",
        "ml_training_data": "SELECT",
        "ml_experiments": "SELECT, INSERT, UPDATE",
        "model_registry": "SELECT, INSERT, UPDATE",
    },
    "reporting": {
        "feature_store": "SELECT",
        "data_quality_metrics": "SELECT",
        "ml_training_data": "SELECT",
        "ml_experiments": "SELECT",
        "model_registry": "SELECT",
    },
}


def _for_each_role(kind: str) -> None:
    """Grant (or revoke) each existing role's privileges in the schema being migrated."""
    for role in GRANTS:
        op.execute(f"""
DO $$
DECLARE r text := current_user || '_{role}';
BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
    {_statements(role, kind)}
  END IF;
END $$""")


def _statements(role: str, kind: str) -> str:
    tables = GRANTS[role]
    if kind == "grant":
        lines = ["EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', current_schema(), r);"]
        lines += [
            f"EXECUTE format('GRANT {privs} ON TABLE %I.{table} TO %I', current_schema(), r);" for table, privs in tables.items()
        ]
    else:
        lines = [f"EXECUTE format('REVOKE ALL ON TABLE %I.{table} FROM %I', current_schema(), r);" for table in tables]
        lines.append("EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM %I', current_schema(), r);")
    return "\n    ".join(lines)


def upgrade() -> None:
    _for_each_role("grant")


def downgrade() -> None:
    _for_each_role("revoke")
