"""Soak: the whole pipeline on the real capture, lap after lap, for half an hour or more.

    python -m bench.soak [--minutes 30] [--speed 10] [--sample-every-s 60] [--warm-up-s 120]

The simulator replays the spot capture in laps (``rig/simulator/laps.py``: each lap later in
time and ids, so every lap boundary is a sequence gap the reliability path heals), at ``--speed``.
Every ``--sample-every-s`` it records the resident memory of each process of the pipeline (a
process and all its children: the mini cluster's JVM and Python workers count to ``flink-job``)
and Redis's own ``used_memory``. Growth is measured from the first sample after ``--warm-up-s``
(JIT, caches and the 10,000-entry streams fill first) to the last.

Prints one JSON line last: per process the RSS at start and end (MB), the peak, the growth and
whether it stayed within the bound (``max(GROWTH_BOUND_MB, GROWTH_BOUND_SHARE * start)``); the
inference service's cycles and missed cycles, predictions by source, laps replayed and gaps
healed. Exits non-zero if a process died, a cycle was missed, or a bound was broken.
"""
from __future__ import annotations

import argparse
import sys
import time

import psutil
import redis
from bench.harness import StackGuard, emit
from prometheus_client.parser import text_string_to_metric_families

from rig.pipeline import Pipeline, get_json
from btcpred.udfs import redis_schema as rs

GROWTH_BOUND_MB = 64.0  # resident growth a process may show after warm-up
GROWTH_BOUND_SHARE = 0.25  # ... or this share of its size after warm-up, whichever is larger


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


def predictions_by_source(url: str) -> dict[str, int]:
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {s.labels["source"]: int(s.value) for family in text_string_to_metric_families(text)
            if family.name == "inference_predictions" for s in family.samples if s.name.endswith("_total")}


def summarise(samples: list[tuple[float, dict[str, float]]], warm_up_s: float) -> dict[str, dict]:
    t0 = samples[0][0]
    settled = [s for t, s in samples if t - t0 >= warm_up_s] or [samples[-1][1]]
    out = {}
    for name in samples[-1][1]:
        start, end = settled[0][name], settled[-1][name]
        peak = max(s[name] for _, s in samples)
        bound = max(GROWTH_BOUND_MB, GROWTH_BOUND_SHARE * start)
        out[name] = {"start_mb": start, "end_mb": end, "peak_mb": peak, "growth_mb": round(end - start, 1),
                     "bound_mb": round(bound, 1), "within_bound": end - start <= bound}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--sample-every-s", type=float, default=60.0)
    parser.add_argument("--warm-up-s", type=float, default=120.0)
    args = parser.parse_args()
    with StackGuard():
        pipeline = Pipeline(speed=args.speed, laps=0)
        client = redis.Redis.from_url(pipeline.settings.redis.url)
        samples: list[tuple[float, dict[str, float]]] = []
        died = None
        try:
            pipeline.start(wait_for_job=True)
            started = time.monotonic()
            end = started + args.minutes * 60
            while True:
                now = time.monotonic()
                samples.append((now, sample(pipeline, client)))
                print(f"[soak] {(now - started) / 60:5.1f} min: " + ", ".join(f"{k} {v:.0f}" for k, v in samples[-1][1].items()),
                      file=sys.stderr, flush=True)
                if now >= end:
                    break
                time.sleep(min(args.sample_every_s, max(0.0, end - now)))
                pipeline.check_alive()
            cadence = get_json(f"{pipeline.inference_url}/cadence")
            sources = predictions_by_source(pipeline.inference_url)
            sim = get_json(f"{pipeline.sim_url}/sim/status")
            gaps = client.xlen(rs.gap_stream_key("BTCUSDT"))
            reanchors = client.xlen(rs.reanchor_log_key("BTCUSDT"))
        except RuntimeError as exc:
            died = str(exc)
            cadence, sources, sim, gaps, reanchors = {}, {}, {}, None, None
        finally:
            pipeline.stop()
            client.close()
    memory = summarise(samples, args.warm_up_s) if samples else {}
    result = {"benchmark": "soak", "minutes": args.minutes, "speed": args.speed, "samples": len(samples),
              "warm_up_s": args.warm_up_s, "memory": memory, "cycles": cadence.get("cycles"),
              "missed_cycles": cadence.get("missed_cycles"), "predictions": sources, "laps": sim.get("lap", -1) + 1,
              "gaps_recorded": gaps, "reanchor_log_entries": reanchors, "died": died}
    emit(result)
    ok = died is None and cadence.get("missed_cycles") == 0 and all(m["within_bound"] for m in memory.values())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
