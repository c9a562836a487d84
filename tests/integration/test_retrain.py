"""A retraining cycle on the real servers: the archive first, then the rolling window, then the gate; every
outcome on record, "not enough data" included."""

import json

import pytest
import sqlalchemy as sa

from btcpred.adapters.db.schema import engine_for
from btcpred.batch import retrain, train
from tests.conftest import BINANCE_US_BOOK

pytestmark = pytest.mark.integration


def retrain_rows(engine) -> list:
    with engine.connect() as conn:
        return [
            r.metrics
            for r in conn.execute(
                sa.text("SELECT metrics FROM ml_experiments WHERE model_kind = 'retrain' ORDER BY experiment_id")
            )
        ]


@pytest.mark.timeout(240)
def test_a_cycle_records_why_nothing_was_trained_then_trains_the_window_and_gates_it(isolated_settings, pg_engine, tmp_path):
    # an empty archive and an empty store: nothing to train, and that is on record
    first = retrain.cycle(
        isolated_settings, venue="binance.us", symbol="BTCUSDT", stream="no-such-stream", window_hours=3, report_dir=tmp_path
    )
    assert first["outcome"] == "not_enough_data" and first["archive_hours"] == 0
    assert [r["outcome"] for r in retrain_rows(pg_engine)] == ["not_enough_data"]

    data = tmp_path / "data"
    data.mkdir()
    (data / BINANCE_US_BOOK.name).symlink_to(BINANCE_US_BOOK)
    loader = engine_for(isolated_settings.postgres, "loader")
    try:
        train.refresh_feature_store(isolated_settings.s3, loader, data)  # 4 hours of a real book
    finally:
        loader.dispose()
    second = retrain.cycle(
        isolated_settings, venue="binance.us", symbol="BTCUSDT", stream="no-such-stream", window_hours=3, report_dir=tmp_path
    )
    assert second["outcome"] in ("promoted", "kept") and second["production"] is not None
    assert second["outcome"] == "promoted"  # nothing was in production: the gate's pick or persistence serves
    ranges = [g for g in second["gate"]][0]
    assert ranges["n"] > 500
    with pg_engine.connect() as conn:
        first_ts, last_ts = conn.execute(
            sa.text(
                "SELECT (data_ranges->'train'->>0)::bigint, (data_ranges->'test'->>1)::bigint FROM ml_experiments "
                "WHERE model_kind = 'gate' ORDER BY experiment_id DESC LIMIT 1"
            )
        ).one()
    assert last_ts - first_ts <= 3 * 3_600_000  # the rolling window, not all four hours
    assert [r["outcome"] for r in retrain_rows(pg_engine)] == ["not_enough_data", "promoted"]


def test_the_scheduled_task_prints_the_line_the_aws_staleness_alarm_counts(isolated_settings, monkeypatch, capsys, tmp_path):
    """In AWS the one-shot task's stdout goes to its log group, where a metric filter counts the lines
    that are a JSON object with an ``outcome`` (deploy/managed_flink/template.yaml,
    RetrainCompletedMetricFilter): the alarm stays quiet only while that line is printed."""
    monkeypatch.setenv("BTCPRED_POSTGRES__SCHEMA_NAME", isolated_settings.postgres.schema_name)
    monkeypatch.setenv("BTCPRED_S3__BUCKET", isolated_settings.s3.bucket)
    assert retrain.main(["--venue", "binance.us", "--stream", "no-such-stream", "--report-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["outcome"] == "not_enough_data"
