"""The Managed Flink application zip is complete: unpacked, it runs the job with only its own files.

The zip's layout is the one its run options name; every module the job loads that the
Managed Flink runtime does not provide comes from the zip (none from this repo or its
venv); and ``python main.py`` in the unpacked folder runs the job in the mini cluster
against kinesalite and Redis, reading its settings from an application-properties file
in Managed Flink's format.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import boto3
import pytest

from btcpred.adapters.kinesis_writer import ensure_stream
from btcpred.adapters.loaders import load_capture
from btcpred.common.config import aws_client_kwargs
from btcpred.flink_jobs.runtime_properties import JOB_GROUP, RUN_OPTIONS_GROUP
from btcpred.ingest.ingestor import aggregate
from btcpred.udfs import envelope, sbe
from btcpred.udfs.events import DepthDiffEvent, DepthSnapshotEvent, TradesEvent
from deploy.managed_flink import build_package
from tests.conftest import SPOT_CAPTURE

pytestmark = pytest.mark.integration

# modules the runtime brings: PyFlink and what it pulls in (numpy, pyarrow, beam, ...), measured
# as what importing PyFlink's DataStream API alone loads from the venv
BASELINE = "import pyflink.datastream, pyflink.common, pyflink.datastream.connectors.kinesis"
LOADED_FROM_VENV = """
import json, sys, sysconfig
purelib = sysconfig.get_paths()['purelib']
print(json.dumps(sorted({m.split('.')[0] for m, mod in list(sys.modules.items())
                         if (getattr(mod, '__file__', None) or '').startswith(purelib)})))
"""


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("package") / "btcpred-hot-path.zip"
    build_package.build(out)
    target = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(out) as zf:
        zf.extractall(target)
    return target


def test_layout_matches_the_run_options(unpacked):
    for key, rel in build_package.RUN_OPTIONS.items():
        assert (unpacked / rel).exists(), (key, rel)
    assert [p.name for p in (unpacked / "lib").glob("*.jar")] == ["btcpred-flink-connectors.jar"]  # exactly one jar
    site = unpacked / "lib" / "site-packages"
    assert (site / "btcpred" / "config" / "prod.yaml").is_file()
    assert (site / "btcpred" / "flink_jobs" / "hot_path_job.py").is_file()
    assert not (site / "rig").exists() and not (site / "tests").exists()  # the rig never ships
    assert not (site / "numpy").exists() and not (site / "pyflink").exists()  # the runtime's own


def _loaded(code: str, cwd: Path) -> set[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", code + LOADED_FROM_VENV], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


# redis-py imports these only when present (OCSP, OpenTelemetry); the check hides them to prove it
OPTIONAL = ("cryptography", "opentelemetry")


def test_every_module_beyond_the_runtime_comes_from_the_zip(unpacked, tmp_path):
    runtime = _loaded(BASELINE, tmp_path)
    job = _loaded(
        f"import sys; sys.modules.update(dict.fromkeys({OPTIONAL!r})); "
        f"sys.path.insert(0, {str(unpacked / 'lib' / 'site-packages')!r}); "
        "import btcpred.flink_jobs.hot_path_job, btcpred.flink_jobs.runtime_properties",
        tmp_path,
    )
    assert "pyflink" in runtime
    assert job - runtime == set(), f"loaded from the venv, missing from the zip: {sorted(job - runtime)}"


def _records(count: int) -> tuple[list[str], list[envelope.Envelope]]:
    """The first ``count`` frames of the real capture (its REST snapshot among them, in capture order) as the
    ingestor puts them: aggregated envelopes of up to 50 frames (``aggregate``)."""
    frames: list[envelope.Envelope] = []
    for captured in load_capture(SPOT_CAPTURE).events():
        event = captured.event
        if isinstance(event, (DepthSnapshotEvent, DepthDiffEvent, TradesEvent)):
            source = envelope.Source.REST_SNAPSHOT if isinstance(event, DepthSnapshotEvent) else envelope.Source.WEBSOCKET
            frames.append(envelope.Envelope(source, captured.receipt_time_us, sbe.encode(event)))
        if len(frames) >= count:
            break
    records = [r.data.decode() for r in aggregate([("BTCUSDT", f) for f in frames], 50)]
    assert any(f.source == envelope.Source.REST_SNAPSHOT for f in frames), "no snapshot to anchor the book"
    return records, frames


@pytest.mark.timeout(300)
def test_unpacked_zip_runs_the_job_in_the_mini_cluster(unpacked, local_stack, redis_client, tmp_path):
    stream = f"package-test-{uuid.uuid4().hex[:8]}"
    kinesis = boto3.client("kinesis", **aws_client_kwargs(local_stack.kinesis))
    ensure_stream(kinesis, stream, 1)
    records, frames = _records(3000)
    last_diff = max(sbe.decode(f.frame).last_update_id for f in frames if isinstance(sbe.decode(f.frame), DepthDiffEvent))
    for i in range(0, len(records), 100):
        kinesis.put_records(
            StreamName=stream, Records=[{"Data": r.encode(), "PartitionKey": "BTCUSDT"} for r in records[i : i + 100]]
        )
    properties = tmp_path / "application_properties.json"
    properties.write_text(
        json.dumps(
            [
                {"PropertyGroupId": RUN_OPTIONS_GROUP, "PropertyMap": build_package.RUN_OPTIONS},
                {
                    "PropertyGroupId": JOB_GROUP,
                    "PropertyMap": {
                        "config": "local",
                        "kinesis.stream": stream,
                        "flink.checkpoint_dir": str(tmp_path / "checkpoints"),
                        "flink.savepoint_dir": str(tmp_path / "savepoints"),
                        # the unpacked zip is another checkout: it would make .local/secrets of its own (prod: secretsmanager refs)
                        **{f"redis.users.{role}": pw.get_secret_value() for role, pw in local_stack.redis.users.items()},
                    },
                },
            ]
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("BTCPRED_")}
    with (tmp_path / "job.log").open("wb") as log:
        job = subprocess.Popen(
            [sys.executable, "main.py", "--properties", str(properties)],
            cwd=unpacked,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        ob: dict = {}
        while time.monotonic() < deadline:
            assert job.poll() is None, (tmp_path / "job.log").read_text()[-3000:]
            ob = {k.decode(): v.decode() for k, v in redis_client.hgetall("ob:{BTCUSDT}").items()}
            if ob and int(ob["last_update_id"]) == last_diff:
                break
            time.sleep(0.5)
        assert ob and int(ob["last_update_id"]) == last_diff, f"book at {ob.get('last_update_id')}, want {last_diff}"
        assert ob["book_valid"] == "1"
        assert redis_client.hget("feat:{BTCUSDT}", "ts") is not None
        assert redis_client.xlen("gaps:{BTCUSDT}") == 0
    finally:
        os.killpg(job.pid, 15)
        job.wait(30)
        kinesis.delete_stream(StreamName=stream)
