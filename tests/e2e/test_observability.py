"""A minute of the live pipeline: Prometheus scrapes every process, and every series an
alert rule or a dashboard panel reads exists (no panel points at a metric nobody exports)."""
import time

import pytest

from deploy import observability
from deploy.local.pipeline import Pipeline

pytestmark = pytest.mark.e2e

SERVICES = {"inference", "ingestor", "reanchor", "rest-poller", "sbe-archiver"}


def test_every_series_used_by_alerts_and_dashboards_is_exported(local_stack, redis_client, tmp_path):
    base = f"http://127.0.0.1:{local_stack.prometheus.port}"
    used = observability.series_used()
    assert len(used) > 40 and "inference_cycle_latency_seconds_bucket" in used  # the extraction itself works
    pipeline = Pipeline(speed=3.0, mini_cluster=True, log_dir=tmp_path)
    try:
        pipeline.start(wait_for_job=True)
        deadline = time.monotonic() + 90
        missing, up = sorted(used), set()
        while time.monotonic() < deadline and (missing or not SERVICES <= up):
            time.sleep(5)
            pipeline.check_alive()
            targets = observability.prometheus_get(base, "/api/v1/targets")["activeTargets"]
            up = {t["labels"]["job"] for t in targets if t["health"] == "up"}
            missing = observability.missing_series(base, sorted(used))
        assert SERVICES | {"flink"} <= up, f"targets not up: {sorted(SERVICES | {'flink'} - up)}"
        assert missing == [], {name: sorted(used[name]) for name in missing}
        # the job's own metrics carry its name: the dashboards' job filter finds them
        gaps = observability.prometheus_get(base, "/api/v1/series", **{"match[]": "flink_taskmanager_job_task_operator_sequenceGaps"})
        assert {s["job_name"] for s in gaps} == {"btcusdt_hot_path"}  # the reporter turns "-" into "_"
        # Prometheus loaded the alert rules it evaluates
        rules = observability.prometheus_get(base, "/api/v1/rules")["groups"]
        alerts = {r["name"] for g in rules for r in g["rules"] if r["type"] == "alerting"}
        assert {"InferenceMissedCycle", "FeatureAgeDegraded", "KinesisIteratorAgeHigh", "FlinkCheckpointFailures"} <= alerts
    finally:
        pipeline.stop()
