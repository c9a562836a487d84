"""Fetch a REST depth snapshot and put it into the market-data stream in band.

The snapshot travels as an SBE DepthSnapshotStreamEvent (10002) on the same
partition key as the diffs, so the Flink job sees it in stream order and
re-synchronises its book by the documented rules with no race. This runs
beside the hot path (its own task or process), never in its await chain.
"""
from __future__ import annotations

import time

import aiohttp

from ingest.loaders.base import parse_units
from udfs import envelope, sbe
from udfs.events import DepthSnapshotEvent


async def fetch_snapshot(session: aiohttp.ClientSession, rest_url: str, symbol: str, limit: int) -> DepthSnapshotEvent:
    async with session.get(f"{rest_url}/api/v3/depth", params={"symbol": symbol, "limit": str(limit)},
                           timeout=aiohttp.ClientTimeout(total=10)) as resp:
        resp.raise_for_status()
        body = await resp.json()
    levels = lambda rows: tuple((parse_units(p), parse_units(q)) for p, q in rows)  # noqa: E731
    # REST depth has no event time: 0 marks "no exchange time" so it never moves watermarks.
    return DepthSnapshotEvent(symbol, 0, body["lastUpdateId"], levels(body["bids"]), levels(body["asks"]))


def snapshot_envelope(snapshot: DepthSnapshotEvent) -> envelope.Envelope:
    return envelope.Envelope(envelope.Source.REST_SNAPSHOT, time.time_ns() // 1000, sbe.encode(snapshot))
