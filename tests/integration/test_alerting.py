"""An alert fired by Prometheus's rules reaches Alertmanager and its receiver (the local alert sink)."""

import json
import time
import urllib.request
from datetime import datetime, timezone

import pytest

from rig import stack
from tests.integration.inference_process import InferenceProcess

pytestmark = pytest.mark.integration


def get(url: str):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def test_a_failing_inference_cycle_fires_an_alert_that_reaches_the_receiver(local_stack, redis_client, tmp_path):
    """A real inference process whose every cycle fails (a malformed feat: value): Prometheus scrapes
    inference_task_failures_total, the InferenceTaskFailing rule fires, Alertmanager notifies the sink."""
    started = datetime.now(timezone.utc)
    redis_client.hset("ob:{BTCUSDT}", mapping={"best_bid": "61837.63", "best_ask": "61837.64", "last_update_id": "7"})
    redis_client.hset(
        "feat:{BTCUSDT}",
        mapping={
            "mid": "61837.635",
            "book_valid": "1.0",
            "ts": "1723161255500000",
            "book_update_id": "7",
            "emitted_at_us": "not-a-number",
        },
    )
    prom = local_stack.prometheus
    # /ready and /health stay red: cycles fail; /model answers once it serves
    with InferenceProcess(tmp_path, ready_path="/model") as inference:
        stack.register_scrape_targets({"inference": inference.metrics_port})
        try:
            assert_alert_reaches_the_sink(prom, started)
        finally:
            stack.register_scrape_targets({"inference": None})


def assert_alert_reaches_the_sink(prom, started: datetime) -> None:
    """InferenceTaskFailing fires in Prometheus, reaches Alertmanager and its receiver (the local sink)."""
    sink = f"http://127.0.0.1:{prom.alert_sink_port}/alerts"
    deadline, arrived = time.monotonic() + 120, []
    while time.monotonic() < deadline and not arrived:
        # received during this test: a first notification, or a repeat if an earlier run's alert still fires
        arrived = [
            a
            for a in get(sink)
            if a["labels"].get("alertname") == "InferenceTaskFailing"
            and a["status"] == "firing"
            and datetime.fromisoformat(a["receivedAt"]) >= started
        ]
        time.sleep(1)
    assert arrived, (
        f"no InferenceTaskFailing at the sink; Alertmanager has {get(f'http://127.0.0.1:{prom.alertmanager_port}/api/v2/alerts')}"
    )
    assert arrived[0]["labels"]["task"] == "cycle" and arrived[0]["labels"]["severity"]
    in_alertmanager = get(f"http://127.0.0.1:{prom.alertmanager_port}/api/v2/alerts?filter=alertname%3DInferenceTaskFailing")
    assert in_alertmanager and in_alertmanager[0]["status"]["state"] == "active"
    lines = [json.loads(x) for x in stack.ALERTS_LOG.read_text().splitlines()]
    assert any(a["labels"].get("alertname") == "InferenceTaskFailing" for a in lines)  # and in the file a person tails
