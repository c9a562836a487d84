"""The simulated exchange on the real capture: frames, REST answers, remembered books."""

from btcpred.adapters.loaders.base import parse_units
from btcpred.udfs import sbe
from btcpred.udfs.events import DepthDiffEvent, TradesEvent
from rig.simulator.exchange import SimulatedExchange
from rig.simulator.faults import FaultPlan, corrupt


def test_frames_decode_back_to_the_captured_events(spot_slice):
    exchange = SimulatedExchange(spot_slice)
    for captured in spot_slice[:500]:
        out = exchange.process(captured)
        if out is None:
            continue
        stream, frame = out
        assert sbe.decode(frame) == captured.event
        assert stream in ("btcusdt@trade", "btcusdt@bestBidAsk", "btcusdt@depth")


def test_rest_depth_follows_the_stream(spot_slice):
    exchange = SimulatedExchange(spot_slice)
    start_id = exchange.depth_json(5)["lastUpdateId"]
    last_diff = None
    for captured in spot_slice[:2000]:
        exchange.process(captured)
        if isinstance(captured.event, DepthDiffEvent) and captured.event.last_update_id > start_id:
            last_diff = captured.event
    depth = exchange.depth_json(5)
    assert depth["lastUpdateId"] == last_diff.last_update_id
    bids = [(parse_units(p), parse_units(q)) for p, q in depth["bids"]]
    assert bids == exchange.book.top_bids(5) and bids == exchange.top_at(depth["lastUpdateId"])[0][:5]


def test_agg_trades_merge_same_price_side_and_millisecond(spot_slice):
    exchange = SimulatedExchange(spot_slice)
    trades = []
    for captured in spot_slice[:3000]:
        exchange.process(captured)
        if isinstance(captured.event, TradesEvent):
            trades.extend((captured.event.transact_time_us // 1000, t) for t in captured.event.trades)
    aggs = exchange.agg_trades_json(None, None, None, 1000)
    assert sum(a["l"] - a["f"] + 1 for a in aggs) == len(trades)  # every trade id covered once
    total_qty = sum(t.qty_e8 for _, t in trades)
    assert sum(parse_units(a["q"]) for a in aggs) == total_qty
    assert [a["a"] for a in aggs] == list(range(1, len(aggs) + 1))


def test_fault_plan_rejects_unknown_switch_and_corrupt_breaks_decoding():
    plan = FaultPlan()
    plan.update(drop_diffs=3)
    assert plan.drop_diffs == 3
    try:
        plan.update(explode=1)
    except KeyError as exc:
        assert "explode" in str(exc)
    else:
        raise AssertionError("unknown fault accepted")
    frame = sbe.encode(TradesEvent("BTCUSDT", 1, 1, ()))
    assert isinstance(sbe.decode(corrupt(frame)), sbe.DecodeError)


def test_replay_keys_carry_the_same_frames_under_their_own_symbol_and_book(spot_slice):
    from rig.simulator.server import exchanges_of, with_replay_keys

    events = with_replay_keys(spot_slice[:3000], 2)
    assert len(events) == 3 * 3000 and [c.event.symbol for c in events[:3]] == ["BTCUSDT", "BTCUSDT-R1", "BTCUSDT-R2"]
    exchanges = exchanges_of(events)
    assert list(exchanges) == ["BTCUSDT", "BTCUSDT-R1", "BTCUSDT-R2"]
    streams = set()
    for captured in events:
        out = exchanges[captured.event.symbol].process(captured)
        if out is not None:
            streams.add(out[0])
            assert sbe.decode(out[1]).symbol == captured.event.symbol
    assert {"btcusdt-r2@depth", "btcusdt-r1@trade", "btcusdt@bestBidAsk"} <= streams
    original, copy = exchanges["BTCUSDT"].depth_json(20), exchanges["BTCUSDT-R2"].depth_json(20)
    assert copy == original and copy["lastUpdateId"] > 0  # each key's book followed its own (identical) diffs
