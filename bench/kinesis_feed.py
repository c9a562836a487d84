"""Feed the real spot capture straight into Kinesis at a set rate: the hot path's load, without the ingestor.

The frames are the simulator's (the capture's events encoded as SBE), packed into
records every ``linger_s`` the way the ingestor aggregates them, and stamped with
the wall time at which they are put, as the ingestor stamps receipt time. So the
freshness a sampler reads from ``ob:`` (``written_at_us - receipt_time_us``) is
Kinesis -> Flink -> Redis: what the Flink job adds, without the WebSocket hop.

A warm-up (the first ``warmup_events`` at a low rate) comes first: a fresh JVM is
still compiling for ~20 s, and the capture (41k events) is too short to let that
wash out of a measured step.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from pathlib import Path

import boto3

from btcpred.adapters.kinesis_writer import KinesisWriter
from btcpred.adapters.loaders.hftbacktest_ws import HftbacktestWsLoader
from btcpred.common.config import Settings, aws_client_kwargs
from btcpred.ingest.ingestor import aggregate
from btcpred.udfs import envelope, sbe
from btcpred.udfs.events import DepthDiffEvent, DepthSnapshotEvent
from rig.simulator.exchange import SimulatedExchange


@dataclass(frozen=True)
class Capture:
    snapshot: bytes  # the capture's REST snapshot, SBE 10002: anchors the job's book
    frames: list[bytes]  # every stream frame in exchange order
    last_update_id: int  # of the last depth diff: the job has caught up when ob: shows it


def relabel(capture: Capture, symbol: str) -> Capture:
    """The same real frames under another key: a scale-out test's extra symbol. It is a replay of
    the one capture, never presented as another market (the key's name says so: ``spread_keys``)."""

    def under(frame: bytes) -> bytes:
        return sbe.encode(replace(sbe.decode(frame), symbol=symbol))

    return Capture(under(capture.snapshot), [under(f) for f in capture.frames], capture.last_update_id)


def kinesis_shard(partition_key: str, shards: int) -> int:
    """The shard Kinesis puts a partition key on, for a stream whose hash key range is split evenly."""
    return int.from_bytes(hashlib.md5(partition_key.encode()).digest(), "big") * shards >> 128


def spread_keys(n: int, symbol: str, parallelism: int, shards: int) -> list[str]:
    """``symbol`` and ``n - 1`` replay keys (``<symbol>-R<i>``) chosen so the first ``min(n, parallelism)``
    land on different keyed subtasks and, where the stream has the shards, different shards. Flink's own
    key-group assignment is asked through PyFlink's gateway (a JVM for a second), not re-implemented."""
    from pyflink.java_gateway import get_gateway

    assignment = get_gateway().jvm.org.apache.flink.runtime.state.KeyGroupRangeAssignment

    def subtask(key: str) -> int:
        return assignment.assignKeyToParallelOperator(key, assignment.computeDefaultMaxParallelism(parallelism), parallelism)

    keys, i = [symbol], 0
    while len(keys) < n:
        i += 1
        candidate = f"{symbol}-R{i}"
        spread = len(keys) >= parallelism or (
            subtask(candidate) not in {subtask(k) for k in keys}
            and (len(keys) >= shards or kinesis_shard(candidate, shards) not in {kinesis_shard(k, shards) for k in keys})
        )
        if spread:
            keys.append(candidate)
    return keys


def load_capture(path: Path) -> Capture:
    events = list(HftbacktestWsLoader(path).events())
    snapshot = next(c.event for c in events if isinstance(c.event, DepthSnapshotEvent))
    exchange = SimulatedExchange(events)
    frames = [out[1] for c in events if (out := exchange.process(c)) is not None]
    last = max(c.event.last_update_id for c in events if isinstance(c.event, DepthDiffEvent))
    return Capture(sbe.encode(snapshot), frames, last)


class KinesisFeed:
    def __init__(
        self, settings: Settings, stream: str, symbol: str, linger_s: float = 0.01, max_frames_per_record: int = 200
    ) -> None:
        self.writer = KinesisWriter(boto3.client("kinesis", **aws_client_kwargs(settings.kinesis)), stream)
        self.symbol = symbol
        self.linger_s = linger_s
        self.max_frames = max_frames_per_record

    def _put(self, frames: list[tuple[str, bytes]], source: envelope.Source = envelope.Source.WEBSOCKET) -> None:
        """``frames``: (key, SBE frame) pairs, stamped with one receipt time as the ingestor stamps a linger window."""
        now_us = time.time_ns() // 1000
        self.writer.put(aggregate([(key, envelope.Envelope(source, now_us, f)) for key, f in frames], self.max_frames))

    def anchor(self, capture: Capture, symbol: str | None = None) -> None:
        self._put([(symbol or self.symbol, capture.snapshot)], envelope.Source.REST_SNAPSHOT)

    def send(self, frames: list[tuple[str, bytes]], rate: float | None) -> float:
        """Put ``frames`` ((key, frame) pairs) at ``rate`` frames/s (None: all at once); returns the seconds it took."""
        started = time.monotonic()
        if rate is None:
            for i in range(0, len(frames), self.max_frames):
                self._put(frames[i : i + self.max_frames])
            return time.monotonic() - started
        sent = 0
        while sent < len(frames):
            due = min(len(frames), int((time.monotonic() - started) * rate) + 1)
            if due > sent:
                self._put(frames[sent:due])
                sent = due
            time.sleep(self.linger_s)
        return time.monotonic() - started
