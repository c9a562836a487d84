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

import time
from dataclasses import dataclass
from pathlib import Path

import boto3

from btcpred.common.config import Settings, aws_client_kwargs
from btcpred.ingest.ingestor import aggregate
from btcpred.adapters.kinesis_writer import KinesisWriter
from btcpred.adapters.loaders.hftbacktest_ws import HftbacktestWsLoader
from rig.simulator.exchange import SimulatedExchange
from btcpred.udfs import envelope, sbe
from btcpred.udfs.events import DepthDiffEvent, DepthSnapshotEvent


@dataclass(frozen=True)
class Capture:
    snapshot: bytes  # the capture's REST snapshot, SBE 10002: anchors the job's book
    frames: list[bytes]  # every stream frame in exchange order
    last_update_id: int  # of the last depth diff: the job has caught up when ob: shows it


def load_capture(path: Path) -> Capture:
    events = list(HftbacktestWsLoader(path).events())
    snapshot = next(c.event for c in events if isinstance(c.event, DepthSnapshotEvent))
    exchange = SimulatedExchange(events)
    frames = [out[1] for c in events if (out := exchange.process(c)) is not None]
    last = max(c.event.last_update_id for c in events if isinstance(c.event, DepthDiffEvent))
    return Capture(sbe.encode(snapshot), frames, last)


class KinesisFeed:
    def __init__(self, settings: Settings, stream: str, symbol: str, linger_s: float = 0.01,
                 max_frames_per_record: int = 200) -> None:
        self.writer = KinesisWriter(boto3.client("kinesis", **aws_client_kwargs(settings.kinesis)), stream)
        self.symbol = symbol
        self.linger_s = linger_s
        self.max_frames = max_frames_per_record

    def _put(self, frames: list[bytes], source: envelope.Source = envelope.Source.WEBSOCKET) -> None:
        now_us = time.time_ns() // 1000
        self.writer.put(aggregate([(self.symbol, envelope.Envelope(source, now_us, f)) for f in frames], self.max_frames))

    def anchor(self, capture: Capture) -> None:
        self._put([capture.snapshot], envelope.Source.REST_SNAPSHOT)

    def send(self, frames: list[bytes], rate: float | None) -> float:
        """Put ``frames`` at ``rate`` frames/s (None: all at once); returns the seconds it took."""
        started = time.monotonic()
        if rate is None:
            for i in range(0, len(frames), self.max_frames):
                self._put(frames[i:i + self.max_frames])
            return time.monotonic() - started
        sent = 0
        while sent < len(frames):
            due = min(len(frames), int((time.monotonic() - started) * rate) + 1)
            if due > sent:
                self._put(frames[sent:due])
                sent = due
            time.sleep(self.linger_s)
        return time.monotonic() - started
