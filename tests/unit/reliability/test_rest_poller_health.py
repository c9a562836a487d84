"""The REST poller's /health follows its polls: red from a failed poll until that data type succeeds."""

import asyncio

from btcpred.common.config import load_settings
from btcpred.common.service import failing_health
from btcpred.reliability.rest_poller import RestPoller


class FakeLake:
    def __init__(self):
        self.put = []

    def keys(self, prefix):
        return []

    def put_table(self, key, table):
        self.put.append(key)


class FlakyRest:
    """A 4xx on the first depth request, then the exchange's answers; no aggregate trades yet."""

    def __init__(self):
        self.depth_calls = 0

    async def depth_raw(self, symbol, limit):
        self.depth_calls += 1
        if self.depth_calls == 1:
            raise ValueError("HTTP 400: {'code': -1121, 'msg': 'Invalid symbol.'}")
        return {"lastUpdateId": 7, "bids": [["61837.63", "1.0"]], "asks": [["61837.64", "2.0"]]}

    async def agg_trades(self, symbol, from_id, limit):
        return []


def test_a_failed_poll_turns_health_red_until_the_next_success():
    lake = FakeLake()
    poller = RestPoller(load_settings("local", environ={}), FlakyRest(), lake)
    health = failing_health(poller.failing)
    first = asyncio.run(poller.poll_once())
    assert first["depth"] is None and first["agg_trades"] == []  # one data type failed, the other went on
    ok, why = health()
    assert not ok and "depth: ValueError: HTTP 400" in why
    second = asyncio.run(poller.poll_once())
    assert second["depth"] == lake.put[0] and health() == (True, "ok")
