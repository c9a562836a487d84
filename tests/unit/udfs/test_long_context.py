"""The 30 s and 5 min context against hand-computed values, and against the exact windows on real data."""

import math

import pytest

from btcpred.udfs.events import DepthDiffEvent, DepthSnapshotEvent, TradesEvent
from btcpred.udfs.long_context import BUCKET_US, CONTEXT_FEATURES, KEEP_BUCKETS, LongContext, bucket_of
from btcpred.udfs.symbol_state import SymbolState

S = 1_000_000


def test_buckets_hold_their_end_and_not_their_start():
    assert bucket_of(1) == bucket_of(BUCKET_US) == 1
    assert bucket_of(BUCKET_US + 1) == 2
    assert bucket_of(0) == 0


def test_thirty_second_window_by_hand():
    c = LongContext()
    c.add_book(0, 100.0, 0.0)  # the context starts here
    c.add_trade(5 * S, 1.0, +1)  # at the window's open end (T - 30 s): excluded
    c.add_book(5 * S, 101.0, 0.0004)  # ditto for its squared return; its mid is the one 30 s back
    c.add_trade(6 * S, 2.0, +1)
    c.add_trade(20 * S, 3.0, -1)
    c.add_book(20 * S, 102.0, 0.0009)
    c.add_trade(35 * S, 4.0, +1)  # exactly at T: included
    c.add_trade(35 * S + 1, 100.0, -1)  # after T: excluded
    f = c.features(35 * S, 103.0)
    assert f["ret_30s"] == pytest.approx(math.log(103 / 101))
    assert f["realized_vol_30s"] == pytest.approx(math.sqrt(0.0009))
    assert f["signed_flow_30s"] == pytest.approx((2 - 3 + 4) / (2 + 3 + 4))
    assert f["count_imbalance_30s"] == pytest.approx((2 - 1) / 3)
    assert "ret_300s" not in f  # 5 minutes back is before anything was seen: absent, not a partial sum


def test_a_window_before_the_first_event_is_absent_and_a_quiet_one_is_zero_flow():
    c = LongContext()
    c.add_book(10 * S, 100.0, 0.0)
    assert c.features(39 * S, 100.0) == {}  # (9 s, 39 s] starts before 10 s
    f = c.features(40 * S, 100.5)
    assert f["ret_30s"] == pytest.approx(math.log(100.5 / 100))
    assert (f["realized_vol_30s"], f["signed_flow_30s"], f["count_imbalance_30s"]) == (0.0, 0.0, 0.0)


def test_a_boundary_off_the_grid_reads_the_buckets_wholly_before_it():
    c = LongContext()
    c.add_book(0, 100.0, 0.0)
    c.add_trade(31 * S, 1.0, +1)
    c.add_trade(31 * S + BUCKET_US // 2, 5.0, -1)  # in the bucket ending at 31.5 s: after 31.2 s's grid point 31.0 s
    on_grid = c.features(31 * S, 100.0)
    assert c.features(31 * S + 200_000, 100.0) == on_grid
    assert on_grid["signed_flow_30s"] == 1.0


def test_pruning_keeps_the_mid_in_force_and_the_windows_unchanged():
    c = LongContext()
    c.add_book(0, 100.0, 0.0)
    c.add_book(S, 101.0, 1e-4)
    for t in range(2, 400):
        c.add_trade(t * S, 1.0, +1 if t % 3 else -1)
    t_end = 400 * S
    c.add_book(t_end, 104.0, 4e-4)
    before = c.features(t_end, 104.0)
    c.prune(t_end)
    assert len(c) == KEEP_BUCKETS
    assert c.features(t_end, 104.0) == before
    assert before["ret_300s"] == pytest.approx(math.log(104 / 101))  # the close of 1 s carried past the pruned buckets


def test_a_stream_quiet_for_longer_than_the_ring_keeps_its_last_mid():
    c = LongContext()
    c.add_book(0, 100.0, 0.0)
    c.prune(1000 * S)
    assert len(c) == 1
    f = c.features(1000 * S, 101.0)
    assert f["ret_300s"] == pytest.approx(math.log(101 / 100)) and f["signed_flow_300s"] == 0.0


def test_a_far_future_time_restarts_the_context_instead_of_filling_a_dense_gap():
    c = LongContext()
    c.add_book(0, 100.0, 0.0)
    c.add_trade(10**6 * S, 1.0, +1)  # 11.6 days on
    assert len(c) == 1 and c.restarts == 1
    assert c.features(10**6 * S, 100.0) == {}  # nothing before the restart is trusted


def test_a_capped_context_reads_as_incomplete_where_it_lost_buckets():
    c = LongContext()
    c.add_book(0, 100.0, 0.0)
    c.add_book(100 * S, 101.0, 0.0)
    assert "ret_30s" in c.features(100 * S, 101.0)
    c.drop_oldest(len(c) - 10)  # 5 s left
    assert c.features(100 * S, 101.0) == {}


class RecordingContext(LongContext):
    """Logs what the state machine feeds the context, to rebuild every window exactly."""

    __slots__ = ("log",)

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple] = []

    def add_trade(self, time_us, qty, sign):
        self.log.append(("trade", time_us, qty, sign))
        super().add_trade(time_us, qty, sign)

    def add_book(self, time_us, mid, log_return_sq):
        self.log.append(("book", time_us, mid, log_return_sq))
        super().add_book(time_us, mid, log_return_sq)


def exact_window(log: list[tuple], time_us: int, length_us: int, mid_now: float) -> dict[str, float] | None:
    start = time_us - length_us
    if not log or log[0][1] > start:
        return None
    trades = [e for e in log if e[0] == "trade" and start < e[1] <= time_us]
    books = [e for e in log if e[0] == "book" and start < e[1] <= time_us]
    then = [e[2] for e in log if e[0] == "book" and e[1] <= start]
    if not then:
        return None
    vol = sum(e[2] for e in trades)
    buys = sum(1 for e in trades if e[3] > 0)
    return {
        "ret": math.log(mid_now / then[-1]),
        "realized_vol": math.sqrt(sum(e[3] for e in books)),
        "signed_flow": sum(e[3] * e[2] for e in trades) / vol if vol else 0.0,
        "count_imbalance": (2 * buys - len(trades)) / len(trades) if trades else 0.0,
    }


def test_bucketed_windows_equal_the_exact_windows_on_the_real_capture(spot_slice):
    """The spot capture through the state machine, cut every 500 ms as the job cuts: every context
    feature equals the window computed from every trade and book update it was fed, and the ring
    stays bounded. The committed first minute holds 59 complete 30 s windows."""
    assert compared_with_exact_windows(spot_slice) == {"30s": 59, "300s": 0}


@pytest.mark.shared_data
def test_the_five_minute_windows_too_on_the_whole_capture(spot_events):
    compared = compared_with_exact_windows(spot_events)
    assert compared["30s"] > 600 and compared["300s"] > 50, compared


def compared_with_exact_windows(events) -> dict[str, int]:
    """Drive ``events`` through the state machine as the job does, checking every context feature at
    every cut; returns how many complete windows of each length were compared."""
    state = SymbolState("BTCUSDT")
    state.context = RecordingContext()
    clock = next_cut = 0
    compared = {"30s": 0, "300s": 0}
    for captured in events:
        event = captured.event
        if not isinstance(event, (DepthDiffEvent, DepthSnapshotEvent, TradesEvent)):
            continue
        t = event.transact_time_us if isinstance(event, TradesEvent) else event.event_time_us
        next_cut = next_cut or (t // BUCKET_US + 1) * BUCKET_US
        clock = max(clock, t)
        while next_cut + 200_000 < clock:
            snap = state.cut(next_cut)
            if snap is not None:
                for name in ("30s", "300s"):
                    exact = exact_window(
                        state.context.log, next_cut, {"30s": 30 * S, "300s": 300 * S}[name], state.history.at(next_cut).mid
                    )
                    got = {k: snap.features.get(f"{k}_{name}") for k in ("ret", "realized_vol", "signed_flow", "count_imbalance")}
                    if exact is None:
                        assert set(got.values()) == {None}
                    else:
                        assert got == pytest.approx(exact, rel=1e-9, abs=1e-12)
                        compared[name] += 1
            next_cut += BUCKET_US
        state.on_event(event)
        assert len(state.context) <= KEEP_BUCKETS + 4  # events run a few buckets ahead of the last cut
    assert set(CONTEXT_FEATURES) == {
        f"{k}_{n}" for k in ("ret", "realized_vol", "signed_flow", "count_imbalance") for n in ("30s", "300s")
    }
    return compared
