"""Faults injected into a real replay: dropped diffs (gap -> re-anchor), a corrupt frame, a trade-free stretch.

Synthetic damage only (the simulator's fault switches) on top of the real capture;
the re-anchor service runs as in production, with a drift check every 5 s.
"""
from __future__ import annotations

import json
import time

import pytest

from deploy.local.fault_suite import decode, post_json
from deploy.local.pipeline import Pipeline, get_json
from tests.e2e.test_pipeline_replay import compare_book

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def wait_until(pipeline: Pipeline, predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pipeline.check_alive()
        status = get_json(f"{pipeline.sim_url}/sim/status")
        if predicate(status):
            return status
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(420)
def test_gap_corrupt_frame_and_quiet_market(redis_client, tmp_path):
    pipeline = Pipeline(speed=10.0, mini_cluster=True, log_dir=tmp_path, verify_interval_s=5.0)
    try:
        pipeline.start(wait_for_job=True)  # no start-up backlog: drift checks then meet a book that keeps up
        wait_until(pipeline, lambda s: s["position"] > 0.25 * s["total"] and redis_client.exists("feat:{BTCUSDT}"), 240, "features")
        post_json(f"{pipeline.sim_url}/sim/faults", {"corrupt_next": 1, "corrupt_stream": "btcusdt@bestBidAsk", "mute_trades_ms": 4000})
        wait_until(pipeline, lambda s: s["position"] > 0.5 * s["total"], 120, "half of the replay")
        post_json(f"{pipeline.sim_url}/sim/faults", {"drop_diffs": 2})
        status = wait_until(pipeline, lambda s: s["finished"], 240, "end of replay")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ob = decode(redis_client.hgetall("ob:{BTCUSDT}"))
            if int(ob["last_update_id"]) == status["last_update_id"] and ob["book_valid"] == "1":
                break
            time.sleep(0.5)
        pipeline.check_alive()  # the job survived every fault
        # ---- re-anchored: the book is valid again and equals the exchange's at the same update id
        ob = decode(redis_client.hgetall("ob:{BTCUSDT}"))
        assert ob["book_valid"] == "1"
        compare_book(ob, get_json(f"{pipeline.sim_url}/sim/book?update_id={ob['last_update_id']}"))
        reanchors = [decode(f) for _, f in redis_client.xrange("reanchors:{BTCUSDT}")]
        by_gap = [r for r in reanchors if r["reason"] == "gap"]
        assert len(by_gap) == 1 and by_gap[0]["outcome"] == "ok", reanchors
        assert float(by_gap[0]["duration_ms"]) < 10_000
        # drift checks on a clean book find nothing (no false positives), and at least two ran
        drift = [decode(f) for _, f in redis_client.xrange("drift:{BTCUSDT}")]
        assert len(drift) >= 2 and all(d["levels_mismatched"] == "0" and int(d["levels_compared"]) >= 40 for d in drift)
        assert all(r["outcome"] == "ok" for r in reanchors)

        # ---- exactly one gap, naming the dropped range; the book is flagged stale from there on
        (dropped_first, _), (_, dropped_last) = status["dropped_diffs"]
        gaps = [decode(f) for _, f in redis_client.xrange("gaps:{BTCUSDT}")]
        assert len(gaps) == 1
        assert int(gaps[0]["expected_update_id"]) == dropped_first
        assert int(gaps[0]["first_update_id"]) == dropped_last + 1
        history = [decode(f) for _, f in redis_client.xrange("feathist:{BTCUSDT}")]
        gap_id = int(gaps[0]["last_update_id"])
        # the first snapshot past the gap heals it, whichever re-anchor put it in band: a drift check's
        # snapshot can land first, since REST answers ahead of the stream
        snapshot_id = min(int(r["snapshot_update_id"]) for r in reanchors
                          if r["outcome"] == "ok" and int(r["snapshot_update_id"]) > gap_id)
        before = [h for h in history if int(h["book_update_id"]) < dropped_first]
        stale = [h for h in history if gap_id <= int(h["book_update_id"]) < snapshot_id]
        after = [h["book_valid"] for h in history if int(h["book_update_id"]) > snapshot_id]
        assert before and stale and after
        assert all(h["book_valid"] == "1.0" for h in before)
        assert all(h["book_valid"] == "0.0" for h in stale)  # stale from the gap until the snapshot landed
        # the snapshot lands in stream order: when REST answered behind the stream, diffs past its id were
        # applied (still stale) before it arrived; from the boundary it landed on, the book stays valid
        landed = after.index("1.0")
        assert all(v == "0.0" for v in after[:landed]) and all(v == "1.0" for v in after[landed:])
        assert landed <= 6, f"{landed} stale boundaries past the snapshot's id: it landed > 3 s of data late"
        # inference answered every 2 s boundary throughout, from Redis or as a flagged fallback, never an error
        preds = get_json(f"{pipeline.inference_url}/predictions?limit=1000")
        stamps = [p["timestamp"] for p in preds]
        assert all(b - a == 2000 for a, b in zip(stamps, stamps[1:]))
        assert {p["fallback_reason"] for p in preds if p["source"] == "fallback"} <= {"book_invalid", "no_features", "stale_features"}

        # ---- the corrupt frame is a dead letter at the ingestor, nothing else is
        lines = (tmp_path / f"dead-letter-{pipeline.run_id}.jsonl").read_text().splitlines()
        assert len(lines) == 1 and json.loads(lines[0])["reason"].startswith(("truncated", "wrong_schema"))

        # ---- features keep refreshing on time through a trade-free stretch (4 s muted: wherever the fault lands
        # in this capture, the suppressed trades then span >= 2 s; with 3 s, 8 % of landing points do not)
        muted_min, muted_max, muted_count = status["muted_trades"]
        assert muted_count > 0 and muted_max - muted_min >= 2_000_000
        quiet = [h for h in history if int(h["ts"]) - 1_000_000 >= muted_min and int(h["ts"]) <= muted_max - 10_000]
        assert len(quiet) >= 2
        assert all(h["tr_1s_count"] == "0" and h["signed_flow_1s"] == "0.0" for h in quiet)
        stamps = sorted(int(h["ts"]) for h in history)
        assert all(b - a == 500_000 for a, b in zip(stamps, stamps[1:]))
    finally:
        pipeline.stop()
