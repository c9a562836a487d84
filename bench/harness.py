"""Shared pieces of the benchmarks: machine/commit info, the stack, a freshness sampler.

Freshness of the hot path is measured inside the data the job writes: every ``ob:``
hash carries ``receipt_time_us`` (ingestor receipt of the diff that produced it, a
loopback hop after the simulator sent it) and ``written_at_us`` (wall clock just
before the Redis transaction). The sampler polls ``ob:`` and records one sample per
new ``last_update_id``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis

from btcpred.common.config import load_settings
from btcpred.udfs import redis_schema as rs
from rig import stack

REPO = Path(__file__).resolve().parents[1]


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        ),
    }


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[idx]


class StackGuard:
    """Start the local stack if it is not up; stop it afterwards only if we started it."""

    def __enter__(self):
        with open(os.devnull, "w") as null:
            saved, sys.stdout = sys.stdout, null
            try:
                self.was_up = stack.main(["status"]) == 0
            finally:
                sys.stdout = saved
        if not self.was_up and stack.main(["start"]) != 0:
            raise SystemExit("local stack failed to start")
        return self

    def __exit__(self, *exc):
        if not self.was_up:
            stack.main(["stop"])


class FreshnessSampler(threading.Thread):
    def __init__(self, symbol: str = "BTCUSDT", poll_s: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(load_settings(environ={}).redis.url)
        self.key = rs.ob_key(symbol)
        self.poll_s = poll_s
        self.samples_ms: list[float] = []
        self.sample_times: list[float] = []
        self._halt = threading.Event()
        self._last_id = None

    def run(self) -> None:
        while not self._halt.is_set():
            row = self.client.hmget(self.key, "last_update_id", "receipt_time_us", "written_at_us")
            if row[0] is not None and row[0] != self._last_id and row[1] and row[2]:
                self._last_id = row[0]
                self.samples_ms.append((int(row[2]) - int(row[1])) / 1000)
                self.sample_times.append(time.time())
            time.sleep(self.poll_s)

    def reset(self) -> None:
        """Forget the samples so far (a warm-up's); the last update id seen is kept."""
        self.samples_ms.clear()
        self.sample_times.clear()

    @property
    def last_update_id(self) -> int:
        return int(self._last_id or 0)

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(5)

    def summary(self) -> dict:
        return freshness_summary(self.samples_ms)


def freshness_summary(s: list[float]) -> dict:
    return {
        "p50_ms": round(percentile(s, 50), 2),
        "p95_ms": round(percentile(s, 95), 2),
        "p99_ms": round(percentile(s, 99), 2),
        "max_ms": round(max(s), 2) if s else None,
        "mean_ms": round(statistics.fmean(s), 2) if s else None,
        "samples": len(s),
    }


def emit(result: dict) -> None:
    result.update(machine=machine(), commit=commit())
    print(json.dumps(result))
