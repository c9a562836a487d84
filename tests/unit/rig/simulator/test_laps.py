"""Laps of the real capture for the soak: shifted in time and ids, same market, a gap between laps."""

import asyncio

from btcpred.batch.feature_builder import replay
from btcpred.udfs.events import DepthDiffEvent, DepthSnapshotEvent
from rig.simulator.laps import ID_MARGIN, lap_step, shifted
from rig.simulator.server import ReplayServer


def test_a_later_lap_is_the_same_market_later_and_begins_with_a_gap(spot_slice):
    events = spot_slice[:6000]
    step = lap_step(events)
    lap1 = shifted(events, 1, step)
    diffs0 = [c.event for c in events if isinstance(c.event, DepthDiffEvent)]
    diffs1 = [c.event for c in lap1 if isinstance(c.event, DepthDiffEvent)]
    # the first diff of lap 1 does not continue the last of lap 0: a sequence gap the job must see
    assert diffs1[0].first_update_id == diffs0[0].first_update_id + step.update_id
    assert diffs1[0].first_update_id >= diffs0[-1].last_update_id + 1 + ID_MARGIN
    assert lap1[0].receipt_time_us > max(c.receipt_time_us for c in events)
    snap0 = next(c.event for c in events if isinstance(c.event, DepthSnapshotEvent))
    snap1 = next(c.event for c in lap1 if isinstance(c.event, DepthSnapshotEvent))
    assert (snap1.bids, snap1.asks) == (snap0.bids, snap0.asks)  # prices and sizes untouched
    # and the features of lap 1 are lap 0's, boundary for boundary, step.time_us later
    cuts0 = {s.time_us: s.features for s, _ in replay((c.event for c in events), "BTCUSDT").cuts}
    cuts1 = {s.time_us - step.time_us: s.features for s, _ in replay((c.event for c in lap1), "BTCUSDT").cuts}
    assert set(cuts0) == set(cuts1) and len(cuts0) > 20
    for ts, features in cuts0.items():
        moved = {k: v for k, v in cuts1[ts].items() if k != "book_update_id"}
        assert moved == {k: v for k, v in features.items() if k != "book_update_id"}, ts


def test_the_server_plays_every_lap_and_serves_each_lap_s_book(spot_slice):
    events = spot_slice[:3000]

    async def run():
        sim = ReplayServer(events, speed=0, start_on_first_client=False, laps=3)
        await sim.run_replay()
        return sim

    sim = asyncio.run(run())
    step = lap_step(events)
    last_u = max(c.event.last_update_id for c in events if isinstance(c.event, DepthDiffEvent))
    assert sim.finished and sim.lap == 2
    assert sim.exchange.book.last_update_id == last_u + 2 * step.update_id  # the REST book is the last lap's
