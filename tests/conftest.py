import os
from pathlib import Path

import pytest
import redis

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SHARED_DATA_DIR", REPO.parent / "shared" / "data"))
SPOT_CAPTURE = SHARED_DATA / "raw" / "hftbacktest" / "spot_btcusdt_20240808_ws.gz"
USDM_CAPTURE = SHARED_DATA / "raw" / "hftbacktest" / "usdm_btcusdt_20240808_ws.gz"  # the same minutes, USD-M


# The fast lane's real data, committed (tests/data/capture/SOURCES.tsv): the first 60 s of the same two
# captures, so unit and job-graph tests run on a bare clone without ../shared
SPOT_SLICE = REPO / "tests" / "data" / "capture" / "spot_btcusdt_20240808_first60s_ws.gz"
USDM_SLICE = REPO / "tests" / "data" / "capture" / "usdm_btcusdt_20240808_first60s_ws.gz"


@pytest.fixture(scope="session")
def spot_slice():
    """The first 60 s of the 2024-08-08 binance.com spot capture (real data), loaded once."""
    from btcpred.adapters.loaders import load_capture

    return list(load_capture(SPOT_SLICE).events())


@pytest.fixture(scope="session")
def spot_events():
    """The 2024-08-08 binance.com spot capture (real data), loaded once."""
    from btcpred.adapters.loaders import load_capture

    return list(load_capture(SPOT_CAPTURE).events())


# ---- real servers for integration and end-to-end tests: started once per session, reset per test
@pytest.fixture(scope="session")
def settings():
    from btcpred.common.config import load_settings

    return load_settings(environ={})


@pytest.fixture(scope="session")
def local_stack(settings):
    from rig import stack

    assert stack.main(["start"]) == 0, "local stack failed to start (see .local/*.log)"
    return settings


@pytest.fixture()
def redis_client(local_stack):
    client = redis.Redis.from_url(local_stack.redis.url)
    client.flushall()
    yield client
    client.close()


BINANCE_US_BOOK = SHARED_DATA / "raw" / "binance_us" / "btcusdt_depth20_1hz_20260502_part1.parquet"


@pytest.fixture(scope="session")
def binance_us_rows(tmp_path_factory):
    """The Binance.US book's labelled feature rows (real data, all four hours), built once per session."""
    from btcpred.batch.datasets import from_directory

    d = tmp_path_factory.mktemp("binance_us")
    (d / BINANCE_US_BOOK.name).symlink_to(BINANCE_US_BOOK)
    return from_directory(d)


@pytest.fixture()
def isolated_settings(local_stack, tmp_path):
    """Settings whose Postgres schema and S3 bucket belong to this test alone (dropped afterwards)."""
    import uuid

    import boto3
    import psycopg

    from btcpred.common.config import aws_client_kwargs

    name = f"t_{uuid.uuid4().hex[:12]}"
    pg = local_stack.postgres
    conninfo = f"host={pg.host} port={pg.port} dbname={pg.database} user={pg.user} password={pg.password.get_secret_value()}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    settings = local_stack.model_copy(
        update={
            "postgres": pg.model_copy(update={"schema_name": name}),
            "s3": local_stack.s3.model_copy(update={"bucket": name.replace("_", "-")}),
        }
    )
    yield settings
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {name} CASCADE")
    s3 = boto3.resource("s3", **aws_client_kwargs(settings.s3))
    bucket = s3.Bucket(settings.s3.bucket)
    if bucket.creation_date:
        bucket.objects.all().delete()
        bucket.delete()


@pytest.fixture()
def pg_engine(isolated_settings):
    """An engine on a freshly migrated, private schema."""
    from btcpred.adapters.db import migrate
    from btcpred.adapters.db.schema import engine_for

    migrate.upgrade(isolated_settings.postgres)
    engine = engine_for(isolated_settings.postgres)
    yield engine
    engine.dispose()


def pytest_collection_modifyitems(config, items):
    """Every test under tests/unit is a ``unit`` test (pure code, no server, no JVM): the fast lane
    (``scripts/test.sh --fast``) selects ``unit or jobgraph``."""
    unit_dir = REPO / "tests" / "unit"
    for item in items:
        if unit_dir in Path(item.fspath).parents:
            item.add_marker(pytest.mark.unit)
