"""A gap read while another re-anchor holds the symbol is acknowledged only once the book is healed.

The running re-anchor (here a drift check) may have fetched its snapshot before the gap;
the gap consumer must not take it as covering the gap. Real Redis; the exchange's REST
and the Kinesis writer are stand-ins that play the job: a snapshot put in band turns the
book valid at the snapshot's id.
"""
from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from reliability.reanchor_service import Reanchorer
from udfs import redis_schema as rs
from udfs.events import DepthSnapshotEvent

pytestmark = pytest.mark.integration
SYMBOL = "BTCUSDT"


class ExchangeAndJob:
    """REST depth answers snapshot ``next_id``; the 'job' applies an in-band snapshot to ob: at once."""

    def __init__(self, client: aioredis.Redis, next_id: int) -> None:
        self.client, self.next_id, self.fetched = client, next_id, 0

    async def depth(self, symbol: str, limit: int = 1000) -> DepthSnapshotEvent:
        self.fetched += 1
        return DepthSnapshotEvent(symbol, 0, self.next_id, ((100, 1),), ((101, 1),))

    def put(self, records) -> None:
        asyncio.run_coroutine_threadsafe(
            self.client.hset(rs.ob_key(SYMBOL), mapping={"book_valid": "1", "last_update_id": str(self.next_id)}),
            self.loop).result()


async def scenario(settings, healed_by_running: bool) -> tuple[int, int, int]:
    client = aioredis.Redis.from_url(settings.redis.url)
    await client.flushall()
    fake = ExchangeAndJob(client, next_id=130)
    fake.loop = asyncio.get_running_loop()
    service = Reanchorer(settings, client, fake, fake)
    await service.ensure_group()
    # a drift check is running: it holds the symbol's lock; the book is still valid from before the gap
    await client.set(rs.reanchor_key(SYMBOL), "verify", px=30_000)
    await client.hset(rs.ob_key(SYMBOL), mapping={"book_valid": "1", "last_update_id": "90"})
    await client.xadd(rs.gap_stream_key(SYMBOL), {"expected_update_id": "91", "first_update_id": "95",
                                                  "last_update_id": "100"})
    consumer = asyncio.create_task(service.consume_gaps_once(block_ms=100))
    await asyncio.sleep(0.2)
    # the job reaches the gap (book invalid at 100); then the drift check ends, its snapshot older than the gap
    await client.hset(rs.ob_key(SYMBOL), mapping={"book_valid": "0", "last_update_id": "100"})
    if healed_by_running:
        await client.hset(rs.ob_key(SYMBOL), mapping={"book_valid": "1", "last_update_id": "120"})
    await client.delete(rs.reanchor_key(SYMBOL))
    assert await asyncio.wait_for(consumer, 10) == 1
    pending = (await client.xpending(rs.gap_stream_key(SYMBOL), settings.reanchor.consumer_group))["pending"]
    logged = await client.xlen(rs.reanchor_log_key(SYMBOL))
    await client.aclose()
    return fake.fetched, pending, logged


def test_gap_during_an_older_reanchor_gets_its_own(local_stack):
    fetched, pending, logged = asyncio.run(scenario(local_stack, healed_by_running=False))
    assert (fetched, pending, logged) == (1, 0, 1)  # own snapshot fetched, gap acknowledged, re-anchor logged


def test_gap_healed_by_the_running_reanchor_is_coalesced(local_stack):
    fetched, pending, logged = asyncio.run(scenario(local_stack, healed_by_running=True))
    assert (fetched, pending, logged) == (0, 0, 0)
