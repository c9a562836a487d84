"""Backfill: the hot-path job graph over a time range of the S3 bronze SBE archive (bounded).

    btcpred backfill --stream NAME --from 2026-12-06T22:00 --to 2026-12-06T23:00 --out features.jsonl

The archive (``btcpred/reliability/sbe_archiver.py``) keeps every frame of the Kinesis stream with
its record's sequence number and receipt time. The backfill puts the records of the
range back together in stream order (the same aggregated envelopes the live job read),
feeds them through the very operators of the live job (``hot_path_job.build``: decode,
watermarks, keyed book/windows/features) from a bounded file source, and writes each
boundary's feature vector and trade windows (what the live job appends to
``feathist:``) as one JSON line instead of touching the live Redis keys. The range is
in receipt time, the time the archive is partitioned by; the book anchors on the first
in-band snapshot inside it, as the live job does.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from pyflink.common import WatermarkStrategy
from pyflink.datastream import DataStream, ProcessFunction, RuntimeContext, StreamExecutionEnvironment
from pyflink.datastream.connectors.file_system import FileSource, StreamFormat

from btcpred.adapters.bronze_archive import archived_records
from btcpred.adapters.lake import Lake
from btcpred.common import entry_point
from btcpred.common.config import Settings, load_settings
from btcpred.flink_jobs import hot_path_job, state_storage
from btcpred.udfs import redis_schema as rs
from btcpred.udfs.redis_writes import RedisWrite

log = logging.getLogger("backfill_job")


class FeatureLines(ProcessFunction):
    """Terminal operator: each boundary's ``feathist:`` entry as a JSON line in ``path``; nothing else."""

    def __init__(self, path: str, symbol: str) -> None:
        self.path = path
        self.history_key = rs.feat_history_key(symbol)

    def open(self, runtime_context: RuntimeContext) -> None:
        self.out = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.rows = runtime_context.get_metrics_group().counter("backfillRows")

    def close(self) -> None:
        self.out.close()

    def process_element(self, value, ctx: ProcessFunction.Context):
        for w in [value] if isinstance(value, RedisWrite) else value:
            if w.kind == "xadd" and w.key == self.history_key:
                self.out.write(json.dumps(w.fields) + "\n")
                self.rows.inc()
        self.out.flush()
        return iter(())


def run(settings: Settings, stream: str, start_us: int, end_us: int, out: Path, work_dir: Path) -> int:
    """Rebuild the range's features into ``out``; returns the number of records replayed."""
    records = archived_records(Lake(settings.s3), stream, settings.exchange.symbol, start_us, end_us)
    work_dir.mkdir(parents=True, exist_ok=True)
    source_file = work_dir / "records.txt"
    source_file.write_text("".join(r + "\n" for r in records))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("")
    settings = settings.model_copy(
        update={
            "flink": settings.flink.model_copy(
                update={"checkpoint_dir": str(work_dir / "checkpoints"), "savepoint_dir": None, "parallelism": 1}
            )
        }
    )
    os.environ.setdefault("AWS_CBOR_DISABLE", "true")
    env = StreamExecutionEnvironment.get_execution_environment(hot_path_job.job_configuration(settings))
    hot_path_job.configure(env, settings, jars=[])  # no Kinesis here: no connector jar
    file_source = FileSource.for_record_stream_format(StreamFormat.text_line_format(), source_file.as_uri()).build()
    source: DataStream = env.from_source(file_source, WatermarkStrategy.no_watermarks(), "Bronze archive").uid("bronze-source")

    def sink(writes: DataStream) -> None:
        writes.process(FeatureLines(str(out), settings.exchange.symbol)).name("Feature rows").uid("feature-rows")

    hot_path_job.build(env, settings, source=source, sink=sink)
    env.execute("btcusdt-bronze-backfill")
    return len(records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    entry_point.add_config(parser)
    parser.add_argument("--stream", default=None, help="archived stream name (default: kinesis.stream)")
    parser.add_argument(
        "--from",
        dest="start_us",
        type=entry_point.iso_time_us,
        required=True,
        help="receipt time, ISO 8601 (UTC without an offset)",
    )
    parser.add_argument(
        "--to", dest="end_us", type=entry_point.iso_time_us, required=True, help="receipt time, ISO 8601 (exclusive)"
    )
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one per boundary")
    parser.add_argument("--work-dir", type=Path, default=state_storage.REPO / ".local" / "backfill")
    args = parser.parse_args(argv)
    entry_point.setup_logging()
    settings = load_settings(args.config)
    count = run(settings, args.stream or settings.kinesis.stream, args.start_us, args.end_us, args.out, args.work_dir)
    rows = sum(1 for _ in args.out.open())
    print(json.dumps({"records": count, "boundaries": rows, "out": str(args.out)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
