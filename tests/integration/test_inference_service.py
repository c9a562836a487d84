"""The inference service against the real local Redis."""

import asyncio
import time

import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest

from btcpred.common.config import load_settings
from btcpred.inference.service import PredictionService, create_app
from tests.integration.inference_process import InferenceProcess

pytestmark = pytest.mark.integration


@pytest.fixture()
def persistence_settings(local_stack):
    """These tests serve the persistence baseline as the model (no registry)."""
    return local_stack.model_copy(update={"inference": local_stack.inference.model_copy(update={"model_source": "persistence"})})


def write_hot_state(client, age_s=0.1, book_valid="1.0"):
    client.hset("ob:{BTCUSDT}", mapping={"best_bid": "61837.63", "best_ask": "61837.64", "last_update_id": "7"})
    client.hset(
        "feat:{BTCUSDT}",
        mapping={
            "mid": "61837.635",
            "book_valid": book_valid,
            "ts": "1723161255500000",
            "book_update_id": "7",
            "emitted_at_us": str(int((time.time() - age_s) * 1e6)),
        },
    )


def test_cycle_reads_redis_and_publishes_prediction(redis_client, persistence_settings):
    write_hot_state(redis_client)
    svc = PredictionService(persistence_settings)

    async def run():
        await svc.cycle(1_800_000_000_000, 0.3)
        await svc.redis.aclose()

    asyncio.run(run())
    p = svc.history[-1]
    assert p.source == "redis" and p.current_price == (61837.63 + 61837.64) / 2
    assert p.feature_time_ms == 1723161255500 and 100 <= p.features_age_ms < 2000
    (entry,) = redis_client.xrange("pred:{BTCUSDT}")
    assert entry[1][b"timestamp"] == b"1800000000000" and entry[1][b"source"] == b"redis"
    assert svc.ready


def test_stale_features_and_unreachable_redis_fall_back(redis_client, persistence_settings):
    write_hot_state(redis_client, age_s=6)
    svc = PredictionService(persistence_settings)
    down = PredictionService(
        load_settings(environ={"BTCPRED_REDIS__PORT": "1", "BTCPRED_INFERENCE__MODEL_SOURCE": "persistence"})
    )

    async def run():
        await svc.cycle(2000, 0)
        await down.cycle(2000, 0)
        await svc.redis.aclose()
        await down.redis.aclose()

    asyncio.run(run())
    assert svc.history[-1].fallback_reason == "stale_features" and svc.degraded_reason == "stale_features"
    assert down.history[-1].source == "fallback" and down.history[-1].current_price is None


def test_http_api_serves_predictions_health_and_ready(redis_client, persistence_settings):
    write_hot_state(redis_client)
    with TestClient(create_app(persistence_settings)) as http:
        assert http.get("/predictions?limit=0").status_code == 422
        deadline = time.time() + 5
        while time.time() < deadline and http.get("/predictions/latest").status_code == 404:
            time.sleep(0.1)
        latest = http.get("/predictions/latest").json()
        assert latest["timestamp"] % 2000 == 0 and latest["source"] == "redis"
        assert http.get("/ready").json() == {"ready": True}
        assert http.get("/health").json()["status"] == "ok"
        assert http.get("/metrics").status_code == 404  # the scraper's port is inference.metrics_port, not the API's
        metrics = generate_latest().decode()
        assert "inference_cycle_latency_seconds_bucket" in metrics and "inference_missed_cycles_total" in metrics
        assert "/predictions/latest" in http.get("/openapi.json").json()["paths"]


def test_a_malformed_hot_state_value_fails_cycles_not_the_service(redis_client, persistence_settings):
    """A garbage ``emitted_at_us`` in feat: makes each cycle raise. The cadence goes on, the failures
    are counted, /health answers 503 "failing" with the exception; once the value is good again the
    next cycle publishes and /health is green."""
    from prometheus_client import REGISTRY

    def failures():
        return REGISTRY.get_sample_value("inference_task_failures_total", {"task": "cycle"})

    write_hot_state(redis_client)
    redis_client.hset("feat:{BTCUSDT}", "emitted_at_us", "not-a-number")
    before = failures()
    with TestClient(create_app(persistence_settings)) as http:
        deadline = time.time() + 8
        while time.time() < deadline and failures() - before < 2:
            time.sleep(0.1)
        assert failures() - before >= 2  # two boundaries: the loop outlived the first failure
        health = http.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "failing"
        assert "ValueError" in health.json()["failing"]["cycle"] and "not-a-number" in health.json()["failing"]["cycle"]
        assert http.get("/predictions/latest").status_code == 404  # nothing half-made was published
        write_hot_state(redis_client)  # fixed
        deadline = time.time() + 6
        while time.time() < deadline and http.get("/predictions/latest").status_code == 404:
            time.sleep(0.1)
        assert http.get("/predictions/latest").json()["source"] == "redis"
        health = http.get("/health")
        assert health.status_code == 200 and health.json()["failing"] == {}


def test_online_scoring_reads_feature_history_in_the_cycle_round_trip(redis_client, persistence_settings):
    write_hot_state(redis_client)  # features at data time 1723161255500 ms, mid 61837.635
    for ts_ms, mid in ((1723161255500, "61837.635"), (1723161265500, "61839.635")):
        redis_client.xadd("feathist:{BTCUSDT}", {"ts": str(ts_ms * 1000), "mid": mid})
    svc = PredictionService(persistence_settings)

    async def run():
        await svc.cycle(2000, 0)
        await svc.cycle(4000, 0)  # same features again: still one scored prediction
        await svc.redis.aclose()

    asyncio.run(run())
    acc = svc.scorer.accuracy()
    assert acc.scored == 1
    assert acc.mae == pytest.approx(2.0) and acc.persistence_mae == pytest.approx(2.0)  # persistence model
    assert acc.directional_accuracy is None  # a flat forecast never takes a side: no direction to score


def test_live_stream_sends_each_prediction_as_a_server_sent_event(redis_client, persistence_settings, tmp_path):
    """A real server process; the SSE wire format is read with a plain HTTP client."""
    import json

    import aiohttp

    write_hot_state(redis_client)
    with InferenceProcess(tmp_path, cadence_ms=250) as inference:
        port = inference.port

        async def read_events(n):
            events = []
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/predictions/stream") as resp:
                    assert resp.headers["content-type"].startswith("text/event-stream")
                    event = {}
                    async for raw in resp.content:
                        line = raw.decode().rstrip("\n")
                        if not line:
                            events.append(event)
                            event = {}
                            if len(events) == n:
                                return events
                            continue
                        key, _, value = line.partition(": ")
                        event[key] = value
            return events

        events = asyncio.run(asyncio.wait_for(read_events(3), 10))
        stamps = [int(e["id"]) for e in events]
        assert [e["event"] for e in events] == ["prediction"] * 3
        assert stamps[1] - stamps[0] == 250 and stamps[2] - stamps[1] == 250
        payload = json.loads(events[-1]["data"])
        assert payload["timestamp"] == stamps[-1] and payload["source"] == "redis"
        model = asyncio.run(_get_json(f"http://127.0.0.1:{port}/model"))
        assert model["model_version"] == "persistence" and model["source"] == "config"
        cadence = asyncio.run(_get_json(f"http://127.0.0.1:{port}/cadence"))
        assert cadence["cycles"] >= 3 and cadence["missed_cycles"] == 0 and cadence["jitter_p99_ms"] is not None


async def _get_json(url):
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return await resp.json()


def test_the_server_refuses_connections_past_its_cap_and_serves_again_when_they_close(redis_client, tmp_path):
    """inference.max_connections bounds what one process holds: with a cap of 4, three held streams
    and one more request fill it, the next is refused with 503, and closing the streams frees it."""

    import aiohttp

    write_hot_state(redis_client)
    with InferenceProcess(tmp_path, max_connections=4) as inference:
        port = inference.port

        async def flood() -> tuple[list[int], int]:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                streams = [await session.get(f"http://127.0.0.1:{port}/predictions/stream") for _ in range(4)]
                statuses = [s.status for s in streams]
                async with session.get(f"http://127.0.0.1:{port}/health") as refused:
                    statuses.append(refused.status)
                for s in streams:
                    s.close()
                await asyncio.sleep(0.5)
                async with session.get(f"http://127.0.0.1:{port}/health") as again:
                    return statuses, again.status

        statuses, after = asyncio.run(asyncio.wait_for(flood(), 20))
        assert statuses[:3] == [200, 200, 200] and 503 in statuses[3:], statuses
        assert after == 200
