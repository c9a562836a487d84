"""Hot-path throughput: the highest replay rate at which freshness P99 stays under 1 s.

    python bench/throughput.py [--speeds 20,50,100,0] [--seconds 60]

For each speed (0 = as fast as the ingestor takes frames) a fresh pipeline replays the
real spot capture; the job is consuming before the replay starts. Per step: events/s
delivered end to end (capture events / time from replay start until the job's book
reached the exchange's last update id) and freshness percentiles. Prints one JSON line
last: events_per_s and freshness_p99_ms of the best step under 1 s, plus every step.
"""
from __future__ import annotations

import argparse
import time

from harness import FreshnessSampler, StackGuard, emit

from deploy.local.pipeline import Pipeline, get_json


def run_step(speed: float, budget_s: float) -> dict:
    pipeline = Pipeline(speed=speed, mini_cluster=True)
    sampler = FreshnessSampler()
    try:
        pipeline.start(wait_for_job=True)
        sampler.start()
        deadline = time.monotonic() + budget_s
        started = None
        status = {}
        while time.monotonic() < deadline:
            pipeline.check_alive()
            status = get_json(f"{pipeline.sim_url}/sim/status")
            if started is None and status["position"] > 0:
                started = time.monotonic()
            if status["finished"] and sampler._last_id and int(sampler._last_id) == status["last_update_id"]:
                break
            time.sleep(0.05)
        elapsed = time.monotonic() - (started or time.monotonic())
        complete = bool(status.get("finished")) and sampler._last_id and int(sampler._last_id) == status["last_update_id"]
    finally:
        pipeline.stop()
        sampler.stop()
    summary = sampler.summary()
    return {"speed": speed, "events": status.get("position", 0), "seconds": round(elapsed, 2),
            "events_per_s": round(status.get("position", 0) / elapsed, 1) if elapsed else 0.0,
            "complete": bool(complete), "freshness_p50_ms": summary["p50_ms"], "freshness_p99_ms": summary["p99_ms"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speeds", default="20,50,100,0")
    parser.add_argument("--seconds", type=float, default=90.0, help="time budget per step (replay + catch-up)")
    args = parser.parse_args()
    steps = []
    with StackGuard():
        for speed in (float(s) for s in args.speeds.split(",")):
            step = run_step(speed, args.seconds)
            steps.append(step)
            print(step, flush=True)
    ok = [s for s in steps if s["complete"] and s["freshness_p99_ms"] < 1000]
    best = max(ok, key=lambda s: s["events_per_s"]) if ok else {"events_per_s": 0.0, "freshness_p99_ms": None, "speed": None}
    emit({"benchmark": "throughput", "events_per_s": best["events_per_s"], "freshness_p99_ms": best["freshness_p99_ms"],
          "best_speed": best["speed"], "steps": steps})


if __name__ == "__main__":
    main()
