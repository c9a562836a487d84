"""Operate the hot-path job on the local standalone Flink cluster, one command per step.

    python -m rig.flink_cluster start                 # cluster up, web UI http://127.0.0.1:8081
    python -m rig.flink_cluster submit [--from-savepoint URI|latest] [--job FILE]
    python -m rig.flink_cluster list
    python -m rig.flink_cluster savepoint JOB_ID      # savepoint, job keeps running
    python -m rig.flink_cluster stop-job JOB_ID       # stop with savepoint (prints its URI)
    python -m rig.flink_cluster resume [URI|latest]   # = submit --from-savepoint
    python -m rig.flink_cluster savepoints            # savepoints kept on S3, newest last
    python -m rig.flink_cluster cancel JOB_ID
    python -m rig.flink_cluster stop                  # cluster down

Submitting goes through Flink's own CLI (``flink run -py``), which builds the Python job
graph; the rest uses the JobManager's REST API, whose answers are exact to parse.
Savepoints go to ``flink.savepoint_dir`` (the S3 emulator locally). The job reads the
same typed config as every other process (``--config``, ``BTCPRED_*``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from btcpred.common.config import Settings, aws_client_kwargs, load_settings
from deploy import services
from rig import stack

REPO = Path(__file__).resolve().parents[1]

REST = "http://127.0.0.1:8081"
JOB_FILE = REPO / services.FLINK_JOB_FILE
TERMINAL = ("CANCELED", "FAILED", "FINISHED")


class ClusterError(RuntimeError):
    pass


def rest(method: str, path: str, body: dict | None = None, timeout: float = 10.0) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{REST}{path}", data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        raise ClusterError(f"{method} {path}: HTTP {exc.code} {exc.read().decode(errors='replace')[:500]}") from None
    except OSError as exc:
        raise ClusterError(f"{method} {path}: cluster not reachable ({exc}); start it with 'flink_cluster start'") from None
    return json.loads(raw) if raw else {}


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    name: str
    state: str
    start_time_ms: int


def list_jobs() -> list[JobInfo]:
    jobs = rest("GET", "/jobs/overview")["jobs"]
    return sorted((JobInfo(j["jid"], j["name"], j["state"], j["start-time"]) for j in jobs), key=lambda j: j.start_time_ms)


def running_jobs() -> list[JobInfo]:
    return [j for j in list_jobs() if j.state not in TERMINAL]


def submit(
    settings: Settings,
    env: dict[str, str] | None = None,
    from_savepoint: str | None = None,
    job_file: Path = JOB_FILE,
    allow_non_restored: bool = False,
    timeout_s: float = 180,
    code_dir: Path | None = None,
) -> str:
    """``flink run -d`` of the Python job; returns the job id. ``code_dir``: an earlier commit's code
    (``rig.legacy_tree``), first on the client's and the workers' path, before the installed package."""
    py = sys.executable
    cmd = ["bash", str(stack.flink_home() / "bin" / "flink"), "run", "-d"]
    if from_savepoint:
        cmd += ["-s", resolve_savepoint(settings, from_savepoint)]
        if allow_non_restored:
            cmd.append("--allowNonRestoredState")
    cmd += ["-py", str(job_file), "-pyexec", py, "-pyclientexec", py]
    if code_dir is not None:
        cmd += ["-pypath", str(code_dir)]  # the workers' PYTHONPATH (they run on this machine)
    run_env = {
        **(env or os.environ),
        **stack.flink_env(settings),
        "PYTHONPATH": str(code_dir or REPO),
        "BTCPRED_FLINK__SHIP_CONNECTOR_JAR": "false",
    }  # on the cluster's classpath (stack.flink_lib_dir)
    out = subprocess.run(cmd, env=run_env, cwd=REPO, capture_output=True, text=True, timeout=timeout_s)
    job_id = next((line.split()[-1] for line in out.stdout.splitlines() if "JobID" in line), None)
    if out.returncode != 0 or not job_id:
        raise ClusterError(f"flink run failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return job_id


def wait_state(job_id: str, states: tuple[str, ...], timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    state = "?"
    while time.monotonic() < deadline:
        state = rest("GET", f"/jobs/{job_id}")["state"]
        if state in states:
            return state
        time.sleep(0.2)
    raise ClusterError(f"job {job_id} is {state}, not {'/'.join(states)}, after {timeout_s:.0f}s")


def wait_running(job_id: str, timeout_s: float = 120) -> None:
    """Until every task of the job runs (state RUNNING alone means scheduled, not deployed)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = rest("GET", f"/jobs/{job_id}")
        if job["state"] in TERMINAL:
            raise ClusterError(f"job {job_id} ended as {job['state']}")
        if job["state"] == "RUNNING" and all(v["status"] == "RUNNING" for v in job["vertices"]):
            return
        time.sleep(0.2)
    raise ClusterError(f"job {job_id} not fully running after {timeout_s:.0f}s")


def _await_savepoint(job_id: str, trigger: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = rest("GET", f"/jobs/{job_id}/savepoints/{trigger}")
        if status["status"]["id"] == "COMPLETED":
            op = status["operation"]
            if "failure-cause" in op:
                raise ClusterError(f"savepoint of {job_id} failed: {op['failure-cause'].get('stack-trace', '')[:2000]}")
            return op["location"]
        time.sleep(0.2)
    raise ClusterError(f"savepoint of {job_id} not complete after {timeout_s:.0f}s")


def trigger_savepoint(settings: Settings, job_id: str, timeout_s: float = 120) -> str:
    """A savepoint while the job keeps running; returns its location."""
    body = {"target-directory": settings.flink.savepoint_dir, "cancel-job": False, "formatType": "CANONICAL"}
    trigger = rest("POST", f"/jobs/{job_id}/savepoints", body)["request-id"]
    return _await_savepoint(job_id, trigger, timeout_s)


def stop_with_savepoint(settings: Settings, job_id: str, timeout_s: float = 120) -> str:
    """Stop the job with a final savepoint (sources stop first, nothing is processed after it)."""
    body = {"targetDirectory": settings.flink.savepoint_dir, "drain": False, "formatType": "CANONICAL"}
    trigger = rest("POST", f"/jobs/{job_id}/stop", body)["request-id"]
    location = _await_savepoint(job_id, trigger, timeout_s)
    wait_state(job_id, TERMINAL, timeout_s)
    return location


def cancel(job_id: str, timeout_s: float = 60) -> None:
    rest("PATCH", f"/jobs/{job_id}?mode=cancel")
    wait_state(job_id, TERMINAL, timeout_s)


def _s3(settings: Settings):
    import boto3

    return boto3.client("s3", **aws_client_kwargs(settings.s3))


def _objects_under(client, uri: str):
    """(bucket, prefix without a trailing slash, the objects listed under ``uri`` + "/")."""
    bucket, _, prefix = uri.split("://", 1)[1].partition("/")
    prefix = prefix.rstrip("/")
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    return bucket, prefix, (obj for page in pages for obj in page.get("Contents", []))


def list_savepoints(settings: Settings) -> list[tuple[str, int, float]]:
    """(URI, bytes, last modified epoch s) of each savepoint under ``flink.savepoint_dir``, oldest first."""
    location = settings.flink.savepoint_dir
    if not location or not location.startswith(("s3://", "s3p://")):
        raise ClusterError(f"flink.savepoint_dir is {location!r}; only S3 locations are listed")
    found: dict[str, list[float]] = {}
    bucket, prefix, objects = _objects_under(_s3(settings), location)
    for obj in objects:
        rest_of_key = obj["Key"][len(prefix) + 1 :]
        name = rest_of_key.split("/", 1)[0]
        entry = found.setdefault(name, [0, 0.0, 0.0])
        entry[0] += obj["Size"]
        entry[1] = max(entry[1], obj["LastModified"].timestamp())
        entry[2] += rest_of_key.endswith("_metadata")
    scheme = location.split("://", 1)[0]
    complete = [
        (f"{scheme}://{bucket}/{prefix}/{name}", int(size), modified)
        for name, (size, modified, has_metadata) in found.items()
        if has_metadata
    ]
    return sorted(complete, key=lambda s: s[2])


def savepoint_bytes(settings: Settings, uri: str) -> int:
    return next((size for u, size, _ in list_savepoints(settings) if u == uri.rstrip("/")), 0)


def savepoint_contents(settings: Settings, uri: str) -> bytes:
    """Every file of a savepoint on S3, concatenated: to look for what its state names."""
    client = _s3(settings)
    bucket, _, objects = _objects_under(client, uri)
    keys = sorted(obj["Key"] for obj in objects)
    return b"".join(client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys)


def resolve_savepoint(settings: Settings, which: str) -> str:
    if which != "latest":
        return which
    kept = list_savepoints(settings)
    if not kept:
        raise ClusterError(f"no savepoint under {settings.flink.savepoint_dir}")
    return kept[-1][0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None)
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("start")
    sub.add_parser("stop")
    sub.add_parser("list")
    sub.add_parser("savepoints")
    p_submit = sub.add_parser("submit")
    p_submit.add_argument("--from-savepoint", default=None, help="a savepoint URI or 'latest'")
    p_submit.add_argument("--allow-non-restored-state", action="store_true")
    p_submit.add_argument("--job", type=Path, default=JOB_FILE, help="the job's Python file (a newer version)")
    p_resume = sub.add_parser("resume")
    p_resume.add_argument("savepoint", nargs="?", default="latest")
    p_resume.add_argument("--job", type=Path, default=JOB_FILE)
    for name in ("savepoint", "stop-job", "cancel"):
        sub.add_parser(name).add_argument("job_id")
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    try:
        if args.action == "start":
            return stack.main((["--config", args.config] if args.config else []) + ["start", "--with-flink-cluster"])
        if args.action == "stop":
            stack.flink_service(settings).stop()
            print("flink cluster: stopped")
        elif args.action == "list":
            for job in list_jobs():
                print(
                    f"{job.job_id}  {job.state:10s} {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(job.start_time_ms / 1000))}  {job.name}"
                )
        elif args.action == "savepoints":
            for uri, size, modified in list_savepoints(settings):
                print(f"{uri}  {size:>10d} B  {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(modified))}")
        elif args.action in ("submit", "resume"):
            savepoint = args.from_savepoint if args.action == "submit" else args.savepoint
            job_id = submit(
                settings,
                from_savepoint=savepoint,
                job_file=args.job,
                allow_non_restored=getattr(args, "allow_non_restored_state", False),
            )
            wait_running(job_id)
            print(job_id)
        elif args.action == "savepoint":
            print(trigger_savepoint(settings, args.job_id))
        elif args.action == "stop-job":
            print(stop_with_savepoint(settings, args.job_id))
        elif args.action == "cancel":
            cancel(args.job_id)
            print(f"{args.job_id}: cancelled")
    except ClusterError as exc:
        print(f"flink_cluster: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
