"""Latest-prediction latency over HTTP under open-loop load from this (second) process.

    python -m bench.http_latency [--seconds 60] [--rate 500]

Starts the inference service (real MLP artifact, real hot state in the local
Redis) as its own process and loads ``/predictions/latest``. Baseline in the same
run: ``/health`` (no prediction serialisation) at the same rate for a fifth of the time.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import time

from bench.harness import StackGuard, emit
from bench.http_load import open_loop
from bench.inference_support import ServiceProcess, model_and_hot_state
from btcpred.common.config import load_settings
from rig.pipeline import get_json


def wait_for_prediction(url: str, timeout_s: float = 10) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return get_json(f"{url}/predictions/latest")
        except (OSError, ValueError, http.client.HTTPException):  # 404 until the first cycle
            time.sleep(0.1)
    raise SystemExit("the service published no prediction")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=500, help="requests per second")
    args = parser.parse_args(argv)
    settings = load_settings()
    with StackGuard(), model_and_hot_state(settings.redis.url) as (model_dir, _):
        with ServiceProcess(model_dir, cadence_ms=500) as svc:
            latest = wait_for_prediction(svc.url)
            baseline = asyncio.run(open_loop(f"{svc.url}/health", args.rate, max(args.seconds / 5, 2)))
            result = asyncio.run(open_loop(f"{svc.url}/predictions/latest", args.rate, args.seconds))
            cadence = get_json(f"{svc.url}/cadence")
    emit(
        {
            "bench": "http_latency",
            "endpoint": "/predictions/latest",
            "rate_target": args.rate,
            "seconds": args.seconds,
            **result,
            "model": latest["model_version"],
            "baseline_health_p50_ms": baseline["p50_ms"],
            "baseline_health_p99_ms": baseline["p99_ms"],
            "p50_ratio_to_health": round(result["p50_ms"] / baseline["p50_ms"], 2) if baseline["p50_ms"] else None,
            "service_missed_cycles": cadence["missed_cycles"],
            "target_p99_ms": 5.0,
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
