import pytest

from common.config import ConfigError, load_settings


def test_every_env_file_loads():
    for env in ("local", "dev", "prod"):
        assert load_settings(environ={"BTCPRED_ENV": env}).env == env


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("env: local\nredis: {hots: x}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: redis.hots: Extra inputs"):
        load_settings(path, environ={})


def test_environment_overrides_nested_value():
    s = load_settings(environ={"BTCPRED_REDIS__PORT": "6390", "BTCPRED_REDIS__PASSWORD": "s3cret"})
    assert s.redis.port == 6390
    assert "s3cret" not in repr(s) and s.redis.url == "redis://:s3cret@127.0.0.1:6390/0"


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml", environ={})
