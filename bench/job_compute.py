"""The hot path's Python work per frame, without Flink: the ceiling the job's capacity is measured against.

    python -m bench.job_compute [--repeat 5] [--frames-per-record 200]

Runs what the job's Python operators do for every Kinesis record of the real spot
capture, in one process: envelope unpack, SBE decode (best bid/ask: the structure
check), ``SymbolState.on_batch`` (the state machine, one ``ob:`` write per record, the
coalesced write batch: the job's own call), a boundary cut every 500 ms of event time, and the keyed state
pickled with cloudpickle once per record (PyFlink commits it once per bundle; per
record is the pessimistic end). No Redis, no Beam, no JVM.

Prints one JSON line last: median µs per frame for each part and in all, and the
frames/s one core could sustain at that cost: what ``bench/throughput.py``'s
capacity (the job in Flink) is a fraction of.
"""
from __future__ import annotations

import argparse
import statistics
import time

import cloudpickle
from bench.harness import emit

from bench.kinesis_feed import load_capture
from deploy.local.pipeline import DEFAULT_CAPTURE
from flink_jobs.hot_path_state import SymbolState, decode_record
from udfs import envelope, sbe

INTERVAL_US = 500_000


def records_of(frames: list[bytes], per_record: int) -> list[str]:
    return [envelope.batch_to_text([envelope.Envelope(envelope.Source.WEBSOCKET, 1, f) for f in frames[i:i + per_record]])
            for i in range(0, len(frames), per_record)]


def run_once(snapshot: bytes, records: list[str]) -> dict[str, float]:
    """Seconds spent per part over the whole capture."""
    spent = dict.fromkeys(("decode", "state", "boundaries", "pickle"), 0.0)
    clock = time.perf_counter
    st = SymbolState("BTCUSDT")
    st.on_event(sbe.decode(snapshot), 0)
    next_boundary = 0
    for record in records:
        t0 = clock()
        batches = decode_record(record, 0).batches  # what the job's decode operator runs
        t1 = clock()
        for batch in batches:
            st.on_batch(batch.events, batch.receipts, INTERVAL_US)  # what HotPathFunction.process_element runs
        t2 = clock()
        latest = max((e.event_time_us for b in batches for e in b.events), default=0)
        next_boundary = next_boundary or (latest // INTERVAL_US + 1) * INTERVAL_US
        while latest and latest - 200_000 > next_boundary:  # the watermark trails by the out-of-orderness bound
            st.on_boundary(next_boundary, 0)
            next_boundary = st.following_timer(next_boundary, INTERVAL_US) or next_boundary + INTERVAL_US
        t3 = clock()
        cloudpickle.dumps(st)
        t4 = clock()
        spent["decode"] += t1 - t0
        spent["state"] += t2 - t1
        spent["boundaries"] += t3 - t2
        spent["pickle"] += t4 - t3
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--frames-per-record", type=int, default=200)
    args = parser.parse_args()
    capture = load_capture(DEFAULT_CAPTURE)
    records = records_of(capture.frames, args.frames_per_record)
    runs = [run_once(capture.snapshot, records) for _ in range(args.repeat)]
    n = len(capture.frames)
    per_frame = {part: round(statistics.median(r[part] for r in runs) / n * 1e6, 2) for part in runs[0]}
    total = round(statistics.median(sum(r.values()) for r in runs) / n * 1e6, 2)
    emit({"benchmark": "job_compute", "frames": n, "records": len(records), "repeat": args.repeat,
          "us_per_frame": per_frame, "total_us_per_frame": total, "one_core_frames_per_s": round(1e6 / total)})


if __name__ == "__main__":
    main()
