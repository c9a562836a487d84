"""Health endpoints of a threaded process (the SBE archiver): served from their own thread, red while a task fails."""

import json
import time
import urllib.error
import urllib.request

from btcpred.common.service import failing_health, serve_health_in_thread
from rig.pipeline import free_port


def _get(port: int, path: str) -> tuple[int, dict | str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            body = resp.read().decode()
            return resp.status, json.loads(body) if path != "/metrics" else body
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read().decode())


def test_health_follows_the_failing_tasks_and_metrics_are_served():
    port, failing, reading = free_port(), {}, set()
    serve_health_in_thread(port, lambda: (bool(reading), "reading"), failing_health(failing))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            status, _ = _get(port, "/ready")
            break
        except OSError:
            time.sleep(0.05)
    assert status == 503  # no shard read yet
    reading.add("shardId-000000000000")
    failing["shardId-000000000001"] = "ClientError: ExpiredIteratorException"
    assert _get(port, "/ready")[0] == 200
    status, body = _get(port, "/health")
    assert status == 503 and "shardId-000000000001: ClientError" in body["reason"]
    failing.clear()
    assert _get(port, "/health") == (200, {"status": "ok", "reason": "ok"})
    status, text = _get(port, "/metrics")
    assert status == 200 and "python_info" in text
