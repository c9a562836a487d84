"""Every minute: a REST depth snapshot and the aggregate trades since the last one, to S3 bronze.

    bronze/rest/{symbol}/depth/year=/month=/day=/{fetched_at_ms}-{lastUpdateId}.parquet
    bronze/rest/{symbol}/agg_trades/year=/month=/day=/{first id}-{last id}.parquet

Values are kept as the exchange sent them (decimal strings). Aggregate trades
are fetched from the id after the last archived one, so consecutive objects
join without a gap or an overlap; after a restart the last id is found again
from the newest object name. This is the archive's cross-check of the stream,
never on the hot path.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

import aiohttp
import pyarrow as pa
from prometheus_client import Counter, Gauge

from btcpred.adapters.binance_rest import BinanceRest
from btcpred.adapters.lake import Lake
from btcpred.common.config import Settings
from btcpred.common.service import describe_failure, failing_health, run_service, serving_health
from btcpred.udfs.lake_layout import rest_key, rest_prefix

log = logging.getLogger("rest_poller")

POLLS = Counter("rest_poller_polls_total", "Archive polls", ["data_type", "outcome"])
ROWS = Counter("rest_poller_rows_total", "Rows archived", ["data_type"])
LAST_SUCCESS = Gauge("rest_poller_last_success_timestamp_seconds", "When a poll last archived", ["data_type"])

AGG_NAME = re.compile(r"(\d+)-(\d+)\.parquet$")
AGG_PAGE = 1000


def depth_table(symbol: str, body: dict, fetched_at_ms: int) -> pa.Table:
    rows = [
        (side, level, price, qty)
        for side, key in (("bid", "bids"), ("ask", "asks"))
        for level, (price, qty) in enumerate(body[key], 1)
    ]
    return pa.table(
        {
            "symbol": [symbol] * len(rows),
            "fetched_at_ms": pa.array([fetched_at_ms] * len(rows), pa.int64()),
            "last_update_id": pa.array([int(body["lastUpdateId"])] * len(rows), pa.int64()),
            "side": [r[0] for r in rows],
            "level": pa.array([r[1] for r in rows], pa.int32()),
            "price": [r[2] for r in rows],
            "qty": [r[3] for r in rows],
        }
    )


def agg_trades_table(symbol: str, trades: list[dict]) -> pa.Table:
    return pa.table(
        {
            "symbol": [symbol] * len(trades),
            "agg_trade_id": pa.array([t["a"] for t in trades], pa.int64()),
            "price": [t["p"] for t in trades],
            "qty": [t["q"] for t in trades],
            "first_trade_id": pa.array([t["f"] for t in trades], pa.int64()),
            "last_trade_id": pa.array([t["l"] for t in trades], pa.int64()),
            "time_ms": pa.array([t["T"] for t in trades], pa.int64()),
            "is_buyer_maker": [bool(t["m"]) for t in trades],
            "is_best_match": [bool(t.get("M", True)) for t in trades],
        }
    )


class RestPoller:
    def __init__(self, settings: Settings, rest: BinanceRest, lake: Lake) -> None:
        self.settings = settings
        self.symbol = settings.exchange.symbol
        self.rest = rest
        self.lake = lake
        self.last_agg_id: int | None = None
        self.resumed = False  # the last archived id is looked up in S3 once, before the first fetch
        self.failing: dict[str, str] = {}  # data type -> why its last poll failed (/health 503 until one succeeds)

    def prefix(self, data_type: str) -> str:
        return rest_prefix(self.symbol, data_type)

    def resume_point(self) -> int | None:
        """The last archived aggregate trade id, from the newest object name."""
        ids = [int(m.group(2)) for key in self.lake.keys(self.prefix("agg_trades")) if (m := AGG_NAME.search(key))]
        return max(ids) if ids else None

    async def poll_depth(self) -> str:
        body = await self.rest.depth_raw(self.symbol, self.settings.poller.depth_limit)
        fetched = int(time.time() * 1000)
        key = rest_key(self.symbol, "depth", fetched, f"{fetched}-{body['lastUpdateId']}")
        table = depth_table(self.symbol, body, fetched)
        await asyncio.to_thread(self.lake.put_table, key, table)
        ROWS.labels("depth").inc(table.num_rows)
        return key

    async def poll_agg_trades(self) -> list[str]:
        """Pages from the id after the last archived one until the exchange has no more."""
        keys = []
        if not self.resumed:
            self.last_agg_id = await asyncio.to_thread(self.resume_point)
            self.resumed = True
        while True:
            from_id = self.last_agg_id + 1 if self.last_agg_id is not None else None
            trades = await self.rest.agg_trades(self.symbol, from_id, AGG_PAGE)
            if not trades:
                return keys
            first, last = trades[0]["a"], trades[-1]["a"]
            if from_id is not None and first != from_id:
                log.warning("aggregate trades resume at %d, expected %d", first, from_id)
            key = rest_key(self.symbol, "agg_trades", trades[0]["T"], f"{first}-{last}")
            table = agg_trades_table(self.symbol, trades)
            await asyncio.to_thread(self.lake.put_table, key, table)
            ROWS.labels("agg_trades").inc(table.num_rows)
            self.last_agg_id = last
            keys.append(key)
            if len(trades) < AGG_PAGE:
                return keys

    async def poll_once(self) -> dict[str, object]:
        result: dict[str, object] = {}
        for data_type, poll in (("depth", self.poll_depth), ("agg_trades", self.poll_agg_trades)):
            try:
                result[data_type] = await poll()
                POLLS.labels(data_type, "ok").inc()
                LAST_SUCCESS.labels(data_type).set(time.time())
                self.failing.pop(data_type, None)
            except Exception as exc:  # noqa: BLE001 - the next minute tries again; counted, logged, on /health
                POLLS.labels(data_type, "error").inc()
                self.failing[data_type] = describe_failure(exc)
                log.warning("%s poll failed: %s", data_type, exc)
                result[data_type] = None
        return result

    async def run(self) -> None:
        interval = self.settings.poller.interval_s
        while True:
            started = time.monotonic()
            try:
                await asyncio.to_thread(self.lake.ensure_bucket)  # S3 down at start: the next minute tries again
            except Exception as exc:  # noqa: BLE001 - as a failed poll: counted in the polls, on /health
                for data_type in ("depth", "agg_trades"):
                    POLLS.labels(data_type, "error").inc()
                    self.failing[data_type] = describe_failure(exc, "lake: ")
                log.warning("lake bucket check failed: %s", exc)
            else:
                await self.poll_once()
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))


async def run(settings: Settings) -> None:
    async with aiohttp.ClientSession() as session:
        poller = RestPoller(
            settings,
            BinanceRest(settings.exchange.rest_url, session, settings.poller.weight_budget_per_minute),
            Lake(settings.s3),
        )
        async with serving_health(
            settings.poller.metrics_port, lambda: (True, "polling"), failing_health(poller.failing), host=settings.metrics_host
        ):
            await poller.run()


def main(argv: list[str] | None = None) -> None:
    run_service("1-minute REST archive of depth snapshots and aggregate trades", run, argv)


if __name__ == "__main__":
    main()
