"""The reliability fault suite on the live local stack, with figures.

    python -m bench.reanchor [--speed 3] [--seconds N]

Replays the real capture through the whole pipeline (mini cluster) and injects,
one after the other once the book is valid again: dropped diffs (1, 5, 50),
duplicated frames, a corrupt depth frame, re-anchors that meet REST 429s, a
418 ban and slow answers, a Redis restart (it comes back empty) and a 3 s
Kinesis endpoint outage (the stack's proxy in front of kinesalite). Prints one JSON line last with ``gaps_injected``,
``gaps_detected``, ``false_positives``, ``reanchor_p99_ms``, ``failed_reads``,
``bronze_lost``, ``bronze_duplicated`` and the details. Baseline in the same run:
the clean stretch before the first fault (its gap count is the false positives).
"""

from __future__ import annotations

import argparse

from bench.harness import REPO, StackGuard, emit
from rig import stack
from rig.fault_suite import FULL_SUITE, TASKMANAGER_KILL, run_suite
from rig.pipeline import Pipeline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speed", type=float, default=3.0, help="replay speed (the capture lasts 5 min 46 s)")
    parser.add_argument(
        "--standalone", action="store_true", help="run on the local standalone cluster (web UI :8081) and add a TaskManager kill"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="accepted for the bench contract: the suite ends when its faults are done or the replay ends",
    )
    args = parser.parse_args(argv)
    logs = REPO / ".local" / "logs" / "bench-reanchor"  # kept: the processes' logs explain any odd figure
    faults = FULL_SUITE + ((TASKMANAGER_KILL,) if args.standalone else ())
    with StackGuard():
        if args.standalone and stack.main(["start", "--with-flink-cluster"]) != 0:
            raise SystemExit("the standalone cluster did not start")
        pipeline = Pipeline(speed=args.speed, mini_cluster=not args.standalone, log_dir=logs, verify_interval_s=15.0)
        try:
            result = run_suite(pipeline, faults)
        finally:
            pipeline.stop()
    emit({"bench": "reanchor", "speed": args.speed, "cluster": "standalone" if args.standalone else "mini", **result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
