"""Walk-forward retraining: the newest archive hours -> feature store -> candidates on a rolling window -> gate.

    python -m btcpred.batch.retrain [--window-hours 24] [--venue MARKET (default: exchange.market)] [--every SECONDS] [--metrics-port PORT]

One cycle builds the archive hours not in the feature store yet (``btcpred.batch.archive``),
then trains the candidates on the newest ``--window-hours`` of full-quality rows of the
venue (``btcpred.batch.train``), and the gate (``btcpred.batch.gate``) decides whether the validation pick
replaces the production model; its decision is carried out. Too little data is an
outcome too, recorded in ``ml_experiments`` (kind ``retrain``) with the row count, so
"no new model" always has a reason on record. ``--every`` repeats the cycle on a schedule
(default hourly: each hour of new data) as a supervised loop: a failed cycle is logged,
counted in ``retrain_task_failures_total``, turns ``/ready`` red until a cycle succeeds,
and is retried at the next tick.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import redis
from prometheus_client import Counter, Gauge

from btcpred.adapters import redis as redis_store
from btcpred.adapters import registry
from btcpred.adapters.db import migrate
from btcpred.adapters.db.schema import engine_for
from btcpred.adapters.lake import Lake
from btcpred.batch import archive, contest_record, prediction_archive, train
from btcpred.common import entry_point
from btcpred.common.config import Settings, load_settings
from btcpred.common.service import serving_health

log = logging.getLogger(__name__)

CYCLES = Counter("retrain_cycles_total", "Retraining cycles by outcome", ["outcome"])
FAILURES = Counter("retrain_task_failures_total", "Retraining cycles that raised")
PUBLISHED_COPY_FAILURES = Counter(
    "retrain_published_copy_failures_total",
    "Copies of what inference published in Redis (the contest's decisions, the predictions) that failed "
    "because Redis could not be read; retried next cycle",
    ["what"],
)
for _what in ("online contest decisions", "predictions"):
    PUBLISHED_COPY_FAILURES.labels(_what)
LAST_SUCCESS = Gauge("retrain_last_success_timestamp_seconds", "Wall time of the last cycle that completed")
for _outcome in ("promoted", "kept", "not_enough_data"):
    CYCLES.labels(_outcome)


def cycle(
    settings: Settings, venue: str, symbol: str, stream: str, window_hours: float, report_dir: Path, through_now: bool = False
) -> dict:
    """One retraining cycle; returns what it did (also logged to ml_experiments). ``through_now``
    also builds the hour still being archived (the demo's replay: minutes, not hours, of data)."""
    if settings.postgres.apply_migrations:
        migrate.upgrade(settings.postgres)
    loader = engine_for(settings.postgres, "loader")
    try:
        built = archive.build(settings.s3, loader, stream, symbol, venue, through_now=through_now)
    finally:
        loader.dispose()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    outcome: dict = {"archive_hours": len(built), "archive_rows": sum(b.rows for b in built)}
    try:
        result = train.run(settings, venue, symbol, report_dir / stamp, promote=True, window_hours=window_hours)
    except train.NotEnoughData as exc:
        outcome |= {"outcome": "not_enough_data", "detail": str(exc)}
    else:
        promoted = any(g["promote"] for g in result["gate"])
        outcome |= {
            "outcome": "promoted" if promoted else "kept",
            "production": result["production"],
            "gate": result["gate"],
            "report": result["report"],
        }
    trainer = engine_for(settings.postgres, "trainer")
    try:
        outcome["online_contest"] = record_contest(settings, trainer, symbol)
        outcome["predictions_archived"] = archive_predictions(settings, trainer, symbol)
        registry.log_experiment(
            trainer,
            f"{stamp}-retrain",
            "retrain",
            outcome.get("production"),
            {"venue": venue, "window_hours": window_hours, "stream": stream},
            [],
            {},
            outcome,
        )
    finally:
        trainer.dispose()
    CYCLES.labels(outcome["outcome"]).inc()
    return outcome


def _from_published(settings: Settings, what: str, copy) -> dict:
    """``copy(client)`` of what inference published in Redis, as the trainer user. Redis unreachable is
    reported in the outcome and counted, never read as "nothing published"; the next cycle copies it
    (each copy is idempotent). A PostgreSQL or S3 error fails the cycle like any other."""
    client = redis_store.connect(settings.redis, "trainer", socket_timeout=10, socket_connect_timeout=5)
    try:
        return copy(client)
    except redis.RedisError as exc:
        PUBLISHED_COPY_FAILURES.labels(what).inc()
        log.warning("%s not copied this cycle: %s", what, exc)
        return {"error": f"not recorded this cycle: {exc!r}"[:300]}
    finally:
        client.close()


def record_contest(settings: Settings, trainer, symbol: str) -> dict:
    """The service's online decisions into ml_experiments."""
    return _from_published(settings, "online contest decisions", lambda c: contest_record.record(c, trainer, symbol))


def archive_predictions(settings: Settings, trainer, symbol: str) -> dict:
    """Every published prediction into PostgreSQL and S3 silver."""
    return _from_published(settings, "predictions", lambda c: prediction_archive.archive(c, trainer, Lake(settings.s3), symbol))


async def every(settings: Settings, seconds: float, port: int, first_after: float = 0.0, **kwargs) -> None:
    """``cycle`` every ``seconds`` (the first ``first_after`` seconds after start), supervised: an
    exception never ends the loop."""
    healthy = {"ok": True, "why": "no cycle yet"}

    def readiness() -> tuple[bool, str]:
        return healthy["ok"], healthy["why"]

    async with serving_health(port, readiness, readiness, host=settings.metrics_host):  # a failed last cycle: /health red too
        await asyncio.sleep(first_after)
        while True:
            started = time.monotonic()
            try:
                outcome = await asyncio.to_thread(cycle, settings, **kwargs)
            except Exception as exc:  # noqa: BLE001 - supervised: logged, counted, reported, retried next tick
                FAILURES.inc()
                healthy.update(ok=False, why=f"last cycle failed: {exc!r}"[:300])
                log.exception("retraining cycle failed; next try in %.0f s", seconds)
            else:
                healthy.update(ok=True, why=f"last cycle: {outcome['outcome']}")
                LAST_SUCCESS.set(time.time())
                log.info("retraining cycle: %s", json.dumps(outcome)[:2000])
            await asyncio.sleep(max(0.0, seconds - (time.monotonic() - started)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    entry_point.add_config(parser)
    entry_point.add_market(parser)
    parser.add_argument("--stream", default=None, help="archived stream (default: kinesis.stream)")
    parser.add_argument("--window-hours", type=float, default=24.0, help="rolling training window")
    parser.add_argument("--report-dir", type=Path, default=None, help="default: <reports_dir>/retrain")
    parser.add_argument("--every", type=float, default=None, help="repeat every SECONDS (3600: each new hour)")
    parser.add_argument(
        "--first-after",
        type=float,
        default=0.0,
        help="with --every: seconds before the first cycle (a stack that starts with no archive has nothing to learn from yet)",
    )
    parser.add_argument("--metrics-port", type=int, default=9107)
    parser.add_argument("--through-now", action="store_true", help="also build the hour still being archived")
    args = parser.parse_args(argv)
    entry_point.setup_logging()
    settings = load_settings(args.config)
    venue, symbol = entry_point.market_of(args, settings)
    kwargs = dict(
        venue=venue,
        symbol=symbol,
        stream=args.stream or settings.kinesis.stream,
        window_hours=args.window_hours,
        report_dir=entry_point.reports_dir(args.report_dir, settings, "retrain"),
        through_now=args.through_now,
    )
    if args.every:
        asyncio.run(every(settings, args.every, args.metrics_port, args.first_after, **kwargs))
        return 0
    print(json.dumps(cycle(settings, **kwargs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
