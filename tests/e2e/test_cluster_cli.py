"""The README's local-cluster commands, run as a user runs them (python -m rig.flink_cluster ...)."""

from __future__ import annotations

import subprocess
import sys

import boto3
import pytest

from btcpred.adapters.kinesis_writer import ensure_stream
from btcpred.common.config import aws_client_kwargs
from rig import flink_cluster

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def cli(*args: str, timeout: float = 240) -> str:
    out = subprocess.run([sys.executable, "-m", "rig.flink_cluster", *args], capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{args}: {out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


@pytest.mark.timeout(600)
def test_cluster_workflow_commands(local_stack, redis_client):
    ensure_stream(boto3.client("kinesis", **aws_client_kwargs(local_stack.kinesis)), local_stack.kinesis.stream, 1)
    cli("start")
    job = cli("submit")
    assert len(job) == 32
    try:
        listed = subprocess.run(
            [sys.executable, "-m", "rig.flink_cluster", "list"], capture_output=True, text=True, check=True
        ).stdout
        assert any(line.startswith(job) and "RUNNING" in line for line in listed.splitlines()), listed
        # every stateful operator carries its readable name in the web UI's job graph
        names = [v["name"] for v in flink_cluster.rest("GET", f"/jobs/{job}")["vertices"]]
        assert any("Order book, trade windows, features" in n for n in names) and any("Redis hot state" in n for n in names)
        running = cli("savepoint", job)
        assert running.startswith("s3://btcpred-flink/savepoints/")
        final = cli("stop-job", job)
        assert final.startswith("s3://btcpred-flink/savepoints/") and final != running
        kept = subprocess.run(
            [sys.executable, "-m", "rig.flink_cluster", "savepoints"], capture_output=True, text=True, check=True
        ).stdout
        assert final in kept and running in kept
        resumed = cli("resume", final)
        assert flink_cluster.rest("GET", f"/jobs/{resumed}/checkpoints")["counts"]["restored"] == 1
        cli("cancel", resumed)
        assert flink_cluster.rest("GET", f"/jobs/{resumed}")["state"] == "CANCELED"
    finally:
        for j in flink_cluster.running_jobs():
            flink_cluster.cancel(j.job_id)
