"""Every published prediction into PostgreSQL ``predictions`` and S3 silver, hour by hour.

The inference service appends each cycle's prediction (champion and challengers) to the bounded
``pred:{symbol}`` stream; the retraining job copies it here every cycle, so any period can be
scored and drawn later (``btcpred.batch.draw_predictions``) long after the stream dropped it.
Rows are upserted by (symbol, boundary, model version): a copy made twice is one row. Each
touched hour is then rewritten to ``silver/predictions/...`` from the table, so the two agree.

Stream entries are checked like any input: one that is not a prediction (a missing or
non-numeric field, unparsable challengers) is skipped, counted and logged, never written.
"""

from __future__ import annotations

import json
import logging
import math
import time
from datetime import datetime, timezone

import pyarrow as pa
import sqlalchemy as sa
from prometheus_client import Counter
from sqlalchemy.dialects.postgresql import insert

from btcpred.adapters.db.schema import predictions
from btcpred.adapters.lake import Lake
from btcpred.udfs import redis_schema as rs
from btcpred.udfs.lake_layout import predictions_silver_key

log = logging.getLogger(__name__)

UNREADABLE = Counter("retrain_prediction_entries_unreadable_total", "pred: entries that are no prediction (not archived)")
HOUR_MS = 3_600_000
COLUMNS = [c.name for c in predictions.columns]
# the silver file's columns are the table's, in its order (one owner: btcpred/adapters/db/schema.py)
_ARROW = {sa.Text: pa.string(), sa.BigInteger: pa.int64(), sa.Float: pa.float64()}
SCHEMA = pa.schema([(c.name, _ARROW[type(c.type)]) for c in predictions.columns])
OVERLAP_MS = 60_000  # each copy starts this long before the newest boundary archived: late entries, clock steps


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


INT64 = 2**63  # a BIGINT column's range: a value past it would fail the insert of the whole batch


def _number(fields: dict, name: str, kind=float):
    """An optional numeric field: "" is absent; anything else must be a finite number (an integer within
    a BIGINT for ``kind`` int)."""
    raw = fields.get(name, "")
    if raw == "":
        return None
    return _checked(name, kind(raw) if kind is int else float(raw), kind)


def _checked(name: str, value, kind=float):
    """``value`` as a column can hold it, or ``ValueError``: what PostgreSQL would refuse is refused here, so
    one bad entry is skipped and counted instead of failing every cycle's copy."""
    if value is None:
        return None
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} {value!r} is not a finite number")
        return float(value)
    if not -INT64 <= value < INT64:
        raise ValueError(f"{name} {value!r} is past a BIGINT")
    return value


def _optional_text(value, required: bool = False) -> str | None:
    if (value is None and required) or (value is not None and not isinstance(value, str)):
        raise ValueError(f"{value!r} is not text")
    return value


def rows_of(symbol: str, fields: dict[str, str]) -> list[dict]:
    """The champion's row and one per challenger from one stream entry; ``ValueError`` if it is no prediction."""
    try:
        boundary = _checked("timestamp", int(fields["timestamp"]), int)
        source = fields["source"]
        if source not in ("redis", "fallback"):
            raise ValueError(f"source {source!r}")
        base = dict(
            symbol=symbol,
            boundary_ms=boundary,
            market=fields.get("market") or None,
            feature_time_ms=_number(fields, "feature_time_ms", int),
            target_time_ms=_number(fields, "target_time_ms", int),
        )
        champion = dict(
            base,
            model_version=fields["model_version"],
            role="champion",
            source=source,
            fallback_reason=fields.get("fallback_reason") or None,
            base_price=_number(fields, "base_price"),
            predicted_price=_number(fields, "predicted_price_10s"),
            price_low=_number(fields, "price_low_10s"),
            price_high=_number(fields, "price_high_10s"),
            confidence=_number(fields, "confidence"),
        )
        rows = [champion]
        for c in json.loads(fields.get("challengers") or "[]"):
            predicted = _checked("challenger price", c.get("predicted_price_10s"))
            rows.append(
                dict(
                    base,
                    model_version=_optional_text(c["model_version"], required=True),
                    role="challenger",
                    source="redis",
                    fallback_reason=_optional_text(c.get("why_not_served")),
                    base_price=champion["base_price"],
                    predicted_price=predicted,
                    price_low=None,
                    price_high=None,
                    confidence=_checked("challenger confidence", c.get("confidence")),
                )
            )
        return rows
    except (KeyError, TypeError, json.JSONDecodeError, AttributeError) as exc:
        raise ValueError(f"not a prediction: {exc!r}") from exc


def archive(redis_client, engine: sa.Engine, lake: Lake, symbol: str) -> dict:
    """Copy what the stream holds since the newest archived boundary (less ``OVERLAP_MS``; the first
    copy takes it all) into the table, then rewrite each touched hour's silver file from the table.
    Entry ids are the service's wall clock, as its cycle boundaries are; copying an entry twice is
    one row. A Redis, PostgreSQL or S3 error propagates: nothing is taken as "no predictions"."""
    with engine.connect() as conn:
        newest = conn.execute(sa.select(sa.func.max(predictions.c.boundary_ms)).where(predictions.c.symbol == symbol)).scalar()
    # never later than our clock: one archived boundary stamped far ahead (a bad entry the BIGINT bound
    # let through) would otherwise make every later copy start past it and archive nothing again
    now_ms = time.time_ns() // 1_000_000
    since = "-" if newest is None else str(max(min(int(newest), now_ms) - OVERLAP_MS, 0))
    rows, skipped, hours = [], 0, set()
    for entry_id, raw in redis_client.xrange(rs.prediction_stream_key(symbol), min=since):
        fields = {_text(k): _text(v) for k, v in raw.items()}
        try:
            found = rows_of(symbol, fields)
        except ValueError as exc:
            UNREADABLE.inc()
            skipped += 1
            log.warning("pred: entry %s skipped: %s", _text(entry_id), exc)
            continue
        rows += found
        hours.add(found[0]["boundary_ms"] // HOUR_MS * HOUR_MS)
    if rows:
        with engine.begin() as conn:
            for start in range(0, len(rows), 2000):
                stmt = insert(predictions).values(rows[start : start + 2000])
                stmt = stmt.on_conflict_do_update(
                    index_elements=["symbol", "boundary_ms", "model_version"],
                    set_={k: stmt.excluded[k] for k in COLUMNS if k not in ("symbol", "boundary_ms", "model_version")},
                )
                conn.execute(stmt)
    for hour in sorted(hours):
        lake.put_table(predictions_silver_key(symbol, hour), hour_table(engine, symbol, hour))
    return {"rows": len(rows), "unreadable": skipped, "hours": [_iso(h) for h in sorted(hours)], "since": since}


def hour_table(engine: sa.Engine, symbol: str, hour_ms: int) -> pa.Table:
    t = predictions.c
    with engine.connect() as conn:
        found = (
            conn.execute(
                sa.select(predictions)
                .where(t.symbol == symbol, t.boundary_ms >= hour_ms, t.boundary_ms < hour_ms + HOUR_MS)
                .order_by(t.boundary_ms, t.model_version)
            )
            .mappings()
            .all()
        )
    return pa.Table.from_pylist([dict(r) for r in found], schema=SCHEMA)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="minutes")
