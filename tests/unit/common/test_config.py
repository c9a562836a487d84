from pathlib import Path

import pytest

from btcpred.common.config import ConfigError, load_settings


def fake_secrets(secret_id: str) -> str:
    return f"from {secret_id}"


def test_every_env_file_loads():
    for env in ("local", "dev", "prod"):
        assert load_settings(environ={"BTCPRED_ENV": env}, secret_resolver=fake_secrets).env == env


def test_prod_runs_every_service_as_its_own_redis_user_on_a_tls_cluster():
    redis = load_settings("prod", environ={}, secret_resolver=fake_secrets).redis
    assert redis.cluster and redis.tls
    assert redis.credentials("inference") == ("inference", "from btcpred/prod/redis/inference")
    assert redis.url_for("hotpath") == "rediss://hotpath:from%20btcpred%2Fprod%2Fredis%2Fhotpath@redis.prod.internal:6379/0"


def test_local_secrets_are_made_once_and_kept(tmp_path):
    from btcpred.common.config import local_secret

    first = local_secret("redis-x", tmp_path)
    assert len(first) >= 32 and local_secret("redis-x", tmp_path) == first != local_secret("redis-y", tmp_path)
    assert (tmp_path / "redis-x").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ValueError):
        local_secret("../escape", tmp_path)


def test_redis_users_come_all_or_none(tmp_path):
    path = tmp_path / "half.yaml"
    path.write_text("env: local\nredis: {users: {hotpath: pw}}\n")
    with pytest.raises(ConfigError, match=r"half.yaml: redis: .*no password for inference, reanchor, trainer"):
        load_settings(path, environ={})
    plain = load_settings(
        tmp_path / "half.yaml",
        environ={
            "BTCPRED_REDIS__USERS__INFERENCE": "i",
            "BTCPRED_REDIS__USERS__REANCHOR": "r",
            "BTCPRED_REDIS__USERS__TRAINER": "t",
        },
    )
    assert plain.redis.credentials("reanchor") == ("reanchor", "r") and plain.redis.credentials(None) == (None, None)


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
    prod = load_settings("prod", environ={}, secret_resolver=fake_secrets)
    assert prod.env == "prod" and prod.redis.url.startswith("rediss://")


def test_secret_reference_is_resolved_and_never_echoed():
    seen = []

    def resolver(secret_id: str) -> str:
        seen.append(secret_id)
        return "t0ken"

    s = load_settings(environ={}, overrides={"redis.password": "secretsmanager:btcpred/redis"}, secret_resolver=resolver)
    assert seen == []  # read when first used, not at load
    assert s.redis.password.get_secret_value() == "t0ken" and s.redis.password.get_secret_value() == "t0ken"
    assert seen == ["btcpred/redis"]  # once
    assert "t0ken" not in repr(s) and "t0ken" not in str(s.redis)

    def failing(secret_id: str) -> str:
        raise PermissionError("AccessDenied")

    s = load_settings(environ={}, overrides={"redis.password": "secretsmanager:btcpred/redis"}, secret_resolver=failing)
    with pytest.raises(ConfigError, match=r"redis.password: secret 'btcpred/redis' could not be read \(PermissionError\)"):
        s.redis.url_for(None)


def test_a_process_reads_only_the_secrets_it_uses():
    """prod.yaml names every role's secrets; the hot-path job's role may read its Redis user's only."""
    seen = []
    s = load_settings("prod", environ={}, secret_resolver=lambda secret_id: seen.append(secret_id) or "x")
    s.redis.url_for("hotpath")
    assert seen == ["btcpred/prod/redis/hotpath"]


def test_no_password_is_written_into_a_config_file():
    """Config files hold references (localsecret:, secretsmanager:), never a secret itself."""
    import yaml

    from btcpred.common.config import CONFIG_DIR

    def walk(node, path=()):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from walk(value, (*path, str(key)))
        else:
            yield path, node

    for config in CONFIG_DIR.glob("*.yaml"):
        for path, value in walk(yaml.safe_load(config.read_text())):
            if any(part in ("password", "users", "roles", "secret_access_key") for part in path):
                assert str(value).startswith(("localsecret:", "secretsmanager:")), f"{config.name}: {'.'.join(path)}"


def test_dev_and_prod_verify_postgres_against_the_ca_the_image_carries():
    from sqlalchemy.engine import make_url

    from btcpred.adapters.db.schema import database_url

    dockerfile = (Path(__file__).resolve().parents[3] / "deploy" / "docker" / "Dockerfile").read_text()
    for env in ("dev", "prod"):
        pg = load_settings(env, environ={}, secret_resolver=fake_secrets).postgres
        query = make_url(database_url(pg, "trainer")).query
        assert query["sslmode"] == "verify-full" and query["sslrootcert"] == pg.sslrootcert
        assert f" {pg.sslrootcert}\n" in dockerfile  # the image puts the bundle where the config reads it
    local = load_settings("local", environ={}).postgres
    assert make_url(database_url(local)).query == {"sslmode": "prefer"}


def test_the_boundary_grid_is_a_multiple_of_the_context_buckets():
    from pydantic import ValidationError

    from btcpred.common.config import FlinkJobConfig

    with pytest.raises(ValidationError, match="multiple of 500"):
        FlinkJobConfig(emit_interval_ms=750)  # the 30 s / 5 min windows would end between boundaries
    assert FlinkJobConfig(emit_interval_ms=1000).emit_interval_ms == 1000
