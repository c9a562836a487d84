"""Hot-path freshness: ingestor receipt of a depth diff -> its ob: write in Redis.

    python -m bench.freshness [--speed 1] [--seconds 60] [--cluster] [--perp]

Starts the stack (if needed) and the pipeline on the real spot capture, samples
freshness for ``--seconds`` after the first book write, stops what it started,
and prints one JSON line last: p50_ms, p95_ms, p99_ms, events, speed. ``--perp`` replays the
USD-M capture of the same minutes beside spot as the perpetual's bookTicker stream (the
cross-market features' input: 2.6x the frames).
"""

from __future__ import annotations

import argparse
import time

from bench.harness import FreshnessSampler, StackGuard, emit
from rig.pipeline import DEFAULT_PERP_CAPTURE, Pipeline, get_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--cluster", action="store_true", help="standalone cluster instead of the mini cluster")
    parser.add_argument("--perp", action="store_true", help="the perpetual's bookTicker stream beside spot")
    args = parser.parse_args()
    with StackGuard():
        pipeline = Pipeline(
            speed=args.speed, mini_cluster=not args.cluster, perp_capture=DEFAULT_PERP_CAPTURE if args.perp else None
        )
        sampler = FreshnessSampler()
        try:
            pipeline.start(wait_for_job=True)  # no start-up backlog: the replay begins once the job reads
            sampler.start()
            start = get_json(f"{pipeline.sim_url}/sim/status")["position"]
            end_at = time.monotonic() + args.seconds
            status = {}
            while time.monotonic() < end_at:
                pipeline.check_alive()
                status = get_json(f"{pipeline.sim_url}/sim/status")
                if status["finished"]:
                    break
                time.sleep(0.5)
            time.sleep(1.0)
            events = status.get("position", start) - start
        finally:
            pipeline.stop()
            sampler.stop()
    emit(
        {
            "benchmark": "freshness",
            "speed": args.speed,
            "events": events,
            "mode": "cluster" if args.cluster else "mini-cluster",
            "perp": args.perp,
            **sampler.summary(),
        }
    )


if __name__ == "__main__":
    main()
