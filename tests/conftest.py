import os
from pathlib import Path

import pytest
import redis

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BTCPRED_SHARED_DATA", REPO.parent / "shared" / "data"))
SPOT_CAPTURE = SHARED_DATA / "raw" / "hftbacktest" / "spot_btcusdt_20240808_ws.gz"


@pytest.fixture(scope="session")
def spot_events():
    """The 2024-08-08 binance.com spot capture (real data), loaded once."""
    from ingest.loaders import load_capture

    return list(load_capture(SPOT_CAPTURE).events())


# ---- real servers for integration and end-to-end tests: started once per session, reset per test
@pytest.fixture(scope="session")
def settings():
    from common.config import load_settings

    return load_settings(environ={})


@pytest.fixture(scope="session")
def local_stack(settings):
    from deploy.local import stack

    assert stack.main(["start"]) == 0, "local stack failed to start (see .local/*.log)"
    return settings


@pytest.fixture()
def redis_client(local_stack):
    client = redis.Redis.from_url(local_stack.redis.url)
    client.flushall()
    yield client
    client.close()
