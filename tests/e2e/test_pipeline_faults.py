"""Faults injected into a real replay: dropped diffs (gap -> re-anchor), a corrupt frame, a trade-free stretch.

Synthetic damage only (the simulator's fault switches) on top of the real capture;
the re-anchor service runs as in production, with a drift check every 5 s.
"""

from __future__ import annotations

import json
import time

import pytest

from rig.fault_suite import decode, post_json
from rig.pipeline import Pipeline, get_json
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


def check_stale_stretch(history: list[dict], reanchors: list[dict], gap_id: int, dropped_first: int, dropped_last: int) -> None:
    """The book is valid before the gap, flagged stale from the gap diff until a snapshot holding the
    dropped updates landed, and valid from then on; judged in stream order, whichever re-anchor put
    that snapshot in band (a drift check's snapshot taken after the gap can land before the gap path's).

    Book ids jump from ``dropped_first - 1`` to ``gap_id`` (the diff that revealed the gap), so the
    entries with an id at or past ``gap_id`` are exactly those cut after the gap diff was applied.
    """
    in_band = sorted({int(i) for r in reanchors if r["outcome"] == "ok" for i in r["in_band_update_ids"].split(",") if i})
    healers = [i for i in in_band if i >= dropped_last]  # holds every dropped update: it heals the book
    past_gap = [h for h in history if int(h["book_update_id"]) >= gap_id]
    validity = [h["book_valid"] for h in past_gap]
    try:
        assert healers, "no snapshot past the gap was put in band"
        before = [h for h in history if int(h["book_update_id"]) < dropped_first]
        assert before and all(h["book_valid"] == "1.0" for h in before)
        assert "1.0" in validity, "the book never turned valid after the gap"
        healed_at = validity.index("1.0")
        assert healed_at >= 1, "no boundary saw the stale book"
        assert all(v == "1.0" for v in validity[healed_at:]), "stale again after the re-anchor"
        assert int(past_gap[healed_at]["book_update_id"]) >= healers[0], "valid before any healing snapshot landed"
        # the snapshot lands in stream order: when REST answered behind the stream, diffs past its id were
        # applied (still stale) before it arrived; no more than 3 s of data may pass so
        late = sum(1 for h in past_gap[:healed_at] if int(h["book_update_id"]) > healers[0])
        assert late <= 6, f"{late} stale boundaries past the snapshot's id: it landed > 3 s of data late"
    except AssertionError as exc:
        first = next((i for i, h in enumerate(history) if int(h["book_update_id"]) >= gap_id), len(history))
        around = [(h["ts"], h["book_update_id"], h["book_valid"]) for h in history[max(0, first - 3) : first + 30]]
        raise AssertionError(
            f"{exc}\n  dropped {dropped_first}..{dropped_last}, gap diff ends at {gap_id}"
            f"\n  snapshots in band {in_band}\n  reanchors {reanchors}"
            f"\n  feathist (ts, book_update_id, book_valid) around the gap {around}"
        ) from None


@pytest.mark.timeout(420)
def test_gap_corrupt_frame_and_quiet_market(redis_client, tmp_path):
    pipeline = Pipeline(speed=10.0, mini_cluster=True, log_dir=tmp_path, verify_interval_s=5.0)
    try:
        pipeline.start(wait_for_job=True)  # no start-up backlog: drift checks then meet a book that keeps up
        wait_until(
            pipeline, lambda s: s["position"] > 0.25 * s["total"] and redis_client.exists("feat:{BTCUSDT}"), 240, "features"
        )
        post_json(
            f"{pipeline.sim_url}/sim/faults", {"corrupt_next": 1, "corrupt_stream": "btcusdt@bestBidAsk", "mute_trades_ms": 4000}
        )
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
        assert ob["book_valid"] == "1", (ob.get("book_valid"), ob.get("last_update_id"), status["last_update_id"])
        compare_book(ob, get_json(f"{pipeline.sim_url}/sim/book?update_id={ob['last_update_id']}"))
        reanchors = [decode(f) for _, f in redis_client.xrange("reanchors:{BTCUSDT}")]
        by_gap = [r for r in reanchors if r["reason"] == "gap"]
        assert len(by_gap) == 1 and by_gap[0]["outcome"] == "ok", reanchors
        assert float(by_gap[0]["duration_ms"]) < 10_000
        # drift checks on a clean book find nothing (no false positives), and at least two ran
        drift = [decode(f) for _, f in redis_client.xrange("drift:{BTCUSDT}")]
        assert len(drift) >= 2 and all(d["levels_mismatched"] == "0" and int(d["levels_compared"]) >= 40 for d in drift), drift
        assert all(r["outcome"] == "ok" for r in reanchors), reanchors

        # ---- exactly one gap, naming the dropped range; the book is flagged stale from there on
        (dropped_first, _), (_, dropped_last) = status["dropped_diffs"]
        gaps = [decode(f) for _, f in redis_client.xrange("gaps:{BTCUSDT}")]
        assert len(gaps) == 1, (gaps, status["dropped_diffs"])
        assert int(gaps[0]["expected_update_id"]) == dropped_first, (gaps, status["dropped_diffs"])
        assert int(gaps[0]["first_update_id"]) == dropped_last + 1, (gaps, status["dropped_diffs"])
        history = [decode(f) for _, f in redis_client.xrange("feathist:{BTCUSDT}")]
        check_stale_stretch(history, reanchors, int(gaps[0]["last_update_id"]), dropped_first, dropped_last)
        # inference answered every 2 s boundary throughout, from Redis or as a flagged fallback, never an error
        preds = get_json(f"{pipeline.inference_url}/predictions?limit=1000")
        stamps = [p["timestamp"] for p in preds]
        assert all(b - a == 2000 for a, b in zip(stamps, stamps[1:])), [
            (a, b) for a, b in zip(stamps, stamps[1:]) if b - a != 2000
        ]
        reasons = {p["fallback_reason"] for p in preds if p["source"] == "fallback"}
        assert reasons <= {"book_invalid", "no_features", "stale_features"}, reasons

        # ---- the corrupt frame is a dead letter at the ingestor, nothing else is
        lines = (tmp_path / f"dead-letter-{pipeline.run_id}.jsonl").read_text().splitlines()
        assert len(lines) == 1 and json.loads(lines[0])["reason"].startswith(("truncated", "wrong_schema")), lines

        # ---- features keep refreshing on time through a trade-free stretch (4 s muted: wherever the fault lands
        # in this capture, the suppressed trades then span >= 2 s; with 3 s, 8 % of landing points do not)
        muted_min, muted_max, muted_count = status["muted_trades"]
        assert muted_count > 0 and muted_max - muted_min >= 2_000_000, status["muted_trades"]
        quiet = [h for h in history if int(h["ts"]) - 1_000_000 >= muted_min and int(h["ts"]) <= muted_max - 10_000]
        assert len(quiet) >= 2, (status["muted_trades"], [h["ts"] for h in history])
        assert all(h["tr_1s_count"] == "0" and h["signed_flow_1s"] == "0.0" for h in quiet), [
            (h["ts"], h["tr_1s_count"], h["signed_flow_1s"]) for h in quiet
        ]
        stamps = sorted(int(h["ts"]) for h in history)
        assert all(b - a == 500_000 for a, b in zip(stamps, stamps[1:])), [
            (a, b) for a, b in zip(stamps, stamps[1:]) if b - a != 500_000
        ]
    finally:
        pipeline.stop()
