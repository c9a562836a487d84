"""A Flink cluster's JobManager REST API, and the savepoints it keeps on S3: what operating the job needs.

Every call names the JobManager (``host:port`` or a URL; the local cluster's by default), so the
same code drives the local standalone cluster, a session cluster anywhere, or a port-forwarded
one. The REST API's answers are exact to parse; submitting a Python job needs Flink's own CLI
(``flink run -py``), which the rig and the ``btcpred`` command call.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from btcpred.common.config import Settings, aws_client_kwargs

DEFAULT_JOBMANAGER = "http://127.0.0.1:8081"
TERMINAL = ("CANCELED", "FAILED", "FINISHED")


class ClusterError(RuntimeError):
    """The cluster said no, or did not answer; the text says which and what it said."""


def base_url(jobmanager: str | None) -> str:
    if not jobmanager:
        return DEFAULT_JOBMANAGER
    return jobmanager.rstrip("/") if "://" in jobmanager else f"http://{jobmanager}"


def rest(method: str, path: str, body: dict | None = None, timeout: float = 10.0, jobmanager: str | None = None) -> dict:
    url = base_url(jobmanager)
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{url}{path}", data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        raise ClusterError(f"{method} {path}: HTTP {exc.code} {exc.read().decode(errors='replace')[:500]}") from None
    except OSError as exc:
        raise ClusterError(f"{method} {url}{path}: the JobManager does not answer ({exc})") from None
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        raise ClusterError(f"{method} {path}: not JSON: {raw[:200]!r}") from None


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    name: str
    state: str
    start_time_ms: int


def list_jobs(jobmanager: str | None = None) -> list[JobInfo]:
    jobs = rest("GET", "/jobs/overview", jobmanager=jobmanager)["jobs"]
    return sorted((JobInfo(j["jid"], j["name"], j["state"], j["start-time"]) for j in jobs), key=lambda j: j.start_time_ms)


def running_jobs(jobmanager: str | None = None) -> list[JobInfo]:
    return [j for j in list_jobs(jobmanager) if j.state not in TERMINAL]


def wait_state(job_id: str, states: tuple[str, ...], timeout_s: float = 60, jobmanager: str | None = None) -> str:
    deadline = time.monotonic() + timeout_s
    state = "?"
    while time.monotonic() < deadline:
        state = rest("GET", f"/jobs/{job_id}", jobmanager=jobmanager)["state"]
        if state in states:
            return state
        time.sleep(0.2)
    raise ClusterError(f"job {job_id} is {state}, not {'/'.join(states)}, after {timeout_s:.0f}s")


def wait_running(job_id: str, timeout_s: float = 120, jobmanager: str | None = None) -> None:
    """Until every task of the job runs (state RUNNING alone means scheduled, not deployed)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = rest("GET", f"/jobs/{job_id}", jobmanager=jobmanager)
        if job["state"] in TERMINAL:
            raise ClusterError(f"job {job_id} ended as {job['state']}")
        if job["state"] == "RUNNING" and all(v["status"] == "RUNNING" for v in job["vertices"]):
            return
        time.sleep(0.2)
    raise ClusterError(f"job {job_id} not fully running after {timeout_s:.0f}s")


def _await_savepoint(job_id: str, trigger: str, timeout_s: float, jobmanager: str | None) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = rest("GET", f"/jobs/{job_id}/savepoints/{trigger}", jobmanager=jobmanager)
        if status["status"]["id"] == "COMPLETED":
            op = status["operation"]
            if "failure-cause" in op:
                raise ClusterError(f"savepoint of {job_id} failed: {op['failure-cause'].get('stack-trace', '')[:2000]}")
            return op["location"]
        time.sleep(0.2)
    raise ClusterError(f"savepoint of {job_id} not complete after {timeout_s:.0f}s")


def trigger_savepoint(settings: Settings, job_id: str, timeout_s: float = 120, jobmanager: str | None = None) -> str:
    """A savepoint while the job keeps running; returns its location."""
    body = {"target-directory": settings.flink.savepoint_dir, "cancel-job": False, "formatType": "CANONICAL"}
    trigger = rest("POST", f"/jobs/{job_id}/savepoints", body, jobmanager=jobmanager)["request-id"]
    return _await_savepoint(job_id, trigger, timeout_s, jobmanager)


def stop_with_savepoint(settings: Settings, job_id: str, timeout_s: float = 120, jobmanager: str | None = None) -> str:
    """Stop the job with a final savepoint (sources stop first, nothing is processed after it)."""
    body = {"targetDirectory": settings.flink.savepoint_dir, "drain": False, "formatType": "CANONICAL"}
    trigger = rest("POST", f"/jobs/{job_id}/stop", body, jobmanager=jobmanager)["request-id"]
    location = _await_savepoint(job_id, trigger, timeout_s, jobmanager)
    wait_state(job_id, TERMINAL, timeout_s, jobmanager)
    return location


def cancel(job_id: str, timeout_s: float = 60, jobmanager: str | None = None) -> None:
    rest("PATCH", f"/jobs/{job_id}?mode=cancel", jobmanager=jobmanager)
    wait_state(job_id, TERMINAL, timeout_s, jobmanager)


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
    """(URI, bytes, last modified epoch s) of each complete savepoint under ``flink.savepoint_dir``, oldest first."""
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
