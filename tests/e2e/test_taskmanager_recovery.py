"""Kill the TaskManager mid-replay on the standalone cluster; the job restores from its checkpoint.

After recovery the book in Redis again equals the simulator's at the same update id, the
last update id reaches the exchange's, and no gap was raised (state and Kinesis offsets
were restored together).
"""

from __future__ import annotations

import os
import signal
import time
import urllib.request

import pytest

from rig import stack
from rig.fault_suite import start_taskmanager, taskmanager_pids
from rig.pipeline import Pipeline, get_json
from tests.e2e.test_pipeline_replay import compare_book, decode

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

REST = "http://127.0.0.1:8081"


def completed_checkpoints(job_id: str) -> int:
    return get_json(f"{REST}/jobs/{job_id}/checkpoints")["counts"]["completed"]


def job_state(job_id: str) -> str:
    return get_json(f"{REST}/jobs/{job_id}")["state"]


@pytest.fixture()
def flink_cluster(local_stack):
    assert stack.main(["start", "--with-flink-cluster"]) == 0
    yield
    if not taskmanager_pids():  # leave the cluster as we found it: with a TaskManager
        start_taskmanager()


@pytest.mark.timeout(600)
def test_taskmanager_kill_recovers_from_checkpoint(flink_cluster, redis_client, tmp_path, monkeypatch):
    monkeypatch.setenv("BTCPRED_FLINK__CHECKPOINT_INTERVAL_MS", "2000")
    pipeline = Pipeline(speed=8.0, mini_cluster=False, log_dir=tmp_path)
    try:
        pipeline.start()
        job = pipeline.flink_job_id
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            pipeline.check_alive()
            status = get_json(f"{pipeline.sim_url}/sim/status")
            if status["position"] > 0.3 * status["total"] and completed_checkpoints(job) >= 2:
                break
            time.sleep(0.5)
        else:
            raise AssertionError("no checkpoints completed before the kill")

        victims = taskmanager_pids()
        assert victims, "no TaskManager to kill"
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        start_taskmanager()

        deadline = time.monotonic() + 300
        recovered_after = None
        while time.monotonic() < deadline:
            pipeline.check_alive()
            status = get_json(f"{pipeline.sim_url}/sim/status")
            ob = decode(redis_client.hgetall("ob:{BTCUSDT}"))
            if (
                recovered_after is None
                and job_state(job) == "RUNNING"
                and int(ob.get("written_at_us", 0)) > (time.time() - (time.monotonic() - killed_at)) * 1e6
            ):
                recovered_after = time.monotonic() - killed_at
            if status["finished"] and int(ob["last_update_id"]) == status["last_update_id"]:
                break
            time.sleep(0.5)
        assert status["finished"] and int(ob["last_update_id"]) == status["last_update_id"], (
            "book did not catch up after the kill"
        )
        compare_book(ob, get_json(f"{pipeline.sim_url}/sim/book?update_id={ob['last_update_id']}"))
        # the failover is in the job's exception history (the numRestarts metric is cached by the
        # REST metric fetcher for up to 10 s, so it is no reliable witness)
        history = get_json(f"{REST}/jobs/{job}/exceptions")["exceptionHistory"]["entries"]
        assert history, "the job never failed over: was the TaskManager really killed?"
        assert redis_client.xlen("gaps:{BTCUSDT}") == 0
        assert recovered_after is not None
        # the job's custom metrics reach Prometheus through Flink's reporter (ports 9250-9260)
        exported = ""
        for port in range(9250, 9261):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                    exported += resp.read().decode()
            except OSError:
                continue
        # (PyFlink registers a counter with the JVM on its first increment, so zero counters are absent)
        for metric in ("eventsIn", "lastBookUpdateId", "bookLevels", "redisWriteLatencyUs"):
            assert metric in exported, metric
        print(f"TaskManager kill: Redis writes resumed {recovered_after:.1f}s after the kill")
    finally:
        pipeline.stop()
