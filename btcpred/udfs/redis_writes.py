"""What the hot path writes to Redis, as values: the job's operators emit them, one sink applies them.

``RedisWrite`` is a hash replaced in full or a stream entry; the builders below make the side
outputs' entries (gaps, late trades, drift checks, dead letters) with the stream bounds of the
Redis schema (``redis_schema``). ``coalesce`` keeps one replacement per hash of a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from btcpred.udfs import redis_schema as rs
from btcpred.udfs.events import MarketEvent, TradesEvent
from btcpred.udfs.order_book import Drift, Gap
from btcpred.udfs.pickling import fast_state


@fast_state
@dataclass(frozen=True, slots=True)
class RedisWrite:
    """One Redis operation: a hash replaced in full (with TTL) or a stream entry.

    ``receipt_time_us`` (ingestor receipt of the event that caused the write) makes the
    sink stamp ``receipt_time_us``/``written_at_us`` into the hash for freshness tracking.
    ``version_field`` names the field that orders versions of the hash: an older version
    never replaces a newer one (after a restore from a checkpoint the job re-emits states
    Redis has already moved past, and readers must not see the book go back).
    """

    kind: str  # "hash" | "xadd"
    key: str
    fields: dict[str, str]
    ttl_s: int | None = None
    maxlen: int | None = None
    receipt_time_us: int | None = None
    version_field: str | None = None
    once_key: str | None = None  # a stream entry written at most once per key (replays after a restore)


def coalesce(writes: list[RedisWrite]) -> list[RedisWrite]:
    """Keep only the last full replacement of each hash; stream entries all stay, in order.

    A batch of diffs rewrites ``ob:`` once per diff; only the final state matters to readers.
    """
    last_hash = {w.key: i for i, w in enumerate(writes) if w.kind == "hash"}
    return [w for i, w in enumerate(writes) if w.kind != "hash" or last_hash[w.key] == i]


def drift_write(symbol: str, drift: Drift, snapshot_update_id: int) -> RedisWrite:
    fields = {
        "update_id": str(drift.update_id),
        "snapshot_update_id": str(snapshot_update_id),
        "levels_compared": str(drift.levels_compared),
        "levels_mismatched": str(drift.levels_mismatched),
    }
    return RedisWrite("xadd", rs.drift_stream_key(symbol), fields, maxlen=rs.EVENT_STREAM_MAXLEN)


def gap_write(gap: Gap, receipt_time_us: int) -> RedisWrite:
    fields = {
        "symbol": gap.symbol,
        "expected_update_id": str(gap.expected_update_id),
        "first_update_id": str(gap.first_update_id),
        "last_update_id": str(gap.last_update_id),
        "event_time_us": str(gap.event_time_us),
        "receipt_time_us": str(receipt_time_us),
    }
    # after a restore from a checkpoint the job detects the same gap again: one record per gap, not per detection
    once = f"{rs.gap_stream_key(gap.symbol)}:seen:{gap.expected_update_id}:{gap.first_update_id}:{gap.last_update_id}"
    return RedisWrite("xadd", rs.gap_stream_key(gap.symbol), fields, maxlen=rs.EVENT_STREAM_MAXLEN, once_key=once)


def late_write(event: TradesEvent, receipt_time_us: int, boundary_us: int) -> RedisWrite:
    fields = {
        "symbol": event.symbol,
        "transact_time_us": str(event.transact_time_us),
        "trade_ids": ",".join(str(t.trade_id) for t in event.trades),
        "closed_boundary_us": str(boundary_us),
        "receipt_time_us": str(receipt_time_us),
    }
    return RedisWrite("xadd", rs.late_stream_key(event.symbol), fields, maxlen=rs.EVENT_STREAM_MAXLEN)


def rejected_write(event: MarketEvent, reason: str, receipt_time_us: int) -> RedisWrite:
    """The dead letter of a decoded event that was refused or raised (its frame is in bronze too)."""
    return dead_letter_write(f"{type(event).__name__} refused: {reason}", repr(event), receipt_time_us)


def dead_letter_write(reason: str, record: str, receipt_time_us: int) -> RedisWrite:
    return RedisWrite(
        "xadd",
        rs.dead_letter_stream_key(),
        {"reason": reason, "record": record[:4096], "receipt_time_us": str(receipt_time_us)},
        maxlen=rs.DEAD_LETTER_MAXLEN,
    )
