"""ONNX models served from the registry: hot swap, refusal, fallback; against real Redis, Postgres and S3."""

import asyncio
import contextlib
import math
import time

import numpy as np
import pytest

from btcpred.adapters import registry
from btcpred.adapters.lake import Lake
from btcpred.batch.modeling import BOOK_FEATURES
from btcpred.inference.service import PredictionService
from tests.integration.model_fixtures import real_rows, register_model, write_features

pytestmark = pytest.mark.integration

CADENCE_MS = 500  # 4x the production rate; at 200 ms a GIL-heavy model load on a busy 2-core CI machine delayed one wake-up past its boundary (run p-2)


@pytest.fixture(scope="module")
def rows():
    return real_rows()


@pytest.fixture()
def fast_settings(isolated_settings):
    """A fast cadence and a 200 ms registry poll, so a swap fits in a few seconds of test; the market
    served is the Binance.US book the rows and the models come from (the models' gate market)."""
    return isolated_settings.model_copy(
        update={
            "inference": isolated_settings.inference.model_copy(
                update={"cadence_ms": CADENCE_MS, "model_poll_s": 0.2, "model_source": "registry"}
            ),
            "exchange": isolated_settings.exchange.model_copy(update={"market": "binance.us"}),
        }
    )


async def keep_fresh(client, row, stop: asyncio.Event) -> None:
    while not stop.is_set():
        write_features(client, row)
        await asyncio.sleep(0.05)


async def serve_until(svc: PredictionService, client, row, done, timeout_s: float = 20.0) -> None:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(svc.run()), asyncio.create_task(keep_fresh(client, row, stop))]
    try:
        deadline = time.monotonic() + timeout_s
        while not await done() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await svc.redis.aclose()
        svc.manager.source.close()


def test_model_swap_happens_between_cycles_without_missing_one(redis_client, fast_settings, pg_engine, rows):
    lake = Lake(fast_settings.s3)
    lake.ensure_bucket()
    first = register_model(pg_engine, lake, rows[:1500], "mlp-a", seed=0)
    second = register_model(pg_engine, lake, rows[:1500], "mlp-b", seed=1)
    registry.promote(pg_engine, first)
    row = rows[-1]
    svc = PredictionService(fast_settings)
    promoted = False

    async def done():
        nonlocal promoted
        versions = [p.model_version for p in svc.history]
        if not promoted and versions.count(first) >= 3:
            await asyncio.to_thread(registry.promote, pg_engine, second)
            promoted = True
        return versions.count(second) >= 3

    asyncio.run(serve_until(svc, redis_client, row, done))
    served = [p for p in svc.history if p.source == "redis"]
    versions = [p.model_version for p in served]
    assert first in versions and versions[-1] == second
    swap = versions.index(second)
    assert set(versions[:swap]) == {first} and set(versions[swap:]) == {second}  # one clean switch
    stamps = [p.timestamp for p in svc.history]
    assert all(b - a == CADENCE_MS for a, b in zip(stamps, stamps[1:])) and svc.missed_total == 0
    # what was served is the model's own output: price * exp(onnx(features in the model's order))
    x = np.array([[row.features[n] for n in BOOK_FEATURES]])
    r = svc.manager.current.model.predict(x)[0]
    mid = served[-1].current_price
    assert served[-1].predicted_price_10s == pytest.approx(mid * math.exp(r), rel=1e-12)
    assert served[-1].confidence == pytest.approx(svc.manager.current.model.meta.calibration.confidence(r))
    assert r != 0.0


def test_model_with_mismatched_features_is_refused_and_the_old_one_kept(redis_client, fast_settings, pg_engine, rows, caplog):
    lake = Lake(fast_settings.s3)
    lake.ensure_bucket()
    good = register_model(pg_engine, lake, rows[:800], "mlp-good")
    bad = register_model(pg_engine, lake, rows[:800], "mlp-bad", feature_names=[*BOOK_FEATURES[:-1], "not_a_feature"])
    write_features(redis_client, rows[-1])
    svc = PredictionService(fast_settings)

    async def scenario():
        await svc.cycle(1000, 0)  # learns which features the hot path publishes
        registry.promote(pg_engine, good)
        assert await svc.manager.poll_once() == "loaded"
        registry.promote(pg_engine, bad)
        assert await svc.manager.poll_once() == "refused"
        assert await svc.manager.poll_once() == "refused"  # not retried (and not re-logged) every poll
        await svc.cycle(1200, 0)
        await svc.redis.aclose()
        svc.manager.source.close()

    asyncio.run(scenario())
    assert svc.manager.current.version == good
    assert svc.history[-1].model_version == good and svc.history[-1].source == "redis"
    assert "not_a_feature" in svc.manager.info()["refused"][bad]
    refusals = [r for r in caplog.records if "mlp-bad refused" in r.getMessage()]
    assert len(refusals) == 1 and "keeping mlp-good" in refusals[0].getMessage()


def test_no_model_then_stale_features_fall_back_and_recover(redis_client, fast_settings, pg_engine, rows):
    lake = Lake(fast_settings.s3)
    lake.ensure_bucket()
    svc = PredictionService(fast_settings)
    row = rows[-1]

    async def scenario():
        write_features(redis_client, row)
        await svc.cycle(1000, 0)
        no_model = svc.history[-1]
        registry.promote(pg_engine, register_model(pg_engine, lake, rows[:800], "mlp-c"))
        assert await svc.manager.poll_once() == "loaded"
        write_features(redis_client, row, age_s=6)
        await svc.cycle(1200, 0)
        stale = svc.history[-1], svc.degraded_reason
        write_features(redis_client, row)
        await svc.cycle(1400, 0)
        await svc.redis.aclose()
        svc.manager.source.close()
        return no_model, stale

    no_model, (stale, stale_reason) = asyncio.run(scenario())
    assert no_model.source == "fallback" and no_model.fallback_reason == "no_model"
    assert no_model.predicted_price_10s == no_model.current_price and no_model.confidence == 0.0
    assert stale.source == "fallback" and stale_reason == "stale_features"
    recovered = svc.history[-1]
    assert recovered.source == "redis" and recovered.model_version == "mlp-c" and svc.degraded_reason is None
    assert svc.ready


def test_a_model_unproven_on_the_market_runs_in_shadow_beside_persistence(redis_client, fast_settings, pg_engine, rows):
    """The registry's production model has gate evidence on Binance.US only; the service serves binance.com
    spot: persistence answers, the model's prediction is published beside it and scored in shadow."""
    import json

    from btcpred.udfs import redis_schema as rs

    settings = fast_settings.model_copy(
        update={"exchange": fast_settings.exchange.model_copy(update={"market": "binance.com-spot"})}
    )
    lake = Lake(settings.s3)
    lake.ensure_bucket()
    registry.promote(pg_engine, register_model(pg_engine, lake, rows[:800], "mlp-us"))
    register_model(pg_engine, lake, rows[:800], "mlp-old", seed=3)  # staging, older: not run
    register_model(pg_engine, lake, rows[:800], "mlp-new", seed=4)  # staging, the newest MLP: run in shadow
    assert [m.model_version for m in registry.challengers(pg_engine)] == ["mlp-new"]
    row = rows[-1]
    svc = PredictionService(settings)

    async def done():
        return sum(1 for p in svc.history if len(p.challengers) == 3) >= 3

    asyncio.run(serve_until(svc, redis_client, row, done))
    shadowed = [p for p in svc.history if p.challengers]
    last = shadowed[-1]
    assert (last.source, last.model_version, last.confidence, last.market) == ("redis", "persistence", 0.5, "binance.com-spot")
    assert last.predicted_price_10s == last.base_price == row.mid
    challenger, staging, online = last.challengers
    assert staging.model_version == "mlp-new" and staging.why_not_served == "unproven_on_market:binance.com-spot"
    # the online ridge learns on this market and runs beside them; warming up, it predicts no move yet
    assert online.model_version == "online-ridge" and online.why_not_served == "unproven_on_market:binance.com-spot"
    assert online.predicted_price_10s == pytest.approx(row.mid)
    r = svc.manager.current.model.predict(np.array([[row.features[n] for n in BOOK_FEATURES]]))[0]
    assert challenger.model_version == "mlp-us" and challenger.why_not_served == "unproven_on_market:binance.com-spot"
    assert challenger.predicted_price_10s == pytest.approx(row.mid * math.exp(r), rel=1e-12) and r != 0.0
    # the pred: stream carries the contest as JSON, for anyone scoring the published prices later
    entries = redis_client.xrevrange(rs.prediction_stream_key("BTCUSDT"), count=1)
    published = json.loads(entries[0][1][b"challengers"])
    assert published[0]["model_version"] == "mlp-us" and published[0]["predicted_price_10s"] == challenger.predicted_price_10s
    assert [c["model_version"] for c in published] == ["mlp-us", "mlp-new", "online-ridge"]
    assert int(entries[0][1][b"target_time_ms"]) == int(entries[0][1][b"feature_time_ms"]) + 10_000
