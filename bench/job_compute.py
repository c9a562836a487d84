"""The hot path's Python work per frame, without Flink: the ceiling the job's capacity is measured against.

    python -m bench.job_compute [--repeat 5] [--frames-per-record 200] [--perp]

Runs what the job's Python operators do for every Kinesis record of the real spot
capture, in one process: envelope unpack, SBE decode (best bid/ask: the structure
check), ``SymbolState.on_batch`` (the state machine, one ``ob:`` write per record, the
coalesced write batch: the job's own call), a boundary cut every 500 ms of event time, and the keyed state
pickled with cloudpickle once per record (PyFlink commits it once per bundle; per
record is the pessimistic end). No Redis, no Beam, no JVM.

Prints one JSON line last: median µs per frame for each part and in all, and the
frames/s one core could sustain at that cost: what ``bench/throughput.py``'s
capacity (the job in Flink) is a fraction of.

``--perp`` measures, in the same run and alternating, spot alone and spot with the USD-M
capture of the same minutes as the perpetual's quotes (merged by receipt time, packed into
records apart from spot as the ingestor packs them): the cost of the cross-market features
per frame and per spot frame (the perpetual more than doubles the frames).
"""

from __future__ import annotations

import argparse
import statistics
import time

import cloudpickle

from bench.harness import emit
from bench.kinesis_feed import load_capture
from btcpred.adapters.loaders.base import merge_perp_quotes
from btcpred.adapters.loaders.hftbacktest_ws import HftbacktestWsLoader
from btcpred.common.config import FlinkJobConfig
from btcpred.ingest.ingestor import aggregate
from btcpred.udfs import envelope, sbe
from btcpred.udfs.events import DepthSnapshotEvent, PerpQuoteEvent
from btcpred.udfs.records import decode_record
from btcpred.udfs.symbol_state import SymbolState
from rig.pipeline import DEFAULT_CAPTURE, DEFAULT_PERP_CAPTURE

INTERVAL_US = FlinkJobConfig().emit_interval_ms * 1000  # the job's boundary grid
# the receipt every record is stamped with: our clock when the bench starts, after every event of the
# capture as a live receipt is (a receipt of 1 µs made every event "years ahead of its receipt": refused)
RECEIPT_US = time.time_ns() // 1000


def records_of(frames: list[bytes], per_record: int) -> list[str]:
    return [
        envelope.batch_to_text([envelope.Envelope(envelope.Source.WEBSOCKET, RECEIPT_US, f) for f in frames[i : i + per_record]])
        for i in range(0, len(frames), per_record)
    ]


def with_perp_records(spot_path, perp_path, per_record: int) -> tuple[list[str], int]:
    """Spot and perpetual frames merged by the captures' receipt times, cut into windows of
    ``per_record`` frames, each window packed as the ingestor packs a linger window."""
    spot = (c for c in HftbacktestWsLoader(spot_path).events() if not isinstance(c.event, DepthSnapshotEvent))
    merged = [
        (envelope.Source.PERP_QUOTE if type(c.event) is PerpQuoteEvent else envelope.Source.WEBSOCKET, sbe.encode(c.event))
        for c in merge_perp_quotes(spot, HftbacktestWsLoader(perp_path).events(), "BTCUSDT")
    ]
    records = []
    for i in range(0, len(merged), per_record):
        window = [("BTCUSDT", envelope.Envelope(source, RECEIPT_US, frame)) for source, frame in merged[i : i + per_record]]
        records += [r.data.decode() for r in aggregate(window, per_record)]
    return records, len(merged)


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
    parser.add_argument("--perp", action="store_true", help="also measure spot with the perpetual's quotes, alternating")
    args = parser.parse_args()
    capture = load_capture(DEFAULT_CAPTURE)
    records = records_of(capture.frames, args.frames_per_record)
    n = len(capture.frames)
    if not args.perp:
        runs = [run_once(capture.snapshot, records) for _ in range(args.repeat)]
        per_frame = {part: round(statistics.median(r[part] for r in runs) / n * 1e6, 2) for part in runs[0]}
        total = round(statistics.median(sum(r.values()) for r in runs) / n * 1e6, 2)
        emit(
            {
                "benchmark": "job_compute",
                "frames": n,
                "records": len(records),
                "repeat": args.repeat,
                "us_per_frame": per_frame,
                "total_us_per_frame": total,
                "one_core_frames_per_s": round(1e6 / total),
            }
        )
        return
    perp_records, n_perp = with_perp_records(DEFAULT_CAPTURE, DEFAULT_PERP_CAPTURE, args.frames_per_record)
    spot_s, both_s = [], []
    for _ in range(args.repeat):  # alternating, so drift of a noisy machine hits both alike
        spot_s.append(sum(run_once(capture.snapshot, records).values()))
        both_s.append(sum(run_once(capture.snapshot, perp_records).values()))
    spot_total, both_total = statistics.median(spot_s), statistics.median(both_s)
    emit(
        {
            "benchmark": "job_compute",
            "mode": "spot vs spot+perp",
            "repeat": args.repeat,
            "spot": {"frames": n, "records": len(records), "us_per_frame": round(spot_total / n * 1e6, 2)},
            "spot_perp": {
                "frames": n_perp,
                "records": len(perp_records),
                "us_per_frame": round(both_total / n_perp * 1e6, 2),
                "us_per_spot_frame": round(both_total / n * 1e6, 2),
            },
            "per_spot_frame_ratio": round(both_total / spot_total, 3),
        }
    )


if __name__ == "__main__":
    main()
