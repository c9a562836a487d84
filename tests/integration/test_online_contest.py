"""The online contest's decisions on real servers: the service acts on them after a restart, the
retraining job records each one once in ml_experiments, a malformed entry is skipped and counted."""

import asyncio
import json

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from btcpred.adapters import redis as redis_store
from btcpred.adapters.db.schema import engine_for, ml_experiments
from btcpred.batch import retrain
from btcpred.common.config import load_settings
from btcpred.common.contest_decision import Decision
from btcpred.inference.service import PredictionService
from btcpred.udfs import redis_schema as rs
from tests.integration.test_inference_service import write_hot_state
from tests.unit.inference.test_cycle import ProvenModel

pytestmark = pytest.mark.integration

DEMOTE = Decision(
    "demote",
    "ridge-x",
    "persistence",
    "binance.com-spot",
    1_723_161_255_500,
    {
        "e_value": 21.4,
        "peak_e_value": 21.4,
        "threshold": 20.0,
        "alpha": 0.05,
        "blocks": 31,
        "rows": 4650,
        "mean_diff": 3.1e-9,
        "stake": 0.31,
    },
)


def test_a_model_the_contest_demoted_here_does_not_serve_here_after_a_restart(redis_client, local_stack):
    settings = local_stack.model_copy(update={"exchange": local_stack.exchange.model_copy(update={"market": "binance.com-spot"})})
    write_hot_state(redis_client)
    inference = redis_store.connect(settings.redis, "inference")
    inference.xadd(rs.contest_stream_key("BTCUSDT"), {"action": "promote"})  # no decision: skipped, counted
    inference.xadd(rs.contest_stream_key("BTCUSDT"), DEMOTE.fields())  # the service's own write, as its user
    inference.close()
    skipped = REGISTRY.get_sample_value("inference_contest_unreadable_total") or 0.0

    svc = PredictionService(settings, predictor=ProvenModel("binance.com-spot"))  # the gate proved it here

    async def run():
        await svc.cycle(1_800_000_000_000, 0.3)
        await svc.redis.aclose()

    asyncio.run(run())
    assert svc.verdicts == {"ridge-x": "demote"}
    p = svc.history[-1]
    assert p.source == "redis" and p.model_version == "persistence"  # demoted online: persistence answers here
    assert [c.model_version for c in p.challengers] == ["ridge-x"]  # and the model runs in shadow
    assert REGISTRY.get_sample_value("inference_contest_unreadable_total") == skipped + 1


def test_an_unreadable_contest_stream_is_retried_never_read_as_no_decisions():
    down = PredictionService(load_settings(environ={"BTCPRED_REDIS__PORT": "1"}), predictor=ProvenModel("binance.com-spot"))

    async def run():
        await down.cycle(1_800_000_000_000, 0.3)
        await down.redis.aclose()

    asyncio.run(run())
    assert not down.verdicts_loaded and down.history[-1].source == "fallback"  # tried again next cycle


def test_the_retraining_job_records_every_decision_once(redis_client, isolated_settings, pg_engine):
    sym = "CONTESTTEST"
    redis_client.delete(rs.contest_stream_key(sym))
    inference = redis_store.connect(isolated_settings.redis, "inference")
    promote = Decision(
        "promote",
        "mlp-y",
        "persistence",
        "binance.com-spot",
        1_723_161_555_500,
        {"e_value": 25.6, "blocks": 10, "alpha": 0.05, "mean_diff": 1.9e-9},
    )
    ids = [inference.xadd(rs.contest_stream_key(sym), d.fields()) for d in (promote, DEMOTE)]
    inference.xadd(rs.contest_stream_key(sym), {**DEMOTE.fields(), "figures": "[1, 2]"})  # no figures object
    inference.close()
    trainer = engine_for(isolated_settings.postgres, "trainer")
    try:
        first = retrain.record_contest(isolated_settings, trainer, sym)
        again = retrain.record_contest(isolated_settings, trainer, sym)
    finally:
        trainer.dispose()
    assert (first["recorded"], first["unreadable"]) == (2, 1) and again["recorded"] == 2
    with pg_engine.connect() as conn:
        rows = conn.execute(
            sa.select(ml_experiments.c.experiment_id, ml_experiments.c.model_version, ml_experiments.c.metrics)
            .where(ml_experiments.c.model_kind == "online_contest")
            .order_by(ml_experiments.c.experiment_id)
        ).all()
    assert [r.experiment_id for r in rows] == [f"online-contest:binance.com-spot:{i.decode()}" for i in ids]
    assert [(r.model_version, r.metrics["action"], r.metrics["e_value"]) for r in rows] == [
        ("mlp-y", "promote", 25.6),
        ("ridge-x", "demote", 21.4),
    ]
    assert rows[1].metrics["data_time_ms"] == DEMOTE.data_time_ms and rows[1].metrics["blocks"] == 31
    json.dumps(rows[0].metrics)  # what was recorded is plain JSON


def test_with_redis_unreachable_the_cycle_says_so_and_records_nothing(isolated_settings, pg_engine):
    down = isolated_settings.model_copy(update={"redis": isolated_settings.redis.model_copy(update={"port": 1})})
    trainer = engine_for(isolated_settings.postgres, "trainer")
    try:
        outcome = retrain.record_contest(down, trainer, "BTCUSDT")
    finally:
        trainer.dispose()
    assert outcome["error"].startswith("not recorded this cycle")


def test_the_retraining_job_archives_every_prediction_to_postgres_and_silver_and_draws_them(
    redis_client, isolated_settings, pg_engine, tmp_path
):
    from btcpred.adapters.lake import Lake
    from btcpred.batch import draw_predictions
    from btcpred.udfs.lake_layout import predictions_silver_key
    from tests.unit.batch.test_prediction_archive import prediction, stream_fields

    sym = "ARCHIVETEST"
    Lake(isolated_settings.s3).ensure_bucket()
    redis_client.delete(rs.prediction_stream_key(sym))
    inference = redis_store.connect(isolated_settings.redis, "inference")
    hour = 1_723_161_600_000  # 2024-08-09 00:00 UTC
    for i, price in enumerate((100.0, 101.0, 100.5, 102.0, 101.0, 101.5)):  # a row every 10 s of data time
        p = prediction(hour + i * 2000, hour + i * 10_000, price, price + 0.5, price)
        inference.xadd(rs.prediction_stream_key(sym), stream_fields(p))
    inference.xadd(rs.prediction_stream_key(sym), {"timestamp": "x"})  # no prediction: skipped
    inference.close()
    trainer = engine_for(isolated_settings.postgres, "trainer")
    try:
        first = retrain.archive_predictions(isolated_settings, trainer, sym)
        again = retrain.archive_predictions(isolated_settings, trainer, sym)
    finally:
        trainer.dispose()
    assert (first["rows"], first["unreadable"]) == (12, 1) and again["rows"] == 12  # champion + challenger per entry
    with pg_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM predictions WHERE symbol = :s"), {"s": sym}).scalar() == 12
    silver = Lake(isolated_settings.s3).get_table(predictions_silver_key(sym, hour))
    assert silver.num_rows == 12 and set(silver.column("role").to_pylist()) == {"champion", "challenger"}

    assert (
        len(draw_predictions.load(pg_engine, sym, hour, hour + 5 * 2000, by="boundary_ms")) == 12
    )  # one run's cycles, by wall time
    rows = draw_predictions.load(pg_engine, sym, hour, hour + 3_600_000)
    scored = draw_predictions.score(rows)
    assert scored["n"] == 5  # the last row's target is past the data
    png = tmp_path / "predictions.png"
    draw_predictions.draw(rows, png, "test")
    assert png.stat().st_size > 10_000


def test_each_archive_copy_starts_a_minute_before_the_newest_archived_boundary(redis_client, isolated_settings, pg_engine):
    """The stream holds about 27 h; a cycle copies what is new since the last one (entry ids are the
    service's wall clock, as its boundaries are), less a minute, never the whole stream again."""
    from btcpred.adapters.lake import Lake
    from tests.unit.batch.test_prediction_archive import prediction, stream_fields

    sym = "ARCHIVESINCE"
    Lake(isolated_settings.s3).ensure_bucket()
    key = rs.prediction_stream_key(sym)
    redis_client.delete(key)
    hour = 1_723_161_600_000
    for boundary in (hour, hour + 120_000):  # ids as the service writes them: its wall clock at the cycle
        redis_client.xadd(key, stream_fields(prediction(boundary, boundary, 100.0, 100.5, 100.0)), id=f"{boundary}-0")
    trainer = engine_for(isolated_settings.postgres, "trainer")
    try:
        first = retrain.archive_predictions(isolated_settings, trainer, sym)
        with pg_engine.begin() as conn:  # the older entry's rows gone from the table: a later copy must not need them
            conn.execute(sa.text("DELETE FROM predictions WHERE symbol = :s AND boundary_ms = :b"), {"s": sym, "b": hour})
        later = hour + 130_000
        redis_client.xadd(key, stream_fields(prediction(later, later, 101.0, 101.5, 101.0)), id=f"{later}-0")
        second = retrain.archive_predictions(isolated_settings, trainer, sym)
    finally:
        trainer.dispose()
    assert (first["rows"], first["since"]) == (4, "-")  # champion and challenger of each entry
    assert second["since"] == str(hour + 120_000 - 60_000) and second["rows"] == 4  # the newest two entries only
    with pg_engine.connect() as conn:
        boundaries = conn.execute(
            sa.text("SELECT DISTINCT boundary_ms FROM predictions WHERE symbol = :s ORDER BY 1"), {"s": sym}
        )
        assert [b for (b,) in boundaries] == [hour + 120_000, later]

    # a boundary stamped far ahead must not stop later copies: the start never passes our clock
    future = 4_102_444_800_000  # 2100-01-01
    redis_client.xadd(key, stream_fields(prediction(future, future, 102.0, 102.5, 102.0)), id=f"{later + 1}-0")
    trainer = engine_for(isolated_settings.postgres, "trainer")
    try:
        retrain.archive_predictions(isolated_settings, trainer, sym)
        redis_client.xadd(key, stream_fields(prediction(later + 2000, later + 2000, 103.0, 103.5, 103.0)))
        after = retrain.archive_predictions(isolated_settings, trainer, sym)
    finally:
        trainer.dispose()
    assert int(after["since"]) < future
    with pg_engine.connect() as conn:
        found = conn.execute(
            sa.text("SELECT count(*) FROM predictions WHERE symbol = :s AND boundary_ms = :b"), {"s": sym, "b": later + 2000}
        )
        assert found.scalar() == 2  # the entry added after the far-future one: champion and challenger
