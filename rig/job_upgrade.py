"""Stop-with-savepoint -> resume (same or newer job version) on the live local stack, and proof it lost nothing.

The reference for "an uninterrupted run" is the hot path's own state machine replayed
over the same capture in one pass (``btcpred.batch.feature_builder.replay``; the replay e2e test
holds it equal to the live job). Every boundary the live job wrote to ``feathist:`` is
compared with it: features and the 1 s/5 s trade windows. Trades of a boundary's
1 s window that the live job lacks are lost events, extra ones duplicated events; an
entry written twice for the same boundary is a duplicate too.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from btcpred.adapters.loaders import load_capture
from btcpred.batch.feature_builder import replay
from btcpred.common.config import FlinkJobConfig
from btcpred.udfs import redis_schema as rs
from btcpred.udfs.features import FEATURE_NAMES, HISTORY_US, same_feature
from rig import flink_cluster
from rig.pipeline import Pipeline

EMIT_INTERVAL_US = FlinkJobConfig().emit_interval_ms * 1000  # the job's boundary grid (config's one owner)


class FeatureRefreshWatcher(threading.Thread):
    """Wall-clock times at which ``feat:<symbol>`` changed, to find the longest stretch without a refresh."""

    def __init__(self, client: redis.Redis, symbol: str, poll_s: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.client, self.key, self.poll_s = client, rs.feat_key(symbol), poll_s
        self.changes: list[float] = []
        self._halt = threading.Event()

    def run(self) -> None:
        last = None
        while not self._halt.is_set():
            try:
                ts = self.client.hget(self.key, "ts")
            except redis.RedisError:
                ts = last
            if ts is not None and ts != last:
                last = ts
                self.changes.append(time.time())
            time.sleep(self.poll_s)

    def stop(self) -> None:
        self._halt.set()
        if self.ident is not None:  # started (a pipeline that failed to start never started it)
            self.join(5)

    def longest_gap_s(self, since: float = 0.0) -> float:
        times = [t for t in self.changes if t >= since]
        return max((b - a for a, b in zip(times, times[1:])), default=float("nan"))


@dataclass
class Continuity:
    compared: int = 0  # boundaries compared with the reference
    features_mismatched: list[tuple[int, str]] = field(default_factory=list)
    events_lost: int = 0
    events_duplicated: int = 0
    duplicate_entries: int = 0
    boundaries_missing: list[int] = field(default_factory=list)  # boundaries inside the live run with no feathist entry


def reference_cuts(capture: Path, symbol: str) -> dict[int, object]:
    run = replay((c.event for c in load_capture(capture).events()), symbol, interval_us=EMIT_INTERVAL_US)
    return {snap.time_us: snap for snap, _ in run.cuts}


def compare_history(
    history: list[dict[str, str]], reference: dict[int, object], book_anchor_us: int, absent_ok: frozenset[str] = frozenset()
) -> Continuity:
    """The live job's feathist entries against the uninterrupted reference, boundary by boundary.

    Features are compared once both books are anchored and their look-back is past
    (``book_anchor_us + HISTORY_US``); trade windows from the first boundary on. ``absent_ok``: features
    a boundary may lack (the code that cut it predates them, or it restored state written before them
    and their look-back had not passed yet); present, they must equal the reference's.
    """
    out = Continuity()
    seen: dict[int, dict[str, str]] = {}
    for entry in history:
        ts = int(entry["ts"])
        if ts in seen:
            out.duplicate_entries += 1
        seen[ts] = entry
    if not seen:
        return out
    first, last = min(seen), max(seen)
    for ts in range(first, last + 1, EMIT_INTERVAL_US):
        ref = reference.get(ts)
        live = seen.get(ts)
        if ref is None:
            continue
        if live is None:
            out.boundaries_missing.append(ts)
            continue
        out.compared += 1
        if ts % 1_000_000 == 0:  # whole seconds: their 1 s windows tile the run, each trade counted once
            diff = int(live["tr_1s_count"]) - ref.windows["1s"].count
            out.events_lost += max(0, -diff)
            out.events_duplicated += max(0, diff)
        for window in ("1s", "5s"):
            if int(live[f"tr_{window}_count"]) != ref.windows[window].count:
                out.features_mismatched.append((ts, f"tr_{window}_count"))
        if ts >= book_anchor_us + HISTORY_US:
            for name in FEATURE_NAMES:
                if name in absent_ok and live.get(name) is None:
                    continue
                if not same_feature(live.get(name), ref.features.get(name)):
                    out.features_mismatched.append((ts, name))
    out.events_duplicated += out.duplicate_entries
    return out


@dataclass
class UpgradeStep:
    savepoint: str
    savepoint_bytes: int
    stop_s: float  # stop-with-savepoint request -> job ended with its savepoint
    restore_s: float  # resubmission -> first Redis write of the resumed job
    job_id: str


def stop_and_resume(pipeline: Pipeline, client: redis.Redis, job_file: Path | None = None, timeout_s: float = 180) -> UpgradeStep:
    """Stop the running job with a savepoint and start ``job_file`` (default: the same job) from it."""
    settings = pipeline.settings
    assert pipeline.flink_job_id, "the pipeline's job runs on the standalone cluster"
    started = time.monotonic()
    location = flink_cluster.stop_with_savepoint(settings, pipeline.flink_job_id)
    stopped = time.monotonic()
    size = flink_cluster.savepoint_bytes(settings, location)
    key = rs.ob_key(settings.exchange.symbol)
    before = client.hget(key, "written_at_us")
    pipeline.start_job(from_savepoint=location, job_file=job_file)
    deadline = time.monotonic() + timeout_s
    while client.hget(key, "written_at_us") == before:
        if time.monotonic() > deadline:
            raise RuntimeError(f"resumed job {pipeline.flink_job_id} wrote nothing within {timeout_s}s")
        pipeline.check_alive()
        time.sleep(0.02)
    return UpgradeStep(location, size, stopped - started, time.monotonic() - stopped, pipeline.flink_job_id)
