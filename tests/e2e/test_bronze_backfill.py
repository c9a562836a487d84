"""Backfill from the S3 bronze archive through the live job's graph equals what the live job wrote,
and so do the feature-store rows the training path builds from the same archive.

A real replay runs through the whole pipeline (the SBE archiver among it); then the
backfill job rebuilds the run's time range from bronze with a bounded source, and every
boundary's features and trade windows equal the live job's ``feathist:`` entries; then
``btcpred.batch.archive`` builds the run's archive hours into 2 s feature rows (no Flink), equal to
the live vectors at the same data times.

The run carries a second symbol, a replay key (``BTCUSDT-R1``: the same real frames under another
name, ``exchange.symbols``), through the whole live path: the ingestor subscribes to both, the
job keeps a book per key, the archiver files each under its own symbol.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from btcpred.adapters.lake import Lake
from btcpred.batch import archive
from btcpred.udfs import lake_layout
from btcpred.udfs.features import FEATURE_NAMES, HISTORY_US, same_feature
from rig.pipeline import Pipeline, flink_reporter_samples, get_json
from tests.e2e.test_pipeline_replay import compare_book, decode

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.mark.timeout(420)
def symbol_gauges(ports: str, name: str) -> dict[str, float]:
    """A job gauge per ``symbol`` label, off Flink's Prometheus reporter."""
    return {s.labels["symbol"]: s.value for s in flink_reporter_samples(ports, name) if "symbol" in s.labels}


def test_bronze_backfill_equals_live_features(redis_client, tmp_path):
    pipeline = Pipeline(speed=20.0, mini_cluster=True, log_dir=tmp_path, verify_interval_s=3600, replay_keys=1)
    replay_key = pipeline.symbols[1]
    started_us = time.time_ns() // 1000
    try:
        pipeline.start(wait_for_job=True)
        status, ob = pipeline.wait_caught_up(redis_client)
        assert status["finished"] and int(ob["last_update_id"]) == status["last_update_id"], status
        pipeline.wait_final_boundary(redis_client)
        # the replay key's book, its own key, followed its own frames to the exchange's last update id
        deadline = time.monotonic() + 30
        while int(redis_client.hget(f"ob:{{{replay_key}}}", "last_update_id") or 0) < status["last_update_id"]:
            assert time.monotonic() < deadline, decode(redis_client.hgetall(f"ob:{{{replay_key}}}"))
            time.sleep(0.2)
        ob_key = decode(redis_client.hgetall(f"ob:{{{replay_key}}}"))
        assert int(ob_key["last_update_id"]) == status["last_update_id"] and ob_key["book_valid"] == "1"
        compare_book(ob_key, get_json(f"{pipeline.sim_url}/sim/book?symbol={replay_key}&update_id={status['last_update_id']}"))
        # each key's own gauges, a symbol label apart (the operator-wide ones show whichever ran last)
        per_symbol = symbol_gauges(pipeline.settings.flink.metrics_reporter_ports, "lastBookUpdateId")
        labels = [s.replace("-", "_") for s in pipeline.symbols]  # Flink's reporter turns - into _ in label values
        assert per_symbol == dict.fromkeys(labels, status["last_update_id"]), per_symbol
        valid = symbol_gauges(pipeline.settings.flink.metrics_reporter_ports, "bookValid")
        assert valid == dict.fromkeys(labels, 1), valid
        # no key's diff or quote reached it after a boundary at its time was cut (the ingestor once sent
        # one key's records of a long window before the other's: the shared watermark ran past them)
        late = symbol_gauges(pipeline.settings.flink.metrics_reporter_ports, "lateBookEvents")
        assert late == dict.fromkeys(labels, 0), late
        pipeline.wait_archived()
    finally:
        pipeline.stop()  # the archiver flushes what it has read to bronze on SIGTERM
    live = {int(e["ts"]): e for e in (decode(f) for _, f in redis_client.xrange("feathist:{BTCUSDT}"))}
    assert redis_client.xlen(f"feathist:{{{replay_key}}}") >= len(live) - 2  # cut by the same watermark

    # bronze files each record under its partition key's symbol: the same frames, once each, apart
    lake = Lake(pipeline.settings.s3)
    archived = {}
    for symbol in pipeline.symbols:
        tables = [
            lake.get_table(k)
            for k in lake.keys(lake_layout.sbe_symbol_prefix(symbol))
            if k.rsplit("/", 1)[-1].startswith(f"{pipeline.stream}.")
        ]
        archived[symbol] = [
            (v, template)
            for t in tables
            for v, template in zip(t.column("symbol").to_pylist(), t.column("template_id").to_pylist())
            if template != -1
        ]  # the pipeline's probe record is no frame
    assert {s: {v for v, _ in rows} for s, rows in archived.items()} == {s: {s} for s in pipeline.symbols}
    assert len(archived["BTCUSDT"]) == len(archived[replay_key]) > 40_000

    out = tmp_path / "backfill.jsonl"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "btcpred.flink_jobs.backfill_job",
            "--stream",
            pipeline.stream,
            "--from",
            datetime.fromtimestamp(started_us / 1e6, timezone.utc).isoformat(),
            "--to",
            datetime.now(timezone.utc).isoformat(),
            "--out",
            str(out),
            "--work-dir",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=pipeline.env(),
    )
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
            assert same_feature(a.get(name), b.get(name), 1e-12), (
                ts,
                name,
                a.get(name),
                b.get(name),
                "book update id live/backfill",
                a.get("book_update_id"),
                b.get("book_update_id"),
            )
        for window in ("1s", "5s"):
            for field in ("count", "vol", "signed_vol", "vwap_minus_mid", "last_ts_us"):
                key = f"tr_{window}_{field}"
                assert math.isclose(float(a[key]), float(b[key]), rel_tol=1e-12, abs_tol=1e-12), (ts, key)

    # the training path builds the feature store from the same archive without Flink (batch.archive,
    # hour by hour): its 2 s vectors are the live job's for the same data times
    built = archive.build(pipeline.settings.s3, None, pipeline.stream, "BTCUSDT", "binance.com", through_now=True, rebuild=True)
    rows = {row["ts_ms"] * 1000: row for b in built for row in lake.get_table(b.key).to_pylist()}
    settled_us = max(min(rows), min(live)) + HISTORY_US  # both look-backs filled
    compared = [ts for ts in sorted(rows) if ts >= settled_us and ts in live]
    assert len(compared) > 100 and len(compared) >= sum(1 for ts in rows if ts >= settled_us) - 3, (len(compared), len(rows))
    for ts in compared:
        for name in (*FEATURE_NAMES, "mid"):
            assert same_feature(live[ts].get(name), rows[ts][name], 1e-12), (ts, name)
        assert (live[ts]["book_valid"] == "1.0") == rows[ts]["book_valid"], ts
        assert int(float(live[ts]["book_update_id"])) == rows[ts]["book_update_id"], ts
