"""HTTP API and the 2-second prediction loop.

The loop reads Redis only (one pipelined round trip), never REST, S3 or
Postgres. Every prediction is kept in a bounded in-memory history and appended
to the Redis stream ``pred:<symbol>`` (bounded) for consumers and replay scoring.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from collections import deque

import redis.asyncio as aioredis
import uvicorn
from fastapi import FastAPI, HTTPException, Query, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from common.config import Settings, load_settings
from inference.cadence import run_aligned
from inference.cycle import make_prediction
from inference.hot_state import HotState, read_hot_state
from inference.models import PersistencePredictor, Predictor
from inference.prediction import Prediction
from inference.scoring import OnlineScorer
from udfs import redis_schema as rs

log = logging.getLogger("inference")

CYCLE_LATENCY = Histogram("inference_cycle_latency_seconds", "Boundary to published prediction",
                          buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
JITTER = Histogram("inference_cadence_jitter_seconds", "Wake-up delay after the 2 s boundary",
                   buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1))
MISSED = Counter("inference_missed_cycles_total", "2 s boundaries with no prediction")
PREDICTIONS = Counter("inference_predictions_total", "Predictions published", ["source"])
FALLBACKS = Counter("inference_fallback_total", "Fallback predictions", ["reason"])
FEATURE_AGE = Gauge("inference_feature_age_seconds", "Wall-clock age of the features last used")
ONLINE = Gauge("inference_online_accuracy", "Rolling online accuracy (data-time scoring, 10 s horizon)",
               ["model", "measure"])
CYCLE_ERRORS = Counter("inference_cycle_errors_total", "Cycles whose Redis read failed (fallback served)")

PREDICTION_STREAM_MAXLEN = 50_000


class PredictionService:
    def __init__(self, settings: Settings, predictor: Predictor | None = None) -> None:
        self.settings = settings
        self.symbol = settings.exchange.symbol
        self.predictor = predictor or PersistencePredictor()
        self.history: deque[Prediction] = deque(maxlen=settings.inference.history_size)
        self.redis = aioredis.Redis.from_url(settings.redis.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.last_price: float | None = None
        self.ready = False
        self.degraded_reason: str | None = "starting"
        self.missed_total = 0
        self.scorer = OnlineScorer(horizon_ms=settings.inference.horizon_s * 1000)
        self.history_cursor = "-"

    async def cycle(self, boundary_ms: int, jitter_ms: float) -> None:
        started = time.perf_counter()
        JITTER.observe(max(jitter_ms, 0) / 1000)
        try:
            state = await read_hot_state(self.redis, self.symbol, self.history_cursor)
        except Exception as exc:  # Redis down: serve fallback from memory, never skip the cycle
            CYCLE_ERRORS.inc()
            log.warning("Redis read failed: %s", exc)
            state = HotState({}, {}, {}, False)
        cfg = self.settings.inference
        pred = make_prediction(self.symbol, state, boundary_ms, time.time_ns() // 1000, self.predictor,
                               cfg.max_feature_age_ms, self.last_price)
        pred.latency_ms = (time.perf_counter() - started) * 1000
        if pred.current_price is not None:
            self.last_price = pred.current_price
        self._score(state, pred)
        self.history.append(pred)
        self.degraded_reason = pred.fallback_reason
        if pred.source == "redis":
            self.ready = True
        else:
            FALLBACKS.labels(pred.fallback_reason or "unknown").inc()
        PREDICTIONS.labels(pred.source).inc()
        if pred.features_age_ms is not None:
            FEATURE_AGE.set(pred.features_age_ms / 1000)
        CYCLE_LATENCY.observe(pred.latency_ms / 1000)
        with contextlib.suppress(Exception):
            fields = {k: ("" if v is None else str(v)) for k, v in pred.model_dump().items()}
            await self.redis.xadd(rs.prediction_stream_key(self.symbol), fields,
                                  maxlen=PREDICTION_STREAM_MAXLEN, approximate=True)

    def _score(self, state: HotState, pred: Prediction) -> None:
        for entry_id, fields in state.new_feature_history:
            self.history_cursor = entry_id
            if "mid" in fields and "ts" in fields:
                self.scorer.record_mid(int(fields["ts"]) // 1000, float(fields["mid"]))
        feature_mid = state.feature_float("mid")
        if pred.source == "redis" and pred.feature_time_ms is not None and feature_mid is not None:
            # scored on the feature grid: "current" is the mid the features describe
            shift = (pred.predicted_price_10s or feature_mid) - (pred.current_price or feature_mid)
            self.scorer.record_prediction(pred.feature_time_ms, feature_mid, feature_mid + shift)
        acc = self.scorer.accuracy()
        for model, measure, value in (("model", "mae", acc.mae), ("model", "rmse", acc.rmse),
                                      ("model", "directional_accuracy", acc.directional_accuracy),
                                      ("persistence", "mae", acc.persistence_mae),
                                      ("persistence", "rmse", acc.persistence_rmse)):
            if value is not None:
                ONLINE.labels(model, measure).set(value)

    def on_missed(self, count: int) -> None:
        self.missed_total += count
        MISSED.inc(count)
        log.warning("%d cycle(s) missed", count)

    async def run(self) -> None:
        await run_aligned(self.settings.inference.cadence_ms, self.cycle, self.on_missed)


def create_app(settings: Settings, service: PredictionService | None = None) -> FastAPI:
    svc = service or PredictionService(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        task = asyncio.create_task(svc.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await svc.redis.aclose()

    app = FastAPI(title="BTCUSDT 10-second price predictor", version="0.1.0", lifespan=lifespan)
    app.state.service = svc

    @app.get("/predictions/latest", response_model=Prediction)
    async def latest() -> Prediction:
        if not svc.history:
            raise HTTPException(status_code=404, detail="no prediction yet: the first cycle runs at the next 2 s boundary")
        return svc.history[-1]

    @app.get("/predictions", response_model=list[Prediction])
    async def recent(limit: int = Query(100, ge=1, le=1000)) -> list[Prediction]:
        return list(svc.history)[-limit:]

    @app.get("/accuracy")
    async def accuracy() -> dict:
        """Rolling online accuracy of the served model and of persistence on the same targets."""
        acc = svc.scorer.accuracy()
        return {"model_version": svc.predictor.version, "horizon_s": settings.inference.horizon_s,
                "scored": acc.scored, "mae": acc.mae, "rmse": acc.rmse,
                "directional_accuracy": acc.directional_accuracy,
                "persistence": {"mae": acc.persistence_mae, "rmse": acc.persistence_rmse}}

    @app.get("/health")
    async def health() -> dict:
        status = "ok" if svc.degraded_reason is None else "degraded"
        return {"status": status, "reason": svc.degraded_reason, "model_version": svc.predictor.version,
                "missed_cycles": svc.missed_total}

    @app.get("/ready")
    async def ready(response: Response) -> dict:
        if not svc.ready:
            response.status_code = 503
        return {"ready": svc.ready}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="BTCUSDT prediction service")
    parser.add_argument("--config", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = load_settings(args.config)
    cfg = settings.inference
    uvicorn.run(create_app(settings), host=cfg.host, port=cfg.port, log_level="warning")


if __name__ == "__main__":
    main()
