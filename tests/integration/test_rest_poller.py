"""The REST poller against the exchange simulator (real capture replaying) and the S3 emulator."""

import asyncio

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from btcpred.adapters.binance_rest import BinanceRest
from btcpred.adapters.lake import Lake
from btcpred.reliability.rest_poller import RestPoller
from rig.simulator.server import ReplayServer

pytestmark = pytest.mark.integration


def test_polls_archive_depth_and_contiguous_agg_trades_and_resume_after_restart(isolated_settings, spot_events):
    lake = Lake(isolated_settings.s3)
    lake.ensure_bucket()

    async def scenario():
        sim = ReplayServer(spot_events, speed=20.0, start_on_first_client=False)

        async def new_trades(count: int = 20, timeout_s: float = 30) -> None:
            """Until the replay has made ``count`` more aggregate trades than at the call."""
            target = len(sim.exchange.agg_trades) + count
            deadline = asyncio.get_running_loop().time() + timeout_s
            while len(sim.exchange.agg_trades) < target:
                assert asyncio.get_running_loop().time() < deadline, f"replay stuck at {len(sim.exchange.agg_trades)} trades"
                await asyncio.sleep(0.05)

        async with TestServer(sim.app()) as server, aiohttp.ClientSession() as session:
            rest = BinanceRest(str(server.make_url("")), session)
            await new_trades()
            first = RestPoller(isolated_settings, rest, lake)
            one = await first.poll_once()
            await new_trades()
            two = await first.poll_once()
            restarted = RestPoller(isolated_settings, rest, lake)  # a new process: state from S3 only
            await new_trades()
            three = await restarted.poll_once()
            return one, two, three, restarted.resume_point(), first.last_agg_id, three["agg_trades"]

    one, two, three, last_archived, last_before_restart, after_restart = asyncio.run(scenario())
    assert one["depth"] and two["depth"] and three["depth"]
    assert after_restart and after_restart[0].rsplit("/", 1)[1].startswith(f"{last_before_restart + 1}-")
    assert last_archived > last_before_restart
    ids = []
    for key in lake.keys("bronze/rest/BTCUSDT/agg_trades/"):
        assert "/year=2026/" in key or "/year=2024/" in key
        ids.extend(lake.get_table(key).column("agg_trade_id").to_pylist())
    ids.sort()
    assert len(ids) > 50 and ids == list(range(ids[0], ids[0] + len(ids)))  # no gap, no overlap, across the restart
    depth = lake.get_table(lake.keys("bronze/rest/BTCUSDT/depth/")[0])
    assert set(depth.column("side").to_pylist()) == {"bid", "ask"} and isinstance(depth.column("price")[0].as_py(), str)
