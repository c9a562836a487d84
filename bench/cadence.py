"""Cadence of the 2 s prediction cycle while the HTTP API is under load.

    python -m bench.cadence [--seconds 600] [--rate 500]

Starts the inference service (2 s cadence, real MLP artifact) and loads
``/predictions/latest`` at ``--rate`` from this process for ``--seconds``. Jitter
is the service's wake-up delay after each boundary (from ``/cadence``); missed
cycles are counted by the service and re-checked here from the published
``pred:`` stream (every consecutive pair of predictions 2 s apart). Baseline in
the same run: the jitter of a plain ``asyncio`` sleep to the same boundaries in
this process.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.harness import StackGuard, emit, percentile
from bench.http_load import open_loop
from bench.inference_support import ServiceProcess, model_and_hot_state
from btcpred.common.config import load_settings
from btcpred.inference.cadence import next_boundary_ms
from rig.pipeline import get_json

CADENCE_MS = 2000


async def sleeper_jitter(seconds: float) -> list[float]:
    """Baseline: how late a bare asyncio sleep to each 2 s boundary wakes in this (loaded) process."""
    jitter = []
    end = time.time() + seconds
    while time.time() < end:
        boundary = next_boundary_ms(time.time() * 1000, CADENCE_MS)
        await asyncio.sleep(max(0.0, boundary / 1000 - time.time()))
        jitter.append(time.time() * 1000 - boundary)
    return jitter


async def load_and_baseline(url: str, rate: float, seconds: float):
    return await asyncio.gather(open_loop(url, rate, seconds), sleeper_jitter(seconds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--rate", type=float, default=500)
    args = parser.parse_args(argv)
    settings = load_settings()
    with StackGuard(), model_and_hot_state(settings.redis.url) as (model_dir, client):
        with ServiceProcess(model_dir, cadence_ms=CADENCE_MS) as svc:
            time.sleep(CADENCE_MS / 1000 * 1.5)  # the first cycle, then measure from a clean window
            before = get_json(f"{svc.url}/cadence")
            load, baseline = asyncio.run(load_and_baseline(f"{svc.url}/predictions/latest", args.rate, args.seconds))
            after = get_json(f"{svc.url}/cadence")
        stamps = [int(fields[b"timestamp"]) for _, fields in client.xrange("pred:{BTCUSDT}")]
    gaps = sum((b - a) // CADENCE_MS - 1 for a, b in zip(stamps, stamps[1:]) if b - a != CADENCE_MS)
    emit(
        {
            "bench": "cadence",
            "seconds": args.seconds,
            "rate": args.rate,
            "cycles": after["cycles"] - before["cycles"],
            "missed_cycles": after["missed_cycles"],
            "missed_in_stream": gaps,
            "predictions_in_stream": len(stamps),
            "p50_ms": after["jitter_p50_ms"],
            "p99_ms": after["jitter_p99_ms"],
            "jitter_p99_ms": after["jitter_p99_ms"],
            "jitter_max_ms": after["jitter_max_ms"],
            "baseline_sleep_jitter_p50_ms": round(percentile(baseline, 50), 3),
            "baseline_sleep_jitter_p99_ms": round(percentile(baseline, 99), 3),
            "http": {k: load[k] for k in ("requests_per_s", "p50_ms", "p99_ms", "errors")},
            "target_jitter_p99_ms": 10.0,
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
