"""Where the replay of an archive hour starts in the hour before it (batch.archive.warm_up)."""

import pytest

from btcpred.batch.archive import RING_DIFFS, WARM_UP_MARGIN_US, warm_up
from btcpred.udfs.events import DepthDiffEvent, DepthSnapshotEvent, TradesEvent

pytestmark = pytest.mark.shared_data  # whole captures, hours or a day of ../shared/data: the full suite's


def test_warm_up_starts_a_ring_of_diffs_before_the_last_snapshot_early_enough(spot_events):
    events = [c.event for c in spot_events]
    snapshot = next(e for e in events if isinstance(e, DepthSnapshotEvent))
    events = [e for e in events if e is not snapshot]
    # the drift check's snapshot 30 s into the 346 s capture: more than the 5 min context's margin before its end
    start_us = min(e.event_time_us for e in events if isinstance(e, DepthDiffEvent))
    at = next(
        i for i, e in enumerate(events) if i > 100 and isinstance(e, DepthDiffEvent) and e.event_time_us >= start_us + 30_000_000
    )
    events = events[:100] + [snapshot] + events[100:at] + [snapshot] + events[at:]  # anchored, then a drift check
    second = at + 1
    end_us = max(e.event_time_us for e in events if isinstance(e, (DepthDiffEvent, TradesEvent)))
    tail = warm_up(events, end_us)
    # far enough before the hour's end: the last snapshot, with the ring of diffs received before it
    assert tail[0] is not snapshot and sum(isinstance(e, DepthDiffEvent) for e in tail[: tail.index(snapshot)]) == RING_DIFFS
    assert len(events) - len(tail) < second
    # a snapshot within the features' look-back of the end is not enough: the one before it is used
    second_time = max(e.event_time_us for e in events[:second] if isinstance(e, (DepthDiffEvent, TradesEvent)))
    assert warm_up(events, second_time + WARM_UP_MARGIN_US // 2) == events  # 100 events before the first: all of it
    assert warm_up(events, None) == events  # an hour with no event: everything
