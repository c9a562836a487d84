"""The REST client against the exchange simulator's REST API and its 429/418/slow fault switches."""

import asyncio
import time

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from btcpred.adapters.binance_rest import BinanceRest, RestBanned, RetryableError, WeightBudget, depth_weight
from rig.simulator.server import ReplayServer


@pytest.fixture(scope="module")
def events(spot_slice):
    return spot_slice[:2000]


async def with_server(events, scenario):
    sim = ReplayServer(events, speed=1.0)
    async with TestServer(sim.app()) as server, aiohttp.ClientSession() as session:
        return await scenario(sim, str(server.make_url("")), session)


def test_throttled_requests_wait_out_retry_after_then_succeed(events):
    async def scenario(sim, url, session):
        sim.faults.update(rest_throttle_next=2, rest_retry_after_s=1)
        rest = BinanceRest(url, session)
        started = time.monotonic()
        snap = await rest.depth("BTCUSDT", 100)
        return snap, time.monotonic() - started, sim.faults.rest_throttle_next, rest.budget.exchange_used

    snap, elapsed, left, used = asyncio.run(with_server(events, scenario))
    assert snap.book_update_id > 0 and len(snap.bids) == 100
    assert left == 0 and elapsed >= 2.0  # two 429s, each honoured for its Retry-After of 1 s
    assert used == depth_weight(100)  # the exchange's weight header is read back


def test_a_ban_stops_all_requests_until_it_ends(events):
    async def scenario(sim, url, session):
        sim.faults.update(rest_ban_next=1, rest_retry_after_s=30)
        rest = BinanceRest(url, session)
        with pytest.raises(RestBanned) as first:
            await rest.depth("BTCUSDT", 100)
        served_before = len(sim.rest_weights)
        with pytest.raises(RestBanned):
            await rest.agg_trades("BTCUSDT", None)  # refused locally: nothing is sent while banned
        return first.value.until - time.time(), served_before, len(sim.rest_weights)

    remaining, before, after = asyncio.run(with_server(events, scenario))
    assert 25 < remaining <= 30 and before == after == 0


def test_slow_answers_time_out_and_give_up_at_the_deadline(events):
    async def scenario(sim, url, session):
        sim.faults.update(rest_delay_ms=1500)
        rest = BinanceRest(url, session, timeout_s=0.3, deadline_s=1.0, max_attempts=10)
        started = time.monotonic()
        with pytest.raises(RetryableError, match="TimeoutError"):
            await rest.depth("BTCUSDT", 100)
        return time.monotonic() - started

    assert 0.6 < asyncio.run(with_server(events, scenario)) < 5.0


def test_weight_budget_defers_requests_that_would_exceed_it():
    budget = WeightBudget(per_minute=100)
    budget.record(60, now=1000.0, header=None)
    assert budget.wait_s(40, now=1010.0) == 0.0
    budget.record(40, now=1010.0, header="100")
    assert budget.wait_s(5, now=1020.0) == pytest.approx(40.0)  # until the first 60 leaves the window
    assert budget.wait_s(5, now=1061.0) == 0.0


# ---- bounded exchange inputs: a Retry-After and a depth answer are untrusted values (issue 28)


def test_a_retry_after_that_is_not_a_finite_non_negative_number_is_ignored():
    from btcpred.adapters.binance_rest import _seconds

    assert [_seconds(v) for v in ("inf", "Infinity", "nan", "-5", "1e400", "soon", None)] == [None] * 7
    assert _seconds("2.5") == 2.5 and _seconds("0") == 0.0


def test_a_ban_with_an_infinite_retry_after_lasts_the_default_not_for_ever(events):
    async def scenario(sim, url, session):
        sim.faults.update(rest_ban_next=1, rest_retry_after_s=float("inf"))
        rest = BinanceRest(url, session)
        with pytest.raises(RestBanned):
            await rest.depth("BTCUSDT", 100)
        return rest.banned_until - time.time()

    assert 100 < asyncio.run(with_server(events, scenario)) <= 120


def test_a_huge_retry_after_on_429_waits_no_longer_than_the_requests_deadline(events):
    async def scenario(sim, url, session):
        sim.faults.update(rest_throttle_next=1, rest_retry_after_s=86_400)
        rest = BinanceRest(url, session, deadline_s=1.5)
        started = time.monotonic()
        snap = await rest.depth("BTCUSDT", 100)
        return snap, time.monotonic() - started

    snap, elapsed = asyncio.run(with_server(events, scenario))
    assert snap.book_update_id > 0 and 1.4 <= elapsed < 5


@pytest.mark.parametrize(
    "body,why",
    [
        (
            {"lastUpdateId": 5, "bids": [["60001.0", "1"]], "asks": [["60000.0", "1"]]},
            "crossed snapshot: best bid 6000100000000 >= best ask 6000000000000",
        ),
        ({"lastUpdateId": 5, "bids": [["-1.0", "1"]], "asks": []}, "bid price -100000000 e8 not in (0, int64]"),
        ({"lastUpdateId": 5, "bids": [["1.0", "-2"]], "asks": []}, "bid quantity -200000000 e8 at 100000000"),
        ({"lastUpdateId": 5, "bids": [["99999999999999.0", "1"]], "asks": []}, "not in (0, int64]"),
        ({"lastUpdateId": "5", "bids": [], "asks": []}, "lastUpdateId '5' is not an integer"),
        ({"lastUpdateId": 5, "bids": [["1.0", "1", "x"]], "asks": []}, "does not parse: ValueError"),
        ({"lastUpdateId": 5, "bids": [["1.0", "1"]]}, "does not parse: KeyError"),
    ],
)
def test_a_depth_answer_that_must_not_replace_a_book_is_refused(body, why):
    from btcpred.adapters.binance_rest import InvalidSnapshot, depth_snapshot

    with pytest.raises(InvalidSnapshot, match="refused|does not parse") as raised:
        depth_snapshot("BTCUSDT", body)
    assert why in str(raised.value)
