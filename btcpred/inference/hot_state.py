"""One pipelined Redis round trip per cycle: feat:, ob:, tr: and the reanchor: flag."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from btcpred.udfs import redis_schema as rs


@dataclass(frozen=True, slots=True)
class HotState:
    features: dict[str, str]
    book: dict[str, str]
    trades_1s: dict[str, str]
    reanchoring: bool
    new_feature_history: tuple[tuple[str, dict[str, str]], ...] = ()  # feathist entries since the last read

    def feature_float(self, name: str) -> float | None:
        raw = self.features.get(name)
        return float(raw) if raw is not None else None

    def mid(self) -> float | None:
        bid, ask = self.book.get("best_bid"), self.book.get("best_ask")
        if bid is not None and ask is not None:
            return (float(bid) + float(ask)) / 2.0
        return self.feature_float("mid")


HISTORY_READ_LIMIT = 500  # 250 s of 500 ms feature vectors per cycle at most


async def read_hot_state(client: aioredis.Redis, symbol: str, history_after: str = "-") -> HotState:
    """One pipelined round trip; ``history_after`` is the last feathist entry id already seen.
    ``client`` decodes responses (``decode_responses=True``): every field the job writes is text."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(rs.feat_key(symbol))
    pipe.hgetall(rs.ob_key(symbol))
    pipe.hgetall(rs.trade_key(symbol, "1s"))
    pipe.exists(rs.reanchor_key(symbol))
    start = "-" if history_after == "-" else f"({history_after}"
    pipe.xrange(rs.feat_history_key(symbol), min=start, count=HISTORY_READ_LIMIT)
    feat, book, tr1, reanchor, history = await pipe.execute()
    return HotState(feat, book, tr1, bool(reanchor), tuple((entry_id, fields) for entry_id, fields in history))
