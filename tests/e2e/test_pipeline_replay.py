"""The walking skeleton end to end on real data.

simulator (real 2024-08-08 spot capture, 10x, and the USD-M capture of the same minutes as the
perpetual's bookTicker stream) -> SBE WebSocket + futures JSON -> ingestor -> kinesalite ->
PyFlink mini cluster -> Redis -> inference HTTP.
"""

from __future__ import annotations

import math
import struct
import time
from dataclasses import replace

import boto3
import pytest

from btcpred.batch.feature_builder import build_rows, replay
from btcpred.batch.recordings import identify
from btcpred.common.config import aws_client_kwargs
from btcpred.udfs import envelope, sbe
from btcpred.udfs.events import BestBidAskEvent, DepthDiffEvent, TradeEntry, TradesEvent
from btcpred.udfs.features import FEATURE_NAMES, HISTORY_US, same_feature
from btcpred.udfs.long_context import CONTEXT_LOOKBACK_US
from rig.pipeline import Pipeline, get_json
from tests.conftest import SPOT_CAPTURE, USDM_CAPTURE
from tests.e2e.reference import features_at, load_perp_quotes, load_raw, perp_leads_at

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

SPEED = 10.0
E8 = 100_000_000


def compare_book(ob: dict[str, str], sim_book: dict) -> None:
    """Level-by-level equality of ob:{BTCUSDT} and the exchange's top 10 at the same update id."""
    for side, levels in (("bid", sim_book["bids"]), ("ask", sim_book["asks"])):
        assert len(levels) == 10
        for i, (price, qty) in enumerate(levels, 1):
            assert float(ob[f"{side}{i}_p"]) == price / E8, (side, i)
            assert float(ob[f"{side}{i}_q"]) == qty / E8, (side, i)
    assert float(ob["best_bid"]) == sim_book["bids"][0][0] / E8
    assert float(ob["best_ask"]) == sim_book["asks"][0][0] / E8


def poison_frames(now_us: int) -> list[bytes]:
    """Well-formed frames whose values no exchange sends, each of which crash-looped the job or damaged
    its state before ``event_rules`` (issue 28). Their update ids lie far ahead of the capture's:
    applied, each would be a sequence gap (and this clean replay asserts none)."""
    ahead, day_us = 10**15, 86_400_000_000
    # times 0 (no exchange time, as a REST snapshot): the replay's data is from 2024, and a frame stamped
    # now would be years ahead of the stream, not of its receipt
    return [
        # a price past int64 once scaled to e8 (2**62 at exponent -7): struct.error in on_batch
        sbe.encode(DepthDiffEvent("BTCUSDT", 0, ahead, ahead, ((2**62 * 10, E8),), ()), price_exponent=-7),
        # a price of 0: the mid goes to <= 0 and log() raises at the next boundary
        sbe.encode(DepthDiffEvent("BTCUSDT", 0, ahead + 1, ahead + 1, ((0, 5 * E8),), ())),
        # an event time a day ahead of its receipt: the watermark and every boundary would follow it
        sbe.encode(DepthDiffEvent("BTCUSDT", now_us + day_us, ahead + 2, ahead + 2, ((60_000 * E8, E8),), ())),
        sbe.encode(TradesEvent("BTCUSDT", now_us + day_us, now_us + day_us, (TradeEntry(ahead, 60_000 * E8, E8, False),))),
        # a crossed quote and a trade of nothing
        sbe.encode(BestBidAskEvent("BTCUSDT", 0, ahead, 60_001 * E8, E8, 60_000 * E8, E8)),
        sbe.encode(TradesEvent("BTCUSDT", 0, 0, (TradeEntry(ahead + 1, 60_000 * E8, 0, False),))),
    ]


POISON_REASONS = (
    "bid price 46116860184273879040 e8 not in (0, int64]",
    "bid price 0 e8 not in (0, int64]",
    "DepthDiffEvent refused: event time",
    "TradesEvent refused: event time",
    "crossed quote",
    "quantity 0 e8 not in (0, int64]",
)


def put_bad_records(pipeline: Pipeline) -> None:
    """Malformed records and a record of hostile values in the live stream, straight into Kinesis (the
    ingestor would refuse the values itself): the job must dead-letter each and keep going."""
    client = boto3.client("kinesis", **aws_client_kwargs(pipeline.settings.kinesis))
    wrong_schema = struct.pack("<HHHH", 18, 10000, 5, 0) + bytes(18)
    now_us = time.time_ns() // 1000
    poison = envelope.batch_to_text([envelope.Envelope(envelope.Source.WEBSOCKET, now_us, f) for f in poison_frames(now_us)])
    client.put_records(
        StreamName=pipeline.stream,
        Records=[
            {"Data": b"not an envelope", "PartitionKey": "BTCUSDT"},
            {
                "Data": envelope.to_text(envelope.Envelope(envelope.Source.WEBSOCKET, 1, wrong_schema)).encode(),
                "PartitionKey": "BTCUSDT",
            },
            {"Data": poison.encode(), "PartitionKey": "BTCUSDT"},
        ],
    )


def decode(h: dict) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in h.items()}


@pytest.mark.timeout(420)
def test_real_replay_flows_to_redis_and_predictions(redis_client, tmp_path):
    pipeline = Pipeline(speed=SPEED, mini_cluster=True, log_dir=tmp_path, perp_capture=USDM_CAPTURE)
    book_checks = 0
    try:
        # the replay begins once the job consumes (the order is forced): with the JVM still starting, the job
        # met a 2-minute backlog and one fresh-clone run lacked the boundary this test picks. Resuming with a
        # backlog is the savepoint and TaskManager tests' matter, with their own checks of every boundary
        pipeline.start(wait_for_job=True)
        run_started = time.time()
        put_bad_records(pipeline)
        deadline = time.monotonic() + 300
        status = {}
        while time.monotonic() < deadline:
            pipeline.check_alive()
            status = get_json(f"{pipeline.sim_url}/sim/status")
            ob = decode(redis_client.hgetall("ob:{BTCUSDT}"))
            if ob:
                sim_book = get_json(f"{pipeline.sim_url}/sim/book?update_id={ob['last_update_id']}")
                compare_book(ob, sim_book)
                book_checks += 1
                if status["finished"] and int(ob["last_update_id"]) == status["last_update_id"]:
                    break
            time.sleep(0.5)
        assert status.get("finished"), f"replay did not finish: {status}"
        ob = decode(redis_client.hgetall("ob:{BTCUSDT}"))
        assert int(ob["last_update_id"]) == status["last_update_id"], "job's book never reached the exchange's last update id"
        assert book_checks >= 10
        # the book is final once its last record is applied; the boundaries up to it are cut when the watermark
        # (the newest record's oldest event, less the out-of-orderness) passes them: wait for those too
        pipeline.wait_final_boundary(redis_client)

        # ---- trade windows and features at a chosen second, against an independent computation
        history = [decode(fields) for _, fields in redis_client.xrange("feathist:{BTCUSDT}")]
        by_ts = {int(h["ts"]): h for h in history}
        snapshot, diffs, trades = load_raw(SPOT_CAPTURE)
        chosen_ms = (diffs[0]["E"] // 1000 + 120) * 1000  # two minutes into the data, on a whole second
        stamps_us = sorted(by_ts)
        holes = [(a, b) for a, b in zip(stamps_us, stamps_us[1:]) if b - a != 500_000]
        assert chosen_ms * 1000 in by_ts, (
            f"no feathist entry at {chosen_ms * 1000}: entries {stamps_us[:1]}..{stamps_us[-1:]} "
            f"({len(stamps_us)}), holes {holes[:10]}"
        )
        entry = by_ts[chosen_ms * 1000]
        expected = features_at(snapshot, diffs, trades, chosen_ms)
        expected.update(perp_leads_at(snapshot, diffs, load_perp_quotes(USDM_CAPTURE), chosen_ms))
        for name, value in expected.items():
            if not name.startswith("tr_"):
                assert math.isclose(float(entry[name]), value, rel_tol=1e-9, abs_tol=1e-12), name
        assert float(entry["ofi_5s"]) != 0.0 and float(entry["realized_vol_5s"]) > 0.0
        for window in ("1s", "5s"):
            ref = expected[f"tr_{window}"]
            assert int(entry[f"tr_{window}_count"]) == ref["count"]
            assert int(entry[f"tr_{window}_last_ts_us"]) == ref["last_ts_us"]
            for name in ("vol", "signed_vol", "vwap_minus_mid"):
                assert math.isclose(float(entry[f"tr_{window}_{name}"]), ref[name], rel_tol=1e-9, abs_tol=1e-9), (window, name)
        assert int(entry["tr_1s_count"]) > 0, "chosen second should hold trades for a meaningful check"
        # ---- parity: the batch feature builder (training data) computes the same numbers as the job
        recording = replace(identify(SPOT_CAPTURE), perp=identify(USDM_CAPTURE))  # as batch.recordings.discover pairs them
        batch_rows = {r.ts_ms * 1000: r for r in build_rows(replay(recording.events(), "BTCUSDT"))}
        # The live book is anchored by the simulator's REST snapshot, the batch one by the capture's own snapshot
        # line, at different points; once both are anchored and the 6 s look-back is past, they must agree.
        settled_us = max(min(batch_rows), min(by_ts)) + HISTORY_US
        # The 30 s and 5 min context each need that much more of what both have seen.
        compared = with_quotes = with_perp = with_context = 0
        for ts_us, h in by_ts.items():
            row = batch_rows.get(ts_us)
            if row is None or ts_us < settled_us:
                continue
            for name in FEATURE_NAMES:
                if ts_us >= settled_us + CONTEXT_LOOKBACK_US.get(name, 0):
                    assert same_feature(h.get(name), row.features[name]), (ts_us, name)
            assert float(h["mid"]) == row.mid
            compared += 1
            with_quotes += row.features["quote_ofi_norm_1s"] is not None
            with_perp += row.features["perp_lead_5s_bp"] is not None
            with_context += ts_us >= settled_us + CONTEXT_LOOKBACK_US["ret_30s"] and row.features["ret_30s"] is not None
        missing = sorted(t for t in batch_rows if t >= settled_us and t not in by_ts)
        assert compared >= len(batch_rows) - 6 and compared > 150, (
            compared,
            len(batch_rows),
            f"live {min(by_ts)}..{max(by_ts)}, batch {min(batch_rows)}..{max(batch_rows)}, "
            f"settled from {settled_us}; batch rows not live: {missing[:20]}",
        )
        assert with_quotes == compared  # the best bid/ask stream's features were compared at every boundary
        assert with_perp == compared  # and the perpetual's, read from the futures stream beside spot
        assert with_context > 100  # and the 30 s context, once both had seen 30 s
        # features are cut on every 500 ms of event time, trades or not (time-driven, contiguous)
        assert holes == [], holes[:10]
        # the live hashes carry the seed's field names and TTLs
        assert set(decode(redis_client.hgetall("tr:{BTCUSDT}:1s"))) == {
            "count",
            "vol",
            "signed_vol",
            "vwap_minus_mid",
            "last_ts_us",
        }
        assert 0 < redis_client.ttl("tr:{BTCUSDT}:5s") <= 300
        assert 0 < redis_client.ttl("feat:{BTCUSDT}") <= 120
        assert redis_client.ttl("ob:{BTCUSDT}") == -1
        feat = set(decode(redis_client.hgetall("feat:{BTCUSDT}")))
        assert {"ret_1s", "ret_5s", "depth_imbalance_10", "spread_bp", "ts"} <= feat
        assert "vol_imbalance" not in feat  # the seed's name for depth_imbalance_10: a duplicate input, gone since 0008

        # ---- a clean replay raises no gap; the bad records are dead letters, not a crash, and the hostile
        # values changed nothing (no gap, no far-future boundary, the book equal to the exchange's above)
        assert redis_client.xlen("gaps:{BTCUSDT}") == 0
        dead = [decode(f)["reason"] for _, f in redis_client.xrange("dlq:hotpath")]
        assert len(dead) == 2 + len(POISON_REASONS), dead
        assert dead[0].startswith("envelope:") and dead[1].startswith("sbe wrong_schema")
        for expected_part in POISON_REASONS:  # before and after key_by: the order between the two may vary
            assert sum(expected_part in reason and "refused: " in reason for reason in dead[2:]) >= 1, (expected_part, dead)
        assert max(by_ts) < diffs[-1]["E"] * 1000 + 1_000_000, "a boundary past the data: the far-future time moved it"

        # ---- a prediction on every 2 s boundary of the run
        preds = get_json(f"{pipeline.inference_url}/predictions?limit=1000")
        stamps = [p["timestamp"] for p in preds]
        assert all(s % 2000 == 0 for s in stamps)
        assert all(b - a == 2000 for a, b in zip(stamps, stamps[1:])), "a 2 s boundary was skipped"
        assert len(stamps) >= int((time.time() - run_started) / 2) - 1
        fresh = [p for p in preds if p["source"] == "redis"]
        assert len(fresh) >= 10
        assert all(p["feature_time_ms"] and p["model_version"] == "persistence" for p in fresh)
        assert [p["feature_time_ms"] for p in fresh] == sorted(p["feature_time_ms"] for p in fresh)
        assert get_json(f"{pipeline.inference_url}/health")["status"] in ("ok", "degraded")
        assert get_json(f"{pipeline.inference_url}/ready")["ready"] is True
    finally:
        pipeline.stop()
