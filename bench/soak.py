"""Soak: the whole pipeline on the real capture, lap after lap, for two hours or more.

    python -m bench.soak [--minutes 125] [--speed 10] [--sample-every-s 60] [--warm-up-s 300]

The simulator replays the spot capture in laps (``rig/simulator/laps.py``: each lap later in
time and ids, so every lap boundary is a sequence gap the reliability path heals), at ``--speed``.
Every ``--sample-every-s`` it records the resident memory of each process of the pipeline (a
process and all its children: the mini cluster's JVM and Python workers count to ``flink-job``)
and Redis's own ``used_memory``. Growth is measured from the first sample after ``--warm-up-s``
(JIT, caches and the 10,000-entry streams fill first) to the last.

A leak is judged by its slope, not by a bound on total growth (which let ~8 MB/min pass): per
process, the least-squares slope of RSS over the *last hour* of the run (MB/h), its 95 % interval
(from the residuals, so a noisy series shows as a wide one), the slopes of that hour's two halves
(half-hours in a full run) as a second look at the spread, and whether the slope stays under ``SLOPE_TARGET_SHARE`` of the
process's size at the start of that hour. The keyed state's size (the job's ``stateEntries``
gauge, read off Flink's Prometheus reporter) is sampled with it and judged the same way.

Prints one JSON line last: per process the RSS at start and end (MB), the peak, the growth, the
slope figures; the keyed state's entries over time; the inference service's cycles and missed
cycles, predictions by source, laps replayed and gaps healed. Exits non-zero if a process died,
a cycle was missed, or a slope passed its target.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import time
import urllib.request
from collections.abc import Callable

import psutil
import redis
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import StackGuard, emit
from btcpred.flink_jobs.state_storage import ROCKSDB_MEMORY_METRICS
from btcpred.udfs import redis_schema as rs
from rig.pipeline import Pipeline, flink_reporter_samples, get_json

SLOPE_TARGET_SHARE = 0.02  # a process may grow at most 2 % of its size per hour over the last hour
JUDGED_S = 3600.0  # the window the slope is taken over: the run's last hour
STATE_GAUGE = "stateEntries"  # the job's keyed state in entries (btcpred/flink_jobs/hot_path_job.py)


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return float("nan")
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:  # a worker that ended between the listing and the read
            pass
    return total / 2**20


def sample(pipeline: Pipeline, client: redis.Redis) -> dict[str, float]:
    out = {name: round(tree_rss_mb(proc.pid), 1) for name, proc in pipeline.procs.items()}
    out["redis (used_memory)"] = round(client.info("memory")["used_memory"] / 2**20, 1)
    return out


def rocksdb_native_mb(ports: str) -> dict[str, float | None]:
    """RocksDB's native memory off Flink's reporter (``state_storage.ROCKSDB_MEMORY_METRICS``), MB:
    memtables and table readers summed over the column families (one per state), the block cache
    the largest series (one cache shared through managed memory, reported by every family)."""
    out: dict[str, float | None] = {}
    for metric in ROCKSDB_MEMORY_METRICS:
        value = flink_gauge(ports, metric.replace("-", "_"), max if metric.startswith("block-cache") else sum)
        out[metric] = None if value is None else round(value / 2**20, 2)
    return out


def predictions_by_source(url: str) -> dict[str, int]:

    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        s.labels["source"]: int(s.value)
        for family in text_string_to_metric_families(text)
        if family.name == "inference_predictions"
        for s in family.samples
        if s.name.endswith("_total")
    }


def slope_per_hour(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares slope of (seconds, value) per hour, and the half-width of its 95 % interval."""
    n = len(points)
    if n < 3:
        return float("nan"), float("nan")
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    sxx = sum((t - mean_t) ** 2 for t, _ in points)
    slope = sum((t - mean_t) * (v - mean_v) for t, v in points) / sxx
    residual = sum((v - mean_v - slope * (t - mean_t)) ** 2 for t, v in points) / (n - 2)
    return slope * 3600, 1.96 * math.sqrt(residual / sxx) * 3600


def judge_slope(points: list[tuple[float, float]]) -> dict:
    """Slope figures of one series over its last ``JUDGED_S`` (points: seconds since start, value)."""
    end = points[-1][0]
    judged = [(t, v) for t, v in points if t >= end - JUDGED_S]
    slope, half_width = slope_per_hour(judged)
    middle = judged[0][0] + (judged[-1][0] - judged[0][0]) / 2
    halves = [slope_per_hour([p for p in judged if p[0] <= middle])[0], slope_per_hour([p for p in judged if p[0] >= middle])[0]]
    start = judged[0][1]
    target = SLOPE_TARGET_SHARE * start
    return {
        "judged_minutes": round((judged[-1][0] - judged[0][0]) / 60, 1),
        "start": start,
        "slope_per_h": round(slope, 2),
        "slope_ci95": [round(slope - half_width, 2), round(slope + half_width, 2)],
        "half_window_slopes_per_h": [round(h, 2) for h in halves],
        "target_per_h": round(target, 2),
        "share_of_start_per_h": round(slope / start, 4) if start else None,
        "within_target": slope <= target,
    }


def summarise(samples: list[tuple[float, dict[str, float]]], warm_up_s: float) -> dict[str, dict]:
    t0 = samples[0][0]
    settled = [(t - t0, s) for t, s in samples if t - t0 >= warm_up_s] or [(samples[-1][0] - t0, samples[-1][1])]
    out = {}
    for name in samples[-1][1]:
        series = [(t, s[name]) for t, s in settled if s.get(name) is not None and not math.isnan(s[name])]
        start, end = series[0][1], series[-1][1]
        out[name] = {
            "start_mb": start,
            "end_mb": end,
            "peak_mb": max(s[name] for _, s in samples),
            "growth_mb": round(end - start, 1),
            **judge_slope(series),
        }
    return out


def rocksdb_summary(series: list[tuple[float, dict[str, float | None]]], warm_up_s: float, every_s: float) -> dict:
    """Each RocksDB memory gauge every 10 minutes after the warm-up and its slope over the last hour
    (diagnostic: not judged, the process's resident size is)."""
    out = {}
    for metric in ROCKSDB_MEMORY_METRICS:
        seen = [(t, s[metric]) for t, s in series if s.get(metric) is not None and t >= warm_up_s]
        if len(seen) < 3:
            out[metric] = "not read off Flink's reporter"
            continue
        judged = judge_slope(seen)
        out[metric] = {"every_10_min": [v for _, v in seen][:: max(1, int(600 / every_s))], "slope_per_h": judged["slope_per_h"]}
    return out


def flink_gauge(ports: str, name: str, combine: Callable[[list[float]], float] = sum) -> float | None:
    """A job gauge over Flink's Prometheus reporter ports (every subtask; summed unless told), the
    operator-wide series only: the per-symbol ones (a ``symbol`` label) repeat the same entries key by key."""
    found = [s.value for s in flink_reporter_samples(ports, name) if "symbol" not in s.labels]
    return combine(found) if found else None


def stop_on_signals() -> None:
    """SIGTERM and SIGINT end the run through ``pipeline.stop()`` and a partial report. Without this a
    SIGTERM killed the bench and left the pipeline's processes running, and a bench started in the
    background ignores SIGINT (a non-interactive shell starts it with SIGINT ignored)."""

    def interrupt(signum: int, _frame) -> None:
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=125.0)
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--sample-every-s", type=float, default=60.0)
    parser.add_argument("--warm-up-s", type=float, default=300.0)
    args = parser.parse_args()
    stop_on_signals()
    with StackGuard():
        pipeline = Pipeline(speed=args.speed, laps=0)
        client = redis.Redis.from_url(pipeline.settings.redis.url)
        samples: list[tuple[float, dict[str, float]]] = []
        state_entries: list[tuple[float, float | None]] = []
        rocksdb: list[tuple[float, dict[str, float | None]]] = []
        died = None
        try:
            pipeline.start(wait_for_job=True)
            started = time.monotonic()
            end = started + args.minutes * 60
            while True:
                now = time.monotonic()
                samples.append((now, sample(pipeline, client)))
                state_entries.append((now - started, flink_gauge(pipeline.settings.flink.metrics_reporter_ports, STATE_GAUGE)))
                rocksdb.append((now - started, rocksdb_native_mb(pipeline.settings.flink.metrics_reporter_ports)))
                print(
                    f"[soak] {(now - started) / 60:5.1f} min: "
                    + ", ".join(f"{k} {v:.0f}" for k, v in samples[-1][1].items())
                    + f"; rocksdb MB {rocksdb[-1][1]}",
                    file=sys.stderr,
                    flush=True,
                )
                if now >= end:
                    break
                time.sleep(min(args.sample_every_s, max(0.0, end - now)))
                pipeline.check_alive()
            cadence = get_json(f"{pipeline.inference_url}/cadence")
            sources = predictions_by_source(f"http://127.0.0.1:{pipeline.inference_metrics_port}")
            sim = get_json(f"{pipeline.sim_url}/sim/status")
            gaps = client.xlen(rs.gap_stream_key("BTCUSDT"))
            reanchors = client.xlen(rs.reanchor_log_key("BTCUSDT"))
        except (RuntimeError, KeyboardInterrupt) as exc:
            died = str(exc) or type(exc).__name__
            cadence, sources, sim, gaps, reanchors = {}, {}, {}, None, None
        finally:
            pipeline.stop()
            client.close()
    memory = summarise(samples, args.warm_up_s) if samples else {}
    seen = [(t, v) for t, v in state_entries if v is not None and t >= args.warm_up_s]
    keyed_state = (
        {"entries_every_10_min": [v for t, v in seen][:: max(1, int(600 / args.sample_every_s))], **judge_slope(seen)}
        if len(seen) >= 3
        else {"error": "stateEntries not read off Flink's reporter"}
    )
    result = {
        "benchmark": "soak",
        "allocator": pipeline.settings.flink.allocator,
        "minutes": args.minutes,
        "speed": args.speed,
        "samples": len(samples),
        "warm_up_s": args.warm_up_s,
        "memory": memory,
        "keyed_state": keyed_state,
        "rocksdb_native_mb": rocksdb_summary(rocksdb, args.warm_up_s, args.sample_every_s),
        "cycles": cadence.get("cycles"),
        "missed_cycles": cadence.get("missed_cycles"),
        "predictions": sources,
        "laps": sim.get("lap", -1) + 1,
        "gaps_recorded": gaps,
        "reanchor_log_entries": reanchors,
        "died": died,
    }
    emit(result)
    ok = died is None and cadence.get("missed_cycles") == 0 and all(m["within_target"] for m in memory.values())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
