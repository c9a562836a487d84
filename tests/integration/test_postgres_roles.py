"""Each run-time PostgreSQL role can do its job and nothing more (grants: migration 0002; logins: the stack)."""

import psycopg
import pytest
import sqlalchemy as sa

from btcpred.adapters.db.schema import FEATURE_STORE_COLUMNS, engine_for

pytestmark = pytest.mark.integration


def feature_row(ts_ms: int) -> str:
    """A complete feature-store row (unknown-typed '0' literals fit every value column)."""
    values = ["'test'", "'BTCUSDT'", str(ts_ms), "'test'", *["'0'"] * (len(FEATURE_STORE_COLUMNS) - 4)]
    return f"INSERT INTO feature_store ({', '.join(FEATURE_STORE_COLUMNS)}) VALUES ({', '.join(values)})"


FEATURE_ROW = feature_row(1)
EXPERIMENT = (
    "INSERT INTO ml_experiments (experiment_id, model_kind, hyperparameters, feature_names, data_ranges, metrics, "
    "created_at) VALUES ('e1', 'ridge', '{}', '[]', '{}', '{}', now())"
)
REGISTRY_ROW = (
    "INSERT INTO model_registry (model_version, artifact_uri, checksum_sha256, feature_names, status, created_at) "
    "VALUES ('m1', 's3://x/m1', '" + "ab" * 32 + "', '[]', 'staging', now())"
)


def run(cfg, role, sql: str) -> None:
    engine = engine_for(cfg, role)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(sql))
    finally:
        engine.dispose()


def refused(cfg, role, sql: str) -> None:
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied|must be owner"):
        run(cfg, role, sql)


@pytest.fixture()
def pg(pg_engine, isolated_settings):
    return isolated_settings.postgres


def test_feature_store_column_list_needs_no_null_defaults(pg):
    """The rows these tests insert are valid: only the role decides whether they land."""
    run(pg, None, feature_row(0))


def test_loader_writes_the_feature_store_and_nothing_of_the_registry(pg):
    run(pg, "loader", FEATURE_ROW)
    run(pg, "loader", "DELETE FROM feature_store WHERE venue = 'test'")  # reloading a day replaces it
    refused(pg, "loader", EXPERIMENT)
    refused(pg, "loader", REGISTRY_ROW)
    refused(pg, "loader", "SELECT * FROM model_registry")
    refused(pg, "loader", "DROP TABLE feature_store")
    refused(pg, "loader", "CREATE TABLE sneaky (x int)")


def test_trainer_reads_features_and_writes_experiments_and_registry_only(pg):
    run(pg, None, FEATURE_ROW)
    run(pg, "trainer", "SELECT count(*) FROM ml_training_data")
    run(pg, "trainer", EXPERIMENT)
    run(pg, "trainer", REGISTRY_ROW)
    run(pg, "trainer", "UPDATE model_registry SET status = 'archived' WHERE model_version = 'm1'")
    refused(pg, "trainer", feature_row(2))
    refused(pg, "trainer", "DELETE FROM feature_store")
    refused(pg, "trainer", "DELETE FROM model_registry")  # history is archived, never deleted
    refused(pg, "trainer", "ALTER TABLE model_registry ADD COLUMN x int")


def test_reporting_reads_everything_and_writes_nothing(pg):
    run(
        pg,
        "reporting",
        "SELECT (SELECT count(*) FROM feature_store) + (SELECT count(*) FROM model_registry) "
        "+ (SELECT count(*) FROM ml_experiments) + (SELECT count(*) FROM data_quality_metrics)",
    )
    for sql in (
        FEATURE_ROW,
        EXPERIMENT,
        REGISTRY_ROW,
        "UPDATE model_registry SET status = 'production'",
        "TRUNCATE feature_store",
    ):
        refused(pg, "reporting", sql)


def test_no_login_is_a_superuser_and_passwords_are_checked(pg):
    for role in (None, "loader", "trainer", "reporting"):
        user, password = pg.credentials(role)
        with psycopg.connect(host=pg.host, port=pg.port, dbname=pg.database, user=user, password=password) as conn:
            assert conn.execute("SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user").fetchone() == (
                False,
                False,
            )
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host=pg.host, port=pg.port, dbname=pg.database, user=pg.role_name("reporting"), password="wrong")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host=pg.host, port=pg.port, dbname=pg.database, user="postgres", password="postgres")
