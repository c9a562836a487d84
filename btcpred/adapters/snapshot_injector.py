"""A REST depth snapshot as an in-band record of the market-data stream.

The snapshot travels as an SBE DepthSnapshotStreamEvent (10002) on the same
partition key as the diffs, so the Flink job sees it in stream order and
re-synchronises its book by the documented rules with no race. This runs
beside the hot path (its own task or process), never in its await chain.
"""

from __future__ import annotations

import time

from btcpred.udfs import envelope, sbe
from btcpred.udfs.events import DepthSnapshotEvent


def snapshot_envelope(snapshot: DepthSnapshotEvent) -> envelope.Envelope:
    return envelope.Envelope(envelope.Source.REST_SNAPSHOT, time.time_ns() // 1000, sbe.encode(snapshot))
