"""The operator's command against the real servers: the hot state shown, the registry rolled back."""

import pytest
from click.testing import CliRunner

from btcpred.adapters import registry
from btcpred.adapters.lake import Lake
from btcpred.cli import main
from btcpred.udfs import redis_schema as rs
from tests.integration.model_fixtures import real_rows, register_model, write_features

pytestmark = pytest.mark.integration


def test_state_show_prints_the_book_the_features_with_their_ages_and_the_recent_gaps(redis_client):
    rows = real_rows(20)
    write_features(redis_client, rows[-1], age_s=0.5)
    redis_client.hset(rs.ob_key("BTCUSDT"), "book_valid", "1")  # as the job writes it
    redis_client.xadd(rs.gap_stream_key("BTCUSDT"), {"expected_update_id": "5", "got_first_update_id": "9"})
    redis_client.xadd(rs.reanchor_log_key("BTCUSDT"), {"outcome": "ok", "reason": "gap"})
    result = CliRunner().invoke(main, ["state", "show", "BTCUSDT"])
    assert result.exit_code == 0, result.output
    out = result.output
    book = redis_client.hgetall(rs.ob_key("BTCUSDT"))
    assert f"bid {book[b'best_bid'].decode()}" in out and "book      valid" in out
    assert "features  present: data time" in out and "written 0.5" in out  # its age, as written
    assert "recent gaps: 1" in out and "expected_update_id" in out and "recent reanchors: 1" in out
    shown = CliRunner().invoke(main, ["state", "show", "BTCUSDT", "--json"])
    assert '"valid": true' in shown.output


def test_registry_promote_and_rollback_put_the_previous_model_back(isolated_settings, pg_engine, local_stack):
    lake = Lake(isolated_settings.s3)
    lake.ensure_bucket()
    rows = real_rows(300)
    first = register_model(pg_engine, lake, rows, "mlp-cli-1")
    second = register_model(pg_engine, lake, rows, "mlp-cli-2", seed=1)
    env = {
        "BTCPRED_POSTGRES__SCHEMA_NAME": isolated_settings.postgres.schema_name,
        "BTCPRED_S3__BUCKET": isolated_settings.s3.bucket,
    }
    runner = CliRunner()
    assert runner.invoke(main, ["registry", "promote", first], env=env).exit_code == 0
    promoted = runner.invoke(main, ["registry", "promote", second], env=env)
    assert promoted.exit_code == 0 and f"{second} is production; {first} archived" in promoted.output
    back = runner.invoke(main, ["registry", "rollback"], env=env)
    assert back.exit_code == 0 and f"{first} is production again; {second} archived" in back.output
    assert registry.production(pg_engine).model_version == first
    listed = runner.invoke(main, ["registry", "list"], env=env)
    assert first in listed.output and "production" in listed.output
