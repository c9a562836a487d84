"""Stop-with-savepoint -> resume on the live local stack, with the stream flowing.

    python -m bench.upgrade [--speed 5] [--at 0.4] [--job FILE] [--seconds 240]

Runs the pipeline on the standalone cluster (RocksDB, savepoints on the S3 emulator),
stops the job with a savepoint once the replay is ``--at`` through, resumes it (or the
newer version ``--job``) from that savepoint, lets the replay finish and compares every
boundary the job wrote with an uninterrupted run over the same data
(``rig/job_upgrade.py``). Last line, one JSON object: ``feature_gap_s`` (longest
stretch without a ``feat:{BTCUSDT}`` refresh, beside ``baseline_feature_gap_s`` before the
stop), ``events_lost``, ``events_duplicated_in_redis_state``, ``book_equal``,
``savepoint_bytes``, ``restore_s``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import redis

from bench.harness import StackGuard, emit
from btcpred.common.config import load_settings
from rig import flink_cluster, stack
from rig.fault_suite import books_equal, decode
from rig.job_upgrade import FeatureRefreshWatcher, compare_history, reference_cuts, stop_and_resume
from rig.pipeline import DEFAULT_CAPTURE, Pipeline, get_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speed", type=float, default=5.0)
    parser.add_argument("--at", type=float, default=0.4, help="share of the replay at which to stop")
    parser.add_argument("--job", type=Path, default=None, help="resume this newer job file instead of the same job")
    parser.add_argument("--seconds", type=float, default=240.0, help="bound on the whole run after start-up")
    args = parser.parse_args()
    with StackGuard():
        cluster_was_up = stack.flink_service(load_settings()).healthy()
        if stack.main(["start", "--with-flink-cluster"]) != 0:
            raise SystemExit("flink cluster failed to start")
        client = redis.Redis.from_url(load_settings().redis.url)
        pipeline = Pipeline(speed=args.speed, mini_cluster=False)
        watcher = FeatureRefreshWatcher(client, "BTCUSDT")
        try:
            pipeline.start(wait_for_job=True)
            watcher.start()
            deadline = time.monotonic() + args.seconds
            while (status := get_json(f"{pipeline.sim_url}/sim/status"))["position"] < args.at * status["total"]:
                pipeline.check_alive()
                if time.monotonic() > deadline:
                    raise SystemExit("replay too slow to reach the stop point")
                time.sleep(0.2)
            stop_at = time.time()
            step = stop_and_resume(pipeline, client, job_file=args.job)
            status, _ = pipeline.wait_caught_up(client, max(1.0, deadline - time.monotonic()))
            time.sleep(2)
            ob = decode(client.hgetall("ob:{BTCUSDT}"))
            book_equal = (
                books_equal(ob, get_json(f"{pipeline.sim_url}/sim/book?update_id={ob['last_update_id']}"))
                and int(ob["last_update_id"]) == status["last_update_id"]
            )
            gaps = client.xlen("gaps:{BTCUSDT}")
        finally:
            watcher.stop()
            pipeline.stop()
            if not cluster_was_up:
                stack.flink_service(load_settings()).stop()
        history = [decode(f) for _, f in client.xrange("feathist:{BTCUSDT}")]
    reference = reference_cuts(DEFAULT_CAPTURE, "BTCUSDT")
    anchor = max(
        min(int(h["ts"]) for h in history if float(h["book_valid"]) == 1.0),
        min(ts for ts, snap in reference.items() if snap.features["book_valid"] == 1.0),
    )
    report = compare_history(history, reference, anchor)
    baseline_gap = max((b - a for a, b in zip(watcher.changes, watcher.changes[1:]) if b < stop_at), default=float("nan"))
    emit(
        {
            "benchmark": "upgrade",
            "speed": args.speed,
            "resumed_job": str(args.job or flink_cluster.JOB_FILE.name),
            "feature_gap_s": round(watcher.longest_gap_s(), 3),
            "baseline_feature_gap_s": round(baseline_gap, 3),
            "events_lost": report.events_lost + gaps,
            "events_duplicated_in_redis_state": report.events_duplicated,
            "boundaries_compared": report.compared,
            "boundaries_missing": len(report.boundaries_missing),
            "features_mismatched": len(report.features_mismatched),
            "book_equal": book_equal,
            "savepoint": step.savepoint,
            "savepoint_bytes": step.savepoint_bytes,
            "stop_with_savepoint_s": round(step.stop_s, 3),
            "restore_s": round(step.restore_s, 3),
        }
    )


if __name__ == "__main__":
    main()
