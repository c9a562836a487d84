"""A pre-package job -> savepoint -> today's job -> savepoint -> a newer job version, stream flowing.

The first job runs the code of the last commit before the code became one package
(``rig.legacy_tree``): its savepoint names the classes in state by their old module paths
(``udfs.symbol_state``), and today's job must resume it (``btcpred.udfs.legacy_paths``).
On the standalone cluster with RocksDB state and savepoints on the S3 emulator. After
both cycles the book equals the exchange's at the same update id, and every boundary
the live job wrote equals an uninterrupted run over the same data (features and trade
windows): no event lost or applied twice across either savepoint.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from btcpred.udfs.features import DEEP_OFI_FEATURES
from btcpred.udfs.long_context import CONTEXT_FEATURES
from rig import flink_cluster, legacy_tree, stack
from rig.job_upgrade import FeatureRefreshWatcher, compare_history, reference_cuts, stop_and_resume
from rig.pipeline import Pipeline, get_json
from tests.conftest import SPOT_CAPTURE
from tests.e2e.jobs.hot_path_job_v2 import AUDIT_NAME
from tests.e2e.test_pipeline_replay import compare_book, decode

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

V2_JOB = Path(__file__).parent / "jobs" / "hot_path_job_v2.py"


def wait_position(pipeline: Pipeline, share: float, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pipeline.check_alive()
        status = get_json(f"{pipeline.sim_url}/sim/status")
        if status["position"] >= share * status["total"]:
            return
        time.sleep(0.3)
    raise AssertionError(f"replay did not reach {share:.0%}")


@pytest.mark.timeout(600)
def test_pre_package_savepoint_resumes_and_upgrade_continues_exactly(local_stack, redis_client, tmp_path):
    assert stack.main(["start", "--with-flink-cluster"]) == 0
    pipeline = Pipeline(speed=8.0, mini_cluster=False, log_dir=tmp_path)
    watcher = FeatureRefreshWatcher(redis_client, "BTCUSDT")
    try:
        pipeline.start(wait_for_job=True, job_code_dir=legacy_tree.export(tmp_path / "pre-package"))
        watcher.start()
        first_job = pipeline.flink_job_id
        wait_position(pipeline, 0.25)
        same = stop_and_resume(pipeline, redis_client)  # the pre-package savepoint, resumed by today's job
        assert flink_cluster.rest("GET", f"/jobs/{first_job}")["state"] == "FINISHED"
        assert same.savepoint.startswith("s3://btcpred-flink/savepoints/") and same.savepoint_bytes > 0
        # the first savepoint's state names the pre-package classes; today's job wrote its own names
        before_move = flink_cluster.savepoint_contents(pipeline.settings, same.savepoint)
        assert b"\x11udfs.symbol_state" in before_move and b"btcpred.udfs" not in before_move
        wait_position(pipeline, 0.55)
        upgraded = stop_and_resume(pipeline, redis_client, job_file=V2_JOB)
        plan = flink_cluster.rest("GET", f"/jobs/{upgraded.job_id}")
        assert plan["name"] == "btcusdt-hot-path-v2"
        assert any(AUDIT_NAME in v["name"] for v in plan["vertices"]), [v["name"] for v in plan["vertices"]]
        # the v2 job really restored the v1 state: its checkpoint counts show the restore
        assert flink_cluster.rest("GET", f"/jobs/{upgraded.job_id}/checkpoints")["counts"]["restored"] == 1
        assert b"btcpred.udfs.symbol_state" in flink_cluster.savepoint_contents(pipeline.settings, upgraded.savepoint)

        status, ob = pipeline.wait_caught_up(redis_client)
        assert status["finished"] and int(ob["last_update_id"]) == status["last_update_id"], "book did not catch up"
        compare_book(ob, get_json(f"{pipeline.sim_url}/sim/book?update_id={ob['last_update_id']}"))
        assert redis_client.xlen("gaps:{BTCUSDT}") == 0
        pipeline.wait_final_boundary(redis_client)
    finally:
        watcher.stop()
        pipeline.stop()

    history = [decode(f) for _, f in redis_client.xrange("feathist:{BTCUSDT}")]
    reference = reference_cuts(SPOT_CAPTURE, "BTCUSDT")
    live_anchor = min(int(h["ts"]) for h in history if float(h["book_valid"]) == 1.0)
    ref_anchor = min(ts for ts, snap in reference.items() if snap.features["book_valid"] == 1.0)
    # the pre-package job cut its boundaries without the features added since; today's job, restored from its
    # state, has the multi-level flow and the context only once their look-back has passed (the trade-count
    # imbalance at once: the trade buffer was in that state)
    added = frozenset(("count_imbalance_1s", "count_imbalance_5s", *DEEP_OFI_FEATURES, *CONTEXT_FEATURES))
    report = compare_history(history, reference, max(live_anchor, ref_anchor), absent_ok=added)
    assert report.compared > 500, report  # ~690 boundaries in the 5 min 46 s capture
    assert report.features_mismatched == [], report
    assert (report.events_lost, report.events_duplicated, report.duplicate_entries, len(report.boundaries_missing)) == (
        0,
        0,
        0,
        0,
    ), report
    print(
        f"savepoints {same.savepoint_bytes} / {upgraded.savepoint_bytes} B, restore {same.restore_s:.1f} / "
        f"{upgraded.restore_s:.1f} s, longest feat: gap {watcher.longest_gap_s():.1f} s"
    )
