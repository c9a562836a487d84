"""Backfill from the S3 bronze archive through the live job's graph equals what the live job wrote,
and so do the feature-store rows the training path builds from the same archive.

A real replay runs through the whole pipeline (the SBE archiver among it); then the
backfill job rebuilds the run's time range from bronze with a bounded source, and every
boundary's features and trade windows equal the live job's ``feathist:`` entries; then
``btcpred.batch.archive`` builds the run's archive hours into 2 s feature rows (no Flink), equal to
the live vectors at the same data times.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import pytest

from btcpred.batch import archive
from btcpred.adapters.lake import Lake
from rig.pipeline import Pipeline
from tests.e2e.test_pipeline_replay import decode
from btcpred.udfs.features import FEATURE_NAMES, HISTORY_US, same_feature

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.mark.timeout(420)
def test_bronze_backfill_equals_live_features(redis_client, tmp_path):
    pipeline = Pipeline(speed=20.0, mini_cluster=True, log_dir=tmp_path, verify_interval_s=3600)
    started_us = time.time_ns() // 1000
    try:
        pipeline.start(wait_for_job=True)
        status, ob = pipeline.wait_caught_up(redis_client)
        assert status["finished"] and int(ob["last_update_id"]) == status["last_update_id"], status
        pipeline.wait_final_boundary(redis_client, status)
        pipeline.wait_archived()
    finally:
        pipeline.stop()  # the archiver flushes what it has read to bronze on SIGTERM
    live = {int(e["ts"]): e for e in (decode(f) for _, f in redis_client.xrange("feathist:{BTCUSDT}"))}

    out = tmp_path / "backfill.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "btcpred.flink_jobs.backfill_job", "--stream", pipeline.stream, "--start-us", str(started_us),
         "--end-us", str(time.time_ns() // 1000), "--out", str(out), "--work-dir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=240, env=pipeline.env())
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    rebuilt = {int(row["ts"]): row for row in map(json.loads, out.read_text().splitlines())}
    assert summary["boundaries"] == len(rebuilt) > 600

    # the live job also cut boundaries while the replay's tail was still arriving; the backfill's
    # last boundaries come from its final watermark: compare where both have the boundary
    common = sorted(set(live) & set(rebuilt))
    assert len(common) >= len(live) - 2, (len(common), len(live))
    for ts in common:
        a, b = live[ts], rebuilt[ts]
        for name in (*FEATURE_NAMES, "mid", "book_valid", "book_update_id"):
            assert same_feature(a.get(name), b.get(name), 1e-12), (ts, name)
        for window in ("1s", "5s"):
            for field in ("count", "vol", "signed_vol", "vwap_minus_mid", "last_ts_us"):
                key = f"tr_{window}_{field}"
                assert math.isclose(float(a[key]), float(b[key]), rel_tol=1e-12, abs_tol=1e-12), (ts, key)

    # the training path builds the feature store from the same archive without Flink (batch.archive,
    # hour by hour): its 2 s vectors are the live job's for the same data times
    built = archive.build(pipeline.settings.s3, None, pipeline.stream, "BTCUSDT", "binance.com", through_now=True, rebuild=True)
    lake = Lake(pipeline.settings.s3)
    rows = {row["ts_ms"] * 1000: row for b in built for row in lake.get_table(b.key).to_pylist()}
    settled_us = max(min(rows), min(live)) + HISTORY_US  # both look-backs filled
    compared = [ts for ts in sorted(rows) if ts >= settled_us and ts in live]
    assert len(compared) > 100 and len(compared) >= sum(1 for ts in rows if ts >= settled_us) - 3, (len(compared), len(rows))
    for ts in compared:
        for name in (*FEATURE_NAMES, "mid"):
            assert same_feature(live[ts].get(name), rows[ts][name], 1e-12), (ts, name)
        assert (live[ts]["book_valid"] == "1.0") == rows[ts]["book_valid"], ts
        assert int(float(live[ts]["book_update_id"])) == rows[ts]["book_update_id"], ts

