"""Prediction cycle latency: one pipelined Redis read, feature assembly, one ONNX Runtime call.

    python -m bench.inference_cycle [--cycles 10000] [--seconds N]

Runs the service's own ``cycle`` back to back against the local Redis (real
hot state from the Binance.US book, a real MLP artifact) and reports the
latency the service itself stamps on each prediction (boundary to prediction,
before publishing). Baseline in the same run: a bare Redis PING round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import redis.asyncio as aioredis

from bench.harness import StackGuard, emit, percentile
from bench.inference_support import BOOK_MARKET, model_and_hot_state
from btcpred.common.config import load_settings
from btcpred.inference.model_manager import FileSource
from btcpred.inference.service import PredictionService


async def measure(settings, model_dir: Path, cycles: int, seconds: float | None) -> dict:
    svc = PredictionService(settings, model_source=FileSource(str(model_dir)))
    assert await svc.manager.poll_once() == "loaded"
    ping = aioredis.Redis.from_url(settings.redis.url)
    for _ in range(200):  # warm both connections
        await ping.ping()
        await svc.cycle(0, 0)
    pings, latencies, full = [], [], []
    started = time.perf_counter()
    boundary = 2000
    while (len(latencies) < cycles) if seconds is None else (time.perf_counter() - started < seconds):
        t0 = time.perf_counter()
        await ping.ping()
        pings.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        await svc.cycle(boundary, 0)
        full.append((time.perf_counter() - t0) * 1000)
        pred = svc.history[-1]
        assert pred.source == "redis", pred.fallback_reason
        latencies.append(pred.latency_ms)
        boundary += 2000
    await ping.aclose()
    await svc.redis.aclose()
    return {
        "cycles": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 4),
        "p99_ms": round(percentile(latencies, 99), 4),
        "max_ms": round(max(latencies), 4),
        "mean_ms": round(statistics.fmean(latencies), 4),
        "with_publish_p50_ms": round(percentile(full, 50), 4),
        "with_publish_p99_ms": round(percentile(full, 99), 4),
        "redis_ping_p50_ms": round(percentile(pings, 50), 4),
        "redis_ping_p99_ms": round(percentile(pings, 99), 4),
        "p50_ratio_to_ping": round(percentile(latencies, 50) / percentile(pings, 50), 2),
        "target_p99_ms": 2.0,
        "model": svc.predictor.version,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=None, help="run for this long instead of --cycles")
    args = parser.parse_args(argv)
    settings = load_settings()
    settings = settings.model_copy(update={"exchange": settings.exchange.model_copy(update={"market": BOOK_MARKET})})
    with StackGuard(), model_and_hot_state(settings.redis.url) as (model_dir, _):
        result = asyncio.run(measure(settings, model_dir, args.cycles, args.seconds))
    emit({"bench": "inference_cycle", **result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
