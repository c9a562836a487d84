"""Real servers for integration tests: started once per session by the stack script, reset per test."""
import pytest
import redis

from common.config import load_settings
from deploy.local import stack


@pytest.fixture(scope="session")
def settings():
    return load_settings(environ={})


@pytest.fixture(scope="session")
def local_stack(settings):
    assert stack.main(["start"]) == 0, "local stack failed to start (see .local/*.log)"
    return settings


@pytest.fixture()
def redis_client(local_stack):
    client = redis.Redis.from_url(local_stack.redis.url)
    client.flushall()
    yield client
    client.close()
