"""The platform's floor: the hot-path job's graph with the job's own work taken out.

Same source, same operators in the same places (a Python operator before ``key_by``, the
Python timestamp assigner, ``key_by(symbol)``, a keyed Python operator with ValueState
read and written per record, the Redis sink chained into it, one write per record), the
same configuration (``hot_path_job.job_configuration`` and ``configure``), fed the same
records by ``bench.throughput --floor``. What it leaves out is what makes it the hot
path: SBE decoding past the first frame's symbol, the order book, trade windows,
features, boundary timers, side outputs.

What it writes is the completion and freshness signal the benchmark reads: ``ob:{key}``
with ``last_update_id`` set to the number of frames the key has seen so far and the
receipt time of its newest frame (the sink stamps ``written_at_us``). So events/s of this
job and of the real one, fed alike in one run, tell how much of the cost per event is the
platform's and how much is the job's.

    python -m bench.floor_job          (the mini cluster; bench.throughput starts it)
"""

from __future__ import annotations

import time

from pyflink.common import Duration, Types, WatermarkStrategy
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import DataStream, KeyedProcessFunction, ProcessFunction, RuntimeContext, StreamExecutionEnvironment
from pyflink.datastream.state import ValueStateDescriptor

from btcpred.common.config import Settings
from btcpred.flink_jobs import hot_path_job
from btcpred.flink_jobs.hot_path_job import RedisSink
from btcpred.udfs import envelope, sbe
from btcpred.udfs import redis_schema as rs
from btcpred.udfs.redis_writes import RedisWrite, dead_letter_write

DEAD_LETTERS = "dead-letters"  # the key the few malformed records travel under


class FrameCount:
    """One record's frames, keyed by the symbol of its first frame: what crosses ``key_by``."""

    __slots__ = ("symbol", "frames", "last_receipt_us", "dead_letter")

    def __init__(self, symbol: str, frames: list[bytes], last_receipt_us: int, dead_letter: RedisWrite | None = None) -> None:
        self.symbol, self.frames, self.last_receipt_us, self.dead_letter = symbol, frames, last_receipt_us, dead_letter

    def __getstate__(self):
        return self.symbol, self.frames, self.last_receipt_us, self.dead_letter

    def __setstate__(self, state) -> None:
        self.symbol, self.frames, self.last_receipt_us, self.dead_letter = state


class ParseEnvelope(ProcessFunction):
    """The least any job must do with a record: unpack the envelope and learn whose it is."""

    def process_element(self, value: str, ctx: ProcessFunction.Context):
        try:
            envelopes = envelope.from_text(value)
        except envelope.EnvelopeError as exc:  # the harness's probe record: it must come back as a dead letter
            now_us = time.time_ns() // 1000
            yield FrameCount(DEAD_LETTERS, [], now_us, dead_letter_write(f"envelope: {exc}", value, now_us))
            return
        first = sbe.decode(envelopes[0].frame)
        yield FrameCount(first.symbol, [e.frame for e in envelopes], envelopes[-1].receipt_time_us)


class ReceiptTime(TimestampAssigner):
    def extract_timestamp(self, value: FrameCount, record_timestamp: int) -> int:
        return value.last_receipt_us // 1000


class CountFrames(KeyedProcessFunction):
    """ValueState read and written per record, one Redis write per record, as the hot path does."""

    def open(self, runtime_context: RuntimeContext) -> None:
        self.state = runtime_context.get_state(ValueStateDescriptor("frames-seen", Types.LONG()))

    def process_element(self, value: FrameCount, ctx: KeyedProcessFunction.Context):
        if value.dead_letter is not None:
            yield [value.dead_letter]
            return
        seen = (self.state.value() or 0) + len(value.frames)
        self.state.update(seen)
        yield [
            RedisWrite(
                "hash",
                rs.ob_key(value.symbol),
                {"last_update_id": str(seen)},
                receipt_time_us=value.last_receipt_us,
                version_field="last_update_id",
            )
        ]


def build(env: StreamExecutionEnvironment, settings: Settings, before_sink=None) -> None:
    cfg = settings.flink
    raw: DataStream = hot_path_job.kinesis_source(env, settings)
    parsed = raw.process(ParseEnvelope(), output_type=Types.PICKLED_BYTE_ARRAY()).name("Parse envelope")
    strategy = (
        WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(cfg.out_of_orderness_ms))
        .with_idleness(Duration.of_millis(cfg.idleness_ms))
        .with_timestamp_assigner(ReceiptTime())
    )
    timed = parsed.assign_timestamps_and_watermarks(strategy).name("Receipt-time watermarks")
    counted = (
        timed.key_by(lambda batch: batch.symbol, key_type=Types.STRING())
        .process(CountFrames(), output_type=Types.PICKLED_BYTE_ARRAY())
        .name("Count frames")
    )
    counted.process(RedisSink(settings.redis)).name("Redis hot state")


def main() -> None:
    hot_path_job.run(graph=build, job_name="btcusdt-platform-floor")


if __name__ == "__main__":
    from bench import floor_job  # the operators pickle by module name, never as __main__'s

    floor_job.main()
