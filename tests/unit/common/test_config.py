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


def test_overrides_sit_between_file_and_environment():
    s = load_settings(environ={"BTCPRED_REDIS__PORT": "6391"}, overrides={"redis.port": "6390", "redis.host": "cache"})
    assert (s.redis.host, s.redis.port) == ("cache", 6391)


def test_bad_override_names_key_and_its_source(tmp_path):
    with pytest.raises(ConfigError, match=r"redis.prot: Extra inputs.*\(from props.json group BtcpredJob\)"):
        load_settings(environ={}, overrides={"redis.prot": "1"}, overrides_source="props.json group BtcpredJob")
    with pytest.raises(ConfigError, match=r"redis.port: .*valid integer.*\(from environment BTCPRED_REDIS__PORT\)"):
        load_settings(environ={"BTCPRED_REDIS__PORT": "many"})


def test_environment_name_selects_its_file():
    assert load_settings("prod", environ={}).redis.tls is True
    assert load_settings("prod", environ={}).redis.url.startswith("rediss://")


def test_secret_reference_is_resolved_and_never_echoed():
    seen = []

    def resolver(secret_id: str) -> str:
        seen.append(secret_id)
        return "t0ken"

    s = load_settings(environ={}, overrides={"redis.password": "secretsmanager:btcpred/redis"}, secret_resolver=resolver)
    assert seen == ["btcpred/redis"] and s.redis.password.get_secret_value() == "t0ken"

    def failing(secret_id: str) -> str:
        raise PermissionError("AccessDenied")

    with pytest.raises(ConfigError, match=r"redis.password: secret 'btcpred/redis' could not be read \(PermissionError\)"):
        load_settings(environ={}, overrides={"redis.password": "secretsmanager:btcpred/redis"}, secret_resolver=failing)
