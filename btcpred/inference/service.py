"""HTTP API and the 2-second prediction loop.

The loop reads Redis only (one pipelined round trip), never REST, S3 or
Postgres. Every prediction is kept in a bounded in-memory history and appended
to the Redis stream ``pred:<symbol>`` (bounded) for consumers and replay scoring.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException, Query, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from btcpred.adapters import redis as redis_store
from btcpred.common import entry_point
from btcpred.common.config import Settings, load_settings
from btcpred.common.contest_decision import Decision
from btcpred.common.model_artifact import INTERVAL_COVERAGE
from btcpred.common.recalibration import Recalibration
from btcpred.common.service import record_failure, supervise
from btcpred.inference import contest
from btcpred.inference.cadence import run_aligned
from btcpred.inference.contest import OnlineContest
from btcpred.inference.cycle import make_prediction
from btcpred.inference.hot_state import HotState, read_hot_state
from btcpred.inference.lineup import lineup
from btcpred.inference.model_manager import ModelManager, ModelSource, source_for
from btcpred.inference.models import PersistencePredictor, Predictor
from btcpred.inference.online_model import OnlineRidgePredictor
from btcpred.inference.prediction import Prediction
from btcpred.inference.scoring import OnlineScorer, ScoredPrediction
from btcpred.udfs import redis_schema as rs
from btcpred.udfs.features import HORIZON_US

log = logging.getLogger("inference")

CYCLE_LATENCY = Histogram(
    "inference_cycle_latency_seconds",
    "Boundary to published prediction",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
JITTER = Histogram(
    "inference_cadence_jitter_seconds",
    "Wake-up delay after the 2 s boundary",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1),
)
MISSED = Counter("inference_missed_cycles_total", "2 s boundaries with no prediction")
PREDICTIONS = Counter("inference_predictions_total", "Predictions published", ["source"])
FALLBACKS = Counter("inference_fallback_total", "Fallback predictions", ["reason"])
FEATURE_AGE = Gauge("inference_feature_age_seconds", "Wall-clock age of the features last used")
ONLINE = Gauge("inference_online_accuracy", "Rolling online accuracy (data-time scoring, 10 s horizon)", ["model", "measure"])
HTTP_LATENCY = Histogram(
    "inference_http_request_duration_seconds",
    "HTTP request handling time (not the SSE stream)",
    ["method", "route", "status"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
TASK_FAILURES = Counter("inference_task_failures_total", "Exceptions a supervised task survived", ["task"])
for _task in ("cycle", "model_manager"):
    TASK_FAILURES.labels(_task)
CYCLE_ERRORS = Counter("inference_cycle_errors_total", "Cycles whose Redis read failed (fallback served)")
DECISIONS = Counter(
    "inference_contest_decisions_total", "Promotions and demotions by the online contest on this market", ["action"]
)
for _action in ("promote", "demote"):
    DECISIONS.labels(_action)
BAD_DECISIONS = Counter("inference_contest_unreadable_total", "pred:contest: entries that are no decision (skipped)")
E_VALUE = Gauge(
    "inference_contest_e_value", "The online contest's wealth per test (promotion at 1/alpha)", ["test", "model_version"]
)

WEB_PAGE = (Path(__file__).parent / "web" / "index.html").read_text()  # the live view, served at /
JITTER_WINDOW = 10_000
STREAM_QUEUE = 100


class PredictionService:
    """The cycle loop, the model manager and what the HTTP API reads.

    ``model_source: persistence`` (or an explicit ``predictor``) serves a fixed
    predictor; ``registry`` serves whatever the model manager has swapped in,
    and falls back to persistence (``no_model``) until a model is loaded.
    """

    def __init__(self, settings: Settings, predictor: Predictor | None = None, model_source: ModelSource | None = None) -> None:
        self.settings = settings
        self.symbol = settings.exchange.symbol
        cfg = settings.inference
        self.fixed_predictor = predictor or (PersistencePredictor() if cfg.model_source == "persistence" else None)
        self.manager: ModelManager | None = None
        if self.fixed_predictor is None:
            self.manager = ModelManager(
                model_source or source_for(settings),
                cfg.warmup_runs,
                cfg.max_feature_z,
                available_features=lambda: self.feature_keys,
            )
        self.feature_keys: set[str] | None = None
        self.subscribers: set[asyncio.Queue] = set()
        self.jitter_ms: deque[float] = deque(maxlen=JITTER_WINDOW)
        self.cycles_total = 0
        self.history: deque[Prediction] = deque(maxlen=settings.inference.history_size)
        self.redis = redis_store.connect_async(
            settings.redis, "inference", socket_timeout=0.5, socket_connect_timeout=0.5, decode_responses=True
        )  # every hot-state value is text
        self.last_price: float | None = None
        self.ready = False
        self.degraded_reason: str | None = "starting"
        self.missed_total = 0
        # the served source's realized rows on this market: its interval and confidence recalibrate on them
        self.recalibration = Recalibration()
        self.recalibrated_for: str | None = None  # the champion whose rows they are
        self.scorer = OnlineScorer(horizon_ms=HORIZON_US // 1000, on_scored=self._champion_row)
        self.shadow_scorers: dict[str, OnlineScorer] = {}  # challenger version -> its scores on the same targets
        self.contest = OnlineContest(settings.exchange.market)
        self.verdicts: dict[str, str] = {}  # version -> the contest's last action on this market, oldest first
        self.verdicts_loaded = False  # read back from pred:contest: once Redis answers
        self.unpublished: list[Decision] = []
        # the online ridge runs beside the registry's models (not beside a fixed predictor: tests, persistence mode)
        self.online = OnlineRidgePredictor(cfg.online_forgetting) if cfg.online_ridge and self.fixed_predictor is None else None
        self.online_restored = self.online is None
        self.online_checkpoint: str | None = None  # due to be written
        self.history_cursor = "-"
        self.failing: dict[str, str] = {}  # supervised task -> its last exception, while it is down

    async def supervised_cycle(self, boundary_ms: int, jitter_ms: float) -> None:
        """One cycle whose exception is logged, counted and reported on /health, never the end of the
        cadence: a malformed hot-state value fails this cycle, and the next one tries again."""
        try:
            await self.cycle(boundary_ms, jitter_ms)
        except Exception as exc:  # noqa: BLE001 - supervised: any failure is the same report
            if "cycle" not in self.failing:
                log.exception("prediction cycle %d failed; the next boundary tries again", boundary_ms)
            record_failure(TASK_FAILURES, self.failing, "cycle", exc)
        else:
            self.failing.pop("cycle", None)

    @property
    def predictor(self) -> Predictor | None:
        return self.fixed_predictor or (self.manager.current if self.manager else None)

    async def restore_verdicts(self) -> None:
        """The contest's earlier decisions on this market, from ``pred:contest:``; a read that fails is
        retried next cycle (never taken as "no decisions": a demoted model would serve again)."""
        entries = await self.redis.xrange(rs.contest_stream_key(self.symbol))
        for _, fields in entries:
            try:
                decision = Decision.from_fields(fields)
            except ValueError as exc:
                BAD_DECISIONS.inc()
                log.warning("skipping a pred:contest: entry: %s", exc)
                continue
            if decision.market == self.settings.exchange.market:
                self._rule(decision)
        self.verdicts_loaded = True
        log.info("online contest verdicts on %s: %s", self.settings.exchange.market, self.verdicts or "none")

    def _rule(self, decision: Decision) -> None:
        self.verdicts.pop(decision.model_version, None)
        self.verdicts[decision.model_version] = decision.action  # re-inserted: newest last

    def _decide(self, decision: Decision | None) -> None:
        """A verdict of the always-valid test: acted on from the next cycle, published for the record."""
        if decision is None:
            return
        log.warning(
            "online contest on %s: %s %s (versus %s) with e-value %.1f over %d blocks",
            decision.market,
            decision.action,
            decision.model_version,
            decision.versus,
            decision.figures["e_value"],
            decision.figures["blocks"],
        )
        DECISIONS.labels(decision.action).inc()
        self._rule(decision)
        self.unpublished.append(decision)

    async def _publish_decisions(self) -> None:
        while self.unpublished:
            await self.redis.xadd(
                rs.contest_stream_key(self.symbol), self.unpublished[0].fields(), maxlen=rs.EVENT_STREAM_MAXLEN, approximate=True
            )
            self.unpublished.pop(0)

    def contenders(self) -> tuple[Predictor | None, tuple[Predictor, ...]]:
        """The predictor offered as champion this cycle and the ones in shadow (the contest's verdicts applied)."""
        shadows = tuple(self.manager.shadows.values()) if self.manager else ()
        if self.online is not None:
            shadows += (self.online,)
        return lineup(self.predictor, shadows, self.verdicts, self.settings.exchange.market)

    async def cycle(self, boundary_ms: int, jitter_ms: float) -> None:
        started = time.perf_counter()
        JITTER.observe(max(jitter_ms, 0) / 1000)
        self.jitter_ms.append(jitter_ms)
        self.cycles_total += 1
        try:
            state = await read_hot_state(self.redis, self.symbol, self.history_cursor)
        except Exception as exc:  # noqa: BLE001 - Redis down or a value unreadable: serve the fallback, never skip the cycle
            CYCLE_ERRORS.inc()
            log.warning("Redis read failed: %s", exc)
            state = HotState({}, {}, {}, False)
        else:  # Redis answers: what the contest decided and the online ridge learnt, once (never waited on while it is down)
            if not self.verdicts_loaded:
                with contextlib.suppress(Exception):  # a failed read is tried again next cycle
                    await self.restore_verdicts()
            if not self.online_restored:
                with contextlib.suppress(Exception):
                    await self.restore_online()
        predictor, shadows = self.contenders()  # one lineup for the whole cycle, even if a swap lands meanwhile
        cfg = self.settings.inference
        if state.features:
            self.feature_keys = set(state.features)
        pred = make_prediction(
            self.symbol,
            state,
            boundary_ms,
            time.time_ns() // 1000,
            predictor,
            cfg.max_feature_age_ms,
            self.last_price,
            self.settings.exchange.market,
            shadows,
            self.recalibration,
        )
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
        for queue in self.subscribers:
            if queue.full():
                queue.get_nowait()  # a slow reader loses its oldest prediction, never blocks the cycle
            queue.put_nowait(pred)
        with contextlib.suppress(Exception):
            fields = {
                k: ("" if v is None else json.dumps(v) if isinstance(v, list) else str(v)) for k, v in pred.model_dump().items()
            }  # challengers as JSON
            await self.redis.xadd(
                rs.prediction_stream_key(self.symbol), fields, maxlen=rs.PREDICTION_STREAM_MAXLEN, approximate=True
            )
        with contextlib.suppress(Exception):  # kept until Redis takes them
            await self._publish_decisions()
        if self.online_checkpoint is not None:
            with contextlib.suppress(Exception):  # the next one is due in a minute anyway
                await self.redis.xadd(
                    rs.online_model_stream_key(self.symbol),
                    {"weights": self.online_checkpoint},
                    maxlen=rs.ONLINE_CHECKPOINTS_KEPT,
                    approximate=False,
                )
                self.online_checkpoint = None

    def _score(self, state: HotState, pred: Prediction) -> None:
        """Champion and challengers on the same targets in data time, each from the base price it published."""
        if pred.source == "redis":
            live = {c.model_version for c in pred.challengers}
            for version in [v for v in self.shadow_scorers if v not in live]:
                del self.shadow_scorers[version]  # a challenger no longer run: its scores go with it
            for version in live:
                if version not in self.shadow_scorers:
                    self.shadow_scorers[version] = OnlineScorer(
                        horizon_ms=HORIZON_US // 1000,
                        on_scored=lambda row, v=version: self._decide(self.contest.challenger_row(v, row)),
                    )
        scorers = (self.scorer, *self.shadow_scorers.values())
        for entry_id, fields in state.new_feature_history:
            self.history_cursor = entry_id
            if "mid" in fields and "ts" in fields:
                for scorer in scorers:
                    scorer.record_mid(int(fields["ts"]) // 1000, float(fields["mid"]))
        if pred.source == "redis" and pred.model_version != self.recalibrated_for:
            # another champion: the last one's errors say nothing about its spread
            self.recalibration = Recalibration(pred.interval_coverage or INTERVAL_COVERAGE)
            self.recalibrated_for = pred.model_version
            self.contest.new_champion(pred.model_version)
        if pred.source == "redis" and pred.feature_time_ms is not None and pred.base_price is not None:
            self.scorer.record_prediction(
                pred.feature_time_ms,
                pred.base_price,
                pred.predicted_price_10s or pred.base_price,
                pred.price_low_10s,
                pred.price_high_10s,
                pred.volatility_scale,
            )
            for challenger in pred.challengers:
                if challenger.predicted_price_10s is not None:
                    self.shadow_scorers[challenger.model_version].record_prediction(
                        pred.feature_time_ms, pred.base_price, challenger.predicted_price_10s
                    )
        E_VALUE.clear()  # the tests running now, each under its model
        if self.contest.demotion is not None:
            E_VALUE.labels("demotion", self.contest.champion).set(self.contest.demotion.test.wealth)
        for version, test in self.contest.promotions.items():
            E_VALUE.labels("promotion", version).set(test.test.wealth)
        acc = self.scorer.accuracy()
        for model, measure, value in (
            ("model", "mae", acc.mae),
            ("model", "rmse", acc.rmse),
            ("model", "directional_accuracy", acc.directional_accuracy),
            ("persistence", "mae", acc.persistence_mae),
            ("persistence", "rmse", acc.persistence_rmse),
            ("model", "bias", acc.bias),
            ("model", "calibration_slope", acc.calibration_slope),
            ("model", "interval_coverage", acc.interval_coverage),
        ):
            if value is not None:
                ONLINE.labels(model, measure).set(value)

    def _champion_row(self, row: ScoredPrediction) -> None:
        self._decide(self.contest.champion_row(row))
        self._recalibrate(row)
        if self.online is not None and row.current_price > 0 and row.realized_price > 0:
            if self.online.learn(row.feature_time_ms, math.log(row.realized_price / row.current_price)):
                self.online_checkpoint = self.online.checkpoint()

    async def restore_online(self) -> None:
        """The online ridge's newest checkpoint, if any; a failed read is retried next cycle."""
        entries = await self.redis.xrevrange(rs.online_model_stream_key(self.symbol), count=1)
        if entries and self.online is not None:
            self.online.restore(entries[0][1].get("weights", ""))
            log.info("online ridge restored: %d rows learnt", self.online.model.rows)
        self.online_restored = True

    def _recalibrate(self, row: ScoredPrediction) -> None:
        """A realized champion row into the window, with the quantile its stated interval used."""
        if row.scale is None or row.scale <= 0 or min(row.current_price, row.predicted_price, row.realized_price) <= 0:
            return
        stated = math.log(row.high / row.predicted_price) / row.scale if row.high and row.high > 0 else None
        self.recalibration.add(
            math.log(row.realized_price / row.current_price), math.log(row.predicted_price / row.current_price), row.scale, stated
        )

    def on_missed(self, count: int) -> None:
        self.missed_total += count
        MISSED.inc(count)
        log.warning("%d cycle(s) missed", count)

    async def run(self) -> None:
        tasks = [
            asyncio.create_task(
                supervise(
                    "cycle",
                    lambda: run_aligned(self.settings.inference.cadence_ms, self.supervised_cycle, self.on_missed),
                    TASK_FAILURES,
                    self.failing,
                )
            )
        ]
        if self.manager is not None:
            manager = self.manager
            tasks.append(
                asyncio.create_task(
                    supervise(
                        "model_manager", lambda: manager.run(self.settings.inference.model_poll_s), TASK_FAILURES, self.failing
                    )
                )
            )
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    def cadence_stats(self) -> dict:
        jitter = np.array(self.jitter_ms) if self.jitter_ms else np.zeros(0)
        pct = lambda q: float(np.percentile(jitter, q)) if len(jitter) else None  # noqa: E731
        return {
            "cycles": self.cycles_total,
            "missed_cycles": self.missed_total,
            "window": len(jitter),
            "jitter_p50_ms": pct(50),
            "jitter_p99_ms": pct(99),
            "jitter_max_ms": float(jitter.max()) if len(jitter) else None,
        }


OPEN_ROUTES = ("/health", "/ready")  # the probes never need the token (/metrics is not here: inference.metrics_port)


def _authorized(request, token: str) -> bool:
    header = request.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else request.query_params.get("access_token", "")
    return hmac.compare_digest(given.encode(), token.encode())


def _accuracy_dict(acc) -> dict:
    return {
        "scored": acc.scored,
        "mae": acc.mae,
        "rmse": acc.rmse,
        "directional_accuracy": acc.directional_accuracy,
        "persistence_rmse": acc.persistence_rmse,
    }


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
        if svc.manager is not None:
            svc.manager.source.close()

    app = FastAPI(title="BTCUSDT 10-second price predictor", version="0.1.0", lifespan=lifespan)

    cfg = settings.inference
    token = cfg.api_token.get_secret_value() if cfg.api_token else None

    @app.middleware("http")
    async def time_requests(request, call_next):
        started = time.perf_counter()
        path = request.url.path
        if token is not None and path not in OPEN_ROUTES and not _authorized(request, token):
            return JSONResponse(
                {"detail": "a bearer token is required (inference.api_token)"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        if path == "/predictions/stream" and len(svc.subscribers) >= cfg.max_stream_subscribers:
            return JSONResponse(
                {"detail": f"{cfg.max_stream_subscribers} stream subscribers already: try again later"},
                status_code=503,
                headers={"Retry-After": "10"},
            )
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")  # the template: bounded label values
        if route != "/predictions/stream":  # a stream lasts as long as its client
            HTTP_LATENCY.labels(request.method, route, str(response.status_code)).observe(time.perf_counter() - started)
        return response

    app.state.service = svc

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def live_view() -> HTMLResponse:
        """The live web view: realised price and predictions in data time, scores, health (no CDN: one file)."""
        return HTMLResponse(WEB_PAGE)

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
        """Rolling online accuracy of the champion, of persistence on the same targets, and of every
        challenger in shadow, with its contest against the champion (the gate's test, on these rows)."""
        acc = svc.scorer.accuracy()
        champion_rows = svc.scorer.rows()  # snapshots taken in the loop; the statistics run off it
        shadows = {version: (scorer.accuracy(), scorer.rows()) for version, scorer in svc.shadow_scorers.items()}

        def statistics() -> tuple[dict, dict]:
            return contest.skill_of(champion_rows), {
                version: {
                    **_accuracy_dict(shadow_acc),
                    "skill": contest.skill_of(rows),
                    "versus_champion": contest.versus(champion_rows, rows),
                }
                for version, (shadow_acc, rows) in shadows.items()
            }

        skill, challengers = await asyncio.to_thread(statistics)
        (predictor, _), market = svc.contenders(), settings.exchange.market
        champion = predictor.version if predictor and predictor.proven_on(market) else "persistence" if predictor else None
        return {
            "model_version": champion,
            "horizon_s": HORIZON_US // 1_000_000,
            "scored": acc.scored,
            "mae": acc.mae,
            "rmse": acc.rmse,
            "directional_accuracy": acc.directional_accuracy,
            "persistence": {"mae": acc.persistence_mae, "rmse": acc.persistence_rmse},
            "interval": {
                "coverage": acc.interval_coverage,
                "n": acc.interval_n,
                "nominal": svc.history[-1].interval_coverage if svc.history else None,
                # once this many of the served source's rows are realized here, the interval and
                # the confidence are sized on them rather than on the artifact's validation rows
                "recalibrated_on_rows": len(svc.recalibration.scaled_errors),
                "recalibrated": svc.recalibration.ready,
            },
            "market": market,
            "skill": skill,
            "challengers": challengers,
            "online_contest": {**svc.contest.state(), "verdicts": dict(svc.verdicts)},
        }

    @app.get("/health")
    async def health(response: Response) -> dict:
        """503 while a supervised task is failing (the process is up but not doing its job);
        "degraded" (200) while it serves the flagged fallback."""
        if svc.failing:
            response.status_code = 503
        status = "failing" if svc.failing else "ok" if svc.degraded_reason is None else "degraded"
        return {
            "status": status,
            "reason": svc.degraded_reason,
            "failing": svc.failing,
            "model_version": svc.predictor.version if svc.predictor else None,
            "missed_cycles": svc.missed_total,
        }

    @app.get("/model")
    async def model() -> dict:
        """The serving model: version, features in input order, checksum, training ranges, refused versions."""
        if svc.manager is None:
            return {"model_version": svc.predictor.version, "model_kind": "fixed", "source": "config"}
        return {**svc.manager.info(), "source": settings.inference.model_source}

    @app.get("/cadence")
    async def cadence() -> dict:
        """Wake-up jitter after each 2 s boundary (last 10,000 cycles) and missed cycles."""
        return svc.cadence_stats()

    @app.get("/predictions/stream", response_class=EventSourceResponse)
    async def stream() -> AsyncIterator[ServerSentEvent]:
        """Server-Sent Events: one ``prediction`` event per cycle, id = the cycle's boundary (ms)."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=STREAM_QUEUE)
        svc.subscribers.add(queue)
        try:
            while True:
                pred = await queue.get()
                yield ServerSentEvent(data=pred, event="prediction", id=str(pred.timestamp))
        finally:
            svc.subscribers.discard(queue)

    @app.get("/ready")
    async def ready(response: Response) -> dict:
        if not svc.ready:
            response.status_code = 503
        return {"ready": svc.ready}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="BTCUSDT prediction service")
    entry_point.add_config(parser)
    args = parser.parse_args(argv)
    entry_point.setup_logging()
    settings = load_settings(args.config)
    cfg = settings.inference
    start_http_server(cfg.metrics_port, addr=settings.metrics_host)  # the scraper's port, apart from the API
    uvicorn.run(create_app(settings), host=cfg.host, port=cfg.port, log_level="warning", limit_concurrency=cfg.max_connections)


if __name__ == "__main__":
    main()
