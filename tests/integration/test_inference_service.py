"""The inference service against the real local Redis."""
import asyncio
import time

import pytest
from fastapi.testclient import TestClient

from common.config import load_settings
from inference.service import PredictionService, create_app

pytestmark = pytest.mark.integration


def write_hot_state(client, age_s=0.1, book_valid="1.0"):
    client.hset("ob:BTCUSDT", mapping={"best_bid": "61837.63", "best_ask": "61837.64", "last_update_id": "7"})
    client.hset("feat:BTCUSDT", mapping={
        "mid": "61837.635", "book_valid": book_valid, "ts": "1723161255500000", "book_update_id": "7",
        "emitted_at_us": str(int((time.time() - age_s) * 1e6)),
    })


def test_cycle_reads_redis_and_publishes_prediction(redis_client, settings):
    write_hot_state(redis_client)
    svc = PredictionService(settings)

    async def run():
        await svc.cycle(1_800_000_000_000, 0.3)
        await svc.redis.aclose()

    asyncio.run(run())
    p = svc.history[-1]
    assert p.source == "redis" and p.current_price == (61837.63 + 61837.64) / 2
    assert p.feature_time_ms == 1723161255500 and 100 <= p.features_age_ms < 2000
    (entry,) = redis_client.xrange("pred:BTCUSDT")
    assert entry[1][b"timestamp"] == b"1800000000000" and entry[1][b"source"] == b"redis"
    assert svc.ready


def test_stale_features_and_unreachable_redis_fall_back(redis_client, settings):
    write_hot_state(redis_client, age_s=6)
    svc = PredictionService(settings)
    down = PredictionService(load_settings(environ={"BTCPRED_REDIS__PORT": "1"}))

    async def run():
        await svc.cycle(2000, 0)
        await down.cycle(2000, 0)
        await svc.redis.aclose()
        await down.redis.aclose()

    asyncio.run(run())
    assert svc.history[-1].fallback_reason == "stale_features" and svc.degraded_reason == "stale_features"
    assert down.history[-1].source == "fallback" and down.history[-1].current_price is None


def test_http_api_serves_predictions_health_ready_metrics(redis_client, settings):
    write_hot_state(redis_client)
    with TestClient(create_app(settings)) as http:
        assert http.get("/predictions?limit=0").status_code == 422
        deadline = time.time() + 5
        while time.time() < deadline and http.get("/predictions/latest").status_code == 404:
            time.sleep(0.1)
        latest = http.get("/predictions/latest").json()
        assert latest["timestamp"] % 2000 == 0 and latest["source"] == "redis"
        assert http.get("/ready").json() == {"ready": True}
        assert http.get("/health").json()["status"] == "ok"
        metrics = http.get("/metrics").text
        assert "inference_cycle_latency_seconds_bucket" in metrics and "inference_missed_cycles_total" in metrics
        assert "/predictions/latest" in http.get("/openapi.json").json()["paths"]


def test_online_scoring_reads_feature_history_in_the_cycle_round_trip(redis_client, settings):
    write_hot_state(redis_client)  # features at data time 1723161255500 ms, mid 61837.635
    for ts_ms, mid in ((1723161255500, "61837.635"), (1723161265500, "61839.635")):
        redis_client.xadd("feathist:BTCUSDT", {"ts": str(ts_ms * 1000), "mid": mid})
    svc = PredictionService(settings)

    async def run():
        await svc.cycle(2000, 0)
        await svc.cycle(4000, 0)  # same features again: still one scored prediction
        await svc.redis.aclose()

    asyncio.run(run())
    acc = svc.scorer.accuracy()
    assert acc.scored == 1
    assert acc.mae == pytest.approx(2.0) and acc.persistence_mae == pytest.approx(2.0)  # persistence model
    assert acc.directional_accuracy == 0.0  # a flat forecast never calls a move
