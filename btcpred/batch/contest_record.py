"""The online contest's decisions into ``ml_experiments``: every promotion and demotion on record.

The inference service decides on the market it serves (an always-valid test on its shadow rows,
``btcpred.inference.contest``) and appends each decision to ``pred:contest:{symbol}``; serving
never waits on PostgreSQL, so the retraining job copies them here, one experiment per decision
(kind ``online_contest``), keyed by the stream entry so a copy made twice is one row.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from prometheus_client import Counter

from btcpred.adapters import registry
from btcpred.common.contest_decision import Decision
from btcpred.udfs import redis_schema as rs

log = logging.getLogger(__name__)

UNREADABLE = Counter("retrain_contest_unreadable_total", "pred:contest: entries that are no decision (not recorded)")


def record(redis_client, engine: sa.Engine, symbol: str) -> dict:
    """Copy every decision in the stream (the service keeps its newest 10,000); returns what was copied.
    A Redis or PostgreSQL error propagates: nothing is taken as "no decisions"."""
    recorded, skipped = [], 0
    for entry_id, raw in redis_client.xrange(rs.contest_stream_key(symbol)):
        try:
            decision = Decision.from_fields({_text(k): _text(v) for k, v in raw.items()})
        except ValueError as exc:
            UNREADABLE.inc()
            skipped += 1
            log.warning("pred:contest: entry %s is no decision, not recorded: %s", _text(entry_id), exc)
            continue
        metrics = {
            **decision.figures,
            "action": decision.action,
            "versus": decision.versus,
            "market": decision.market,
            "data_time_ms": decision.data_time_ms,
        }
        version = decision.model_version
        experiment = f"online-contest:{metrics['market']}:{_text(entry_id)}"
        params = {"alpha": decision.figures.get("alpha")}
        registry.log_experiment(engine, experiment, "online_contest", version, params, [], {}, metrics)
        recorded.append({"experiment_id": experiment, "action": metrics["action"], "model_version": version})
    return {"recorded": len(recorded), "unreadable": skipped, "decisions": recorded[-20:]}


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
