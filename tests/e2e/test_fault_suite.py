"""The reliability fault suite, bounded for CI: every injected gap found and healed, nothing else disturbed."""
import pytest

from deploy.local.fault_suite import CI_SUITE, run_suite
from deploy.local.pipeline import Pipeline

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.mark.timeout(420)
def test_faults_are_detected_and_healed_without_disturbing_readers(redis_client, tmp_path):
    pipeline = Pipeline(speed=4.0, mini_cluster=True, log_dir=tmp_path, verify_interval_s=10.0)
    try:
        r = run_suite(pipeline, CI_SUITE, clean_s=10.0)
    finally:
        pipeline.stop()
    assert r["faults"] == len(CI_SUITE), r["details"]  # the replay outlasted the suite
    assert r["gaps_detected"] == r["gaps_injected"] == 5 and r["false_positives"] == 0, r["details"]
    assert r["reanchors"] == 5 and r["reanchor_p99_ms"] < 10_000
    assert r["books_equal_after_recovery"] == len(CI_SUITE)  # the exchange's book at the same update id, every time
    assert r["failed_reads"] == 0, r["read_failures_sample"]
    assert r["book_reads"] > 1000 and r["inference_reads"] > 100
    assert r["freshness_recovery_max_s"] < 10
    assert r["drift_checks"] >= 1 and r["drift_mismatched_levels"] == 0
    assert r["stream_frames"] > 1000 and r["bronze_lost"] == 0 and r["bronze_duplicated"] == 0
    # Redis restarted empty: the job kept running and rewrote ob: and fresh feat: within seconds
    (recovery_s,) = r["redis_restart_recovery_s"]
    assert recovery_s < 10 and r["reads_during_redis_outage"] > 0
    # the 429s and the 418 ban were honoured: those re-anchors took at least their Retry-After
    by_fault = {d["fault"]: d for d in r["details"]}
    assert by_fault["REST 429 x2 then drop"]["reanchors"][0][2] >= 2000
    assert by_fault["REST 418 ban 3 s then drop"]["reanchors"][0][2] >= 3000
