"""Hot-path throughput: the highest sustained rate at which freshness P99 stays under 1 s.

    python -m bench.throughput [--rates 2000,4000,6000,8000,max] [--source kinesis|exchange]
                               [--set flink.bundle_time_ms=50 ...] [--compare KEY=VALUE ...]
                               [--repeat 3] [--seconds 120] [--keys 2 --set kinesis.shards=2]

``--source kinesis`` (default): the Flink job alone. A fresh mini-cluster job per step;
the real spot capture's frames are put into Kinesis by ``kinesis_feed`` (aggregated and
stamped as the ingestor does), a warm-up slice at 1,500 events/s first, then the rest at
the step's rate (``max``: all at once, the job's catch-up capacity). Freshness is ingestor
receipt -> ``ob:`` write, sampled after the warm-up.

``--keys N`` (kinesis): scale-out by key. The capture is fed under N keys side by side: the
configured symbol and replay keys ``<symbol>-R<i>`` carrying the same real frames re-encoded
(``kinesis_feed.relabel``), picked so they land on different keyed subtasks and shards. Every
key's book must catch up. ``--compare flink.parallelism=2`` then shows parallelism 1 and 2
side by side.

``--source exchange``: the whole pipeline (simulator, WebSocket ingestor, Kinesis, Flink,
Redis) per step, rates given as replay speeds (0 = as fast as the ingestor takes frames).

``--floor`` (kinesis, mini cluster) adds a variant that runs ``bench.floor_job`` on the same
records: the job's graph and configuration without its own work, so the ratio of the two is
how close the job is to what the platform costs per event here.

``--set`` overrides a config key for every step; ``--compare`` runs a variant beside the
baseline, interleaved, and reports its medians as ratios (knob effects on a noisy machine).
Prints one JSON line last: events_per_s and freshness_p99_ms of the baseline's best rate
whose median P99 stays under 1 s, the capacity (best median of any rate), every step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from contextlib import contextmanager
from dataclasses import replace

from bench.harness import FreshnessSampler, StackGuard, emit, freshness_summary
from bench.kinesis_feed import Capture, KinesisFeed, load_capture, relabel, spread_keys
from btcpred.common.config import load_settings
from rig import stack
from rig.pipeline import DEFAULT_CAPTURE, Pipeline, get_json

WARMUP_EVENTS = 15_000
WARMUP_RATE = 1_500.0
P99_LIMIT_MS = 1_000.0
FLOOR = "floor"


@contextmanager
def overrides(pairs: list[str]):
    """``section.key=value`` as the typed config's environment overrides, for the processes we start."""
    env = {"BTCPRED_" + key.replace(".", "__").upper(): value for key, value in (p.split("=", 1) for p in pairs)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def interleaved(captures: dict[str, Capture], start: int, stop: int | None) -> list[tuple[str, bytes]]:
    """Frame i of every key, then frame i + 1 of every key: the keys' streams side by side."""
    slices = {key: capture.frames[start:stop] for key, capture in captures.items()}
    return [
        (key, frames[i]) for i in range(max(len(f) for f in slices.values())) for key, frames in slices.items() if i < len(frames)
    ]


def kinesis_step(
    rate: float | None, budget_s: float, captures: dict[str, Capture], cluster: bool = False, job_module: str | None = None
) -> dict:
    """One step: every key's capture fed side by side at ``rate`` events/s in all (None: all at once),
    until every key's book reached its last update id. ``cluster``: the standalone cluster's
    TaskManager, whose Python workers are processes of their own; the mini cluster runs them as
    threads of the job's client process (Beam's loopback mode), one GIL for every subtask.
    ``job_module``: another job on the mini cluster (``bench.floor_job``)."""
    pipeline = Pipeline(speed=1.0, mini_cluster=not cluster, job_module=job_module)
    samplers = {key: FreshnessSampler(key) for key in captures}
    measured = interleaved(captures, WARMUP_EVENTS, None)

    def caught_up() -> bool:
        return all(samplers[key].last_update_id == c.last_update_id for key, c in captures.items())

    try:
        pipeline.reset_hot_state()
        pipeline.create_stream()
        pipeline.start_job()
        pipeline.wait_for_job()
        settings = pipeline.settings  # the ingestor's aggregation knobs apply to the feed
        feed = KinesisFeed(
            settings,
            pipeline.stream,
            settings.exchange.symbol,
            linger_s=settings.ingestor.batch_linger_ms / 1000,
            max_frames_per_record=settings.ingestor.max_frames_per_record,
        )
        for sampler in samplers.values():
            sampler.start()
        for key, capture in captures.items():
            feed.anchor(capture, key)
        feed.send(interleaved(captures, 0, WARMUP_EVENTS), WARMUP_RATE * len(captures))
        time.sleep(2.0)
        for sampler in samplers.values():
            sampler.reset()
        started = time.monotonic()
        send_s = feed.send(measured, rate)
        while time.monotonic() - started < budget_s and not caught_up():
            pipeline.check_alive()
            time.sleep(0.01)
        elapsed = time.monotonic() - started
    finally:
        pipeline.stop()
        for sampler in samplers.values():
            sampler.stop()
    complete = caught_up()
    summary = freshness_summary([ms for sampler in samplers.values() for ms in sampler.samples_ms])
    return {
        "rate": rate or "max",
        "keys": len(captures),
        "events": len(measured),
        "send_s": round(send_s, 2),
        "seconds": round(elapsed, 2),
        "events_per_s": round(len(measured) / elapsed, 1),
        "complete": complete,
        "freshness_p50_ms": summary["p50_ms"],
        "freshness_p99_ms": summary["p99_ms"],
        "samples": summary["samples"],
    }


def exchange_step(speed: float, budget_s: float) -> dict:
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
            if status["finished"] and sampler.last_update_id == status["last_update_id"]:
                break
            time.sleep(0.05)
        elapsed = time.monotonic() - (started or time.monotonic())
        complete = bool(status.get("finished")) and sampler.last_update_id == status["last_update_id"]
    finally:
        pipeline.stop()
        sampler.stop()
    summary = sampler.summary()
    return {
        "speed": speed,
        "events": status.get("position", 0),
        "seconds": round(elapsed, 2),
        "events_per_s": round(status.get("position", 0) / elapsed, 1) if elapsed else 0.0,
        "complete": bool(complete),
        "freshness_p50_ms": summary["p50_ms"],
        "freshness_p99_ms": summary["p99_ms"],
    }


def floor_captures(captures: dict[str, Capture]) -> dict[str, Capture]:
    """The floor job's ``ob:`` counts frames: a key is done when it saw the anchor and every frame."""
    return {key: replace(c, last_update_id=1 + len(c.frames)) for key, c in captures.items()}


def median_steps(steps: list[dict]) -> list[dict]:
    """Per variant and rate: medians of the repeats (this machine is noisy; single runs mislead)."""
    groups: dict[tuple, list[dict]] = {}
    for step in steps:
        groups.setdefault((step["variant"], step.get("rate", step.get("speed"))), []).append(step)
    out = []
    for (variant, rate), runs in groups.items():
        done = [r for r in runs if r["complete"]]
        med = lambda key, done=done: round(statistics.median(r[key] for r in done), 1) if done else None  # noqa: E731
        out.append(
            {
                "variant": variant,
                "rate": rate,
                "runs": len(runs),
                "complete": len(done) == len(runs),
                "events_per_s": med("events_per_s"),
                "freshness_p50_ms": med("freshness_p50_ms"),
                "freshness_p99_ms": med("freshness_p99_ms"),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=("kinesis", "exchange"), default="kinesis")
    parser.add_argument(
        "--rates",
        default=None,
        help="events/s per step, 'max' = all at once (kinesis; default 2000,4000,6000,8000,max); "
        "replay speeds, 0 = unthrottled (exchange; default 20,50,100,0)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="config override for every step, e.g. flink.bundle_time_ms=50",
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="a variant run beside the baseline (interleaved, --repeat times): knob effects as ratios",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per step; medians are reported")
    parser.add_argument("--seconds", type=float, default=120.0, help="time budget per step after the warm-up")
    parser.add_argument(
        "--keys",
        type=int,
        default=1,
        help="kinesis: symbols fed side by side, the capture replayed under each (scale-out by key; "
        "the keys are chosen to land on different keyed subtasks at --spread-parallelism)",
    )
    parser.add_argument("--spread-parallelism", type=int, default=2)
    parser.add_argument(
        "--cluster", action="store_true", help="kinesis: the standalone cluster (started if needed) instead of the mini cluster"
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="kinesis, mini cluster: a variant running bench.floor_job, the same graph and records "
        "without the job's own work (the platform's cost per event)",
    )
    args = parser.parse_args()
    variants = [("baseline", [])] + [(kv, [kv]) for kv in args.compare] + ([(FLOOR, [])] if args.floor else [])
    steps = []
    with StackGuard(), overrides(args.set) as env:
        capture = load_capture(DEFAULT_CAPTURE) if args.source == "kinesis" else None
        if capture and args.cluster and stack.main(["start", "--with-flink-cluster"]) != 0:
            raise SystemExit("the standalone Flink cluster failed to start")
        if capture:
            settings = load_settings()
            keys = spread_keys(args.keys, settings.exchange.symbol, args.spread_parallelism, settings.kinesis.shards)
            capture = {key: capture if i == 0 else relabel(capture, key) for i, key in enumerate(keys)}
        for _ in range(args.repeat):
            for name, pairs in variants:  # interleaved, so drift of the machine hits every variant alike
                with overrides(pairs):
                    for rate in (args.rates or ("2000,4000,6000,8000,max" if capture else "20,50,100,0")).split(","):
                        if capture and name == FLOOR:
                            step = kinesis_step(
                                None if rate == "max" else float(rate),
                                args.seconds,
                                floor_captures(capture),
                                job_module="bench.floor_job",
                            )
                        elif capture:
                            step = kinesis_step(
                                None if rate == "max" else float(rate), args.seconds, capture, cluster=args.cluster
                            )
                        else:
                            step = exchange_step(float(rate), args.seconds)
                        step["variant"] = name
                        steps.append(step)
                        print(step, flush=True)
    medians = median_steps(steps)
    base = [m for m in medians if m["variant"] == "baseline"]
    ok = [m for m in base if m["complete"] and m["freshness_p99_ms"] < P99_LIMIT_MS]
    best = max(ok, key=lambda m: m["events_per_s"]) if ok else {"events_per_s": 0.0, "freshness_p99_ms": None, "rate": None}
    capacity = max((m["events_per_s"] for m in base if m["complete"]), default=0.0)
    for m in medians:  # each variant against the baseline at the same rate
        ref = next((b for b in base if b["rate"] == m["rate"]), None)
        if m["variant"] != "baseline" and ref and ref["events_per_s"] and m["events_per_s"]:
            m["events_per_s_ratio"] = round(m["events_per_s"] / ref["events_per_s"], 2)
            m["freshness_p99_ratio"] = round(m["freshness_p99_ms"] / ref["freshness_p99_ms"], 2)
    emit(
        {
            "benchmark": "throughput",
            "source": args.source,
            "keys": args.keys,
            "cluster": args.cluster,
            "events_per_s": best["events_per_s"],
            "freshness_p99_ms": best["freshness_p99_ms"],
            "best_rate": best["rate"],
            "capacity_events_per_s": capacity,
            "repeat": args.repeat,
            "overrides": env,
            "medians": medians,
            "steps": steps,
        }
    )


if __name__ == "__main__":
    main()
