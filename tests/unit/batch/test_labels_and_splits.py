import math

import numpy as np
import pytest

from btcpred.batch.feature_builder import MidTimeline, build_rows, label_for, replay
from btcpred.batch.recordings import depth20_events
from btcpred.batch.splits import hour_boundaries, purged_split
from tests.conftest import BINANCE_US_BOOK


def test_label_is_the_mid_in_force_exactly_ten_seconds_later():
    # book updates at 0 s (100), 9.999 s (101), 10.000 s (102), 10.000001 s (999)
    timeline = MidTimeline([0, 9_999_000, 10_000_000, 10_000_001], [100.0, 101.0, 102.0, 999.0])
    label_mid, ret, age_us = label_for(timeline, 0, 100.0)
    assert label_mid == 102.0  # the update stamped exactly t + 10 s counts, the one a microsecond later does not
    assert ret == pytest.approx(math.log(1.02), abs=1e-15)
    assert age_us == 0.0
    label_mid, _, age_us = label_for(MidTimeline([0, 7_000_000], [100.0, 101.0]), 0, 100.0)
    assert (label_mid, age_us) == (101.0, 3_000_000.0)  # older book: the age exposes it


@pytest.mark.shared_data
def test_label_equals_the_mid_the_features_report_five_steps_later():
    """On real data: the label of row i is the mid of the row stamped 10 s later, never an earlier one."""
    events = (e for e, _ in zip(depth20_events(BINANCE_US_BOOK, "BTCUSDT"), range(2000)))
    rows = list(build_rows(replay(events, "BTCUSDT")))
    by_ts = {r.ts_ms: r for r in rows}
    checked = 0
    for row in rows:
        later = by_ts.get(row.ts_ms + 10_000)
        if later is not None and row.label_mid is not None:
            assert row.label_mid == later.mid
            assert row.label_return == math.log(later.mid / row.mid)
            checked += 1
    assert checked > 500
    assert any(r.label_return != 0 for r in rows)


def test_purged_split_keeps_labels_out_of_the_next_part():
    ts = np.arange(0, 60_000, 2_000)  # a row every 2 s for a minute
    split = purged_split(ts, val_start_ms=20_000, test_start_ms=40_000, purge_ms=10_000, embargo_ms=5_000)
    # train: label window (t, t+10 s] must end before 20 s -> t < 10 s
    assert list(ts[split.train]) == [0, 2_000, 4_000, 6_000, 8_000]
    # validation: embargo the first 5 s, purge the last 10 s before 40 s
    assert list(ts[split.val]) == [26_000, 28_000]
    assert list(ts[split.test]) == [46_000, 48_000, 50_000, 52_000, 54_000, 56_000, 58_000]
    assert (ts[split.train] + 10_000 < 20_000).all() and (ts[split.val] + 10_000 < 40_000).all()
    with pytest.raises(ValueError):
        purged_split(ts, 40_000, 20_000)


def test_hour_boundaries_pick_whole_hours_with_enough_rows():
    hour = 3_600_000
    ts = np.arange(10 * 60_000, 4 * hour + 50 * 60_000, 2_000)  # 00:10 .. 04:50
    val_start, test_start = hour_boundaries(ts)
    # 280 minutes of rows: 04:00-04:50 holds 50 < 56 (20 %), so test starts at 03:00; validation is 02:00-03:00
    assert (val_start, test_start) == (2 * hour, 3 * hour)
    with pytest.raises(ValueError):
        hour_boundaries(np.arange(0, 30 * 60_000, 2_000))  # half an hour: no whole-hour parts
