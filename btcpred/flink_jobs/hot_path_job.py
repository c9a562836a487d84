"""PyFlink hot path: Kinesis -> SBE decode -> event time -> keyed book/windows -> Redis.

Graph (stable uids so savepoints survive code changes)::

    kinesis-source -> decode-sbe --(dead letters)-------------------------------.
                        |                                                       |
                  event-time watermarks -> key_by(symbol) -> hot-path-state -> redis-writer
                                                                   |            |
                                   (gap, late, dead-letter side outputs) -> redis-side-writer

``decode-sbe`` only splits a record by symbol (``sbe.peek``: structure, symbol, event times);
the keyed operator decodes its frames after the shuffle, where decoded events never need to be
pickled (docs/hot_path.md).

Run locally in the mini cluster with ``python -m btcpred.flink_jobs.hot_path_job`` or
submit to a cluster with ``flink run -py btcpred/flink_jobs/hot_path_job.py``.
"""

from __future__ import annotations

import argparse
import logging
import os
import site
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pyflink.common import Configuration, Duration, Types, WatermarkStrategy
from pyflink.common.serialization import SimpleStringSchema
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import (
    CheckpointingMode,
    DataStream,
    KeyedProcessFunction,
    OutputTag,
    ProcessFunction,
    RuntimeContext,
    StreamExecutionEnvironment,
)
from pyflink.datastream.connectors.kinesis import FlinkKinesisConsumer
from pyflink.datastream.state import ValueStateDescriptor

from btcpred.adapters import redis as redis_store
from btcpred.common import entry_point
from btcpred.common.config import FlinkJobConfig, KinesisConfig, RedisConfig, Settings
from btcpred.flink_jobs import memory_probe, runtime_properties, state_storage
from btcpred.udfs.records import EVENT_TYPES, JointEventTime, RawBatch, decode_batch, split_record
from btcpred.udfs.redis_writes import RedisWrite
from btcpred.udfs.symbol_state import SymbolState

log = logging.getLogger("hot_path_job")


DEAD_LETTER_TAG = OutputTag("dead-letters", Types.PICKLED_BYTE_ARRAY())
GAP_TAG = OutputTag("sequence-gaps", Types.PICKLED_BYTE_ARRAY())
LATE_TAG = OutputTag("late-events", Types.PICKLED_BYTE_ARRAY())
NO_EVENT_TIME = 0  # REST snapshots carry no exchange time
END_OF_INPUT_WATERMARK = 2**63 - 1  # Long.MAX_VALUE: a bounded source (backfill) has ended


class CumulativeCount:
    """A count exported as a Flink gauge: PyFlink reports a Python counter to the JVM only once it
    is non-zero, so a job with no gap yet exported no gap series at all and an alert on it could
    never fire ("no data"). A gauge is there from the start, at 0; Prometheus sees the same
    monotone series either way (Flink exports counters as gauges too)."""

    def __init__(self, group, name: str) -> None:
        self.value = 0
        group.gauge(name, lambda: self.value)

    def inc(self, n: int = 1) -> None:
        self.value += n


class SymbolGauges:
    """One key's gauges, in a ``symbol`` key-value group (a ``symbol`` label in Prometheus, a
    ``symbol.<name>`` branch in the web UI). The operator-wide gauges above show whichever key a
    subtask handled last; with several symbols on a subtask only these tell them apart. Made on a
    key's first record: PyFlink ships each gauge's value to the JVM with every bundle, and the JVM
    registers a name the first time it arrives."""

    NAMES = ("lastBookUpdateId", "bookLevels", "bookValid", "sequenceGaps", "featureEmitLagMs", "stateEntries", "lateBookEvents")

    def __init__(self, group, symbol: str) -> None:
        self.values = dict.fromkeys(self.NAMES, 0)
        keyed = group.add_group("symbol", symbol)
        for name in self.NAMES:
            keyed.gauge(name, lambda name=name: self.values[name])

    def read(self, st: SymbolState) -> None:
        book = st.sync.book
        if book is not None:
            self.values["lastBookUpdateId"] = book.last_update_id
            self.values["bookLevels"] = len(book.bids) + len(book.asks)
        self.values["bookValid"] = int(book is not None and st.sync.valid)
        self.values["stateEntries"] = st.entries()
        self.values["lateBookEvents"] = st.late_book_events


class DecodeRecord(ProcessFunction):
    """Kinesis text record -> a RawBatch per symbol (``split_record``); a malformed record or frame
    goes to the dead-letter output. Decoding proper happens after ``key_by``."""

    def __init__(self, max_event_time_lead_ms: int) -> None:  # exchange.max_event_time_lead_ms
        self.max_lead_us = max_event_time_lead_ms * 1000

    def open(self, runtime_context: RuntimeContext) -> None:
        self.dead_letters = CumulativeCount(runtime_context.get_metrics_group(), "deadLetters")

    def process_element(self, value: str, ctx: ProcessFunction.Context):
        record = split_record(value, time.time_ns() // 1000, self.max_lead_us)
        if record.dead_letters:
            self.dead_letters.inc(len(record.dead_letters))
            for write in record.dead_letters:
                yield DEAD_LETTER_TAG, write
        yield from record.batches


class EventTimeAssigner(TimestampAssigner):
    """Records stamped by ``JointEventTime``: the watermark waits for the slower exchange connection."""

    def __init__(self) -> None:
        self.joint = JointEventTime()

    def extract_timestamp(self, value: RawBatch, record_timestamp: int) -> int:
        return self.joint.stamp(value, time.monotonic()) or NO_EVENT_TIME


class HotPathFunction(KeyedProcessFunction):
    def __init__(self, emit_interval_ms: int, max_event_time_lead_ms: int) -> None:
        self.emit_interval_ms = emit_interval_ms
        self.max_lead_us = max_event_time_lead_ms * 1000

    def open(self, runtime_context: RuntimeContext) -> None:
        memory_probe.start_if_asked()  # soaks only (PYFLINK_MEMORY_PROBE_DIR)
        self.state = runtime_context.get_state(ValueStateDescriptor("symbol-state", Types.PICKLED_BYTE_ARRAY()))
        group = runtime_context.get_metrics_group()
        self.decoded = {name: group.add_group("eventType", name).counter("eventsIn") for name in EVENT_TYPES}
        self.counts = dict.fromkeys(EVENT_TYPES, 0)
        self.dead_letters = CumulativeCount(group, "deadLetters")
        self.gaps = CumulativeCount(group, "sequenceGaps")
        self.late = CumulativeCount(group, "lateEvents")
        self.last_update_id = 0
        self.book_levels = 0
        self.stale_diffs = 0
        self.stale_quotes = 0
        self.stale_perp_quotes = 0
        self.drift_levels = 0
        self.emit_lag_ms = 0
        self.boundaries_skipped = 0
        self.refused = {
            "rejectedEvents": 0,
            "duplicateTrades": 0,
            "failedCuts": 0,
            "crossedBooks": 0,
            "cappedEntries": 0,
            "stateEntries": 0,
        }
        for name in self.refused:  # read off the key's state after each record (SymbolState's counters)
            group.gauge(name, lambda name=name: self.refused[name])
        group.gauge("boundariesSkipped", lambda: self.boundaries_skipped)
        group.gauge("lastBookUpdateId", lambda: self.last_update_id)
        group.gauge("bookLevels", lambda: self.book_levels)
        group.gauge("staleDiffs", lambda: self.stale_diffs)
        group.gauge("staleQuotes", lambda: self.stale_quotes)  # best bid/ask updates older than the newest, dropped
        group.gauge("stalePerpQuotes", lambda: self.stale_perp_quotes)  # the same for the leading perpetual
        group.gauge("bookDriftLevels", lambda: self.drift_levels)  # mismatched levels at the last drift check
        group.gauge("featureEmitLagMs", lambda: self.emit_lag_ms)
        self.group = group
        self.by_symbol: dict[str, SymbolGauges] = {}

    def _symbol_gauges(self, symbol: str) -> SymbolGauges:
        gauges = self.by_symbol.get(symbol)
        if gauges is None:
            gauges = self.by_symbol[symbol] = SymbolGauges(self.group, symbol)
        return gauges

    def _load(self, symbol: str) -> SymbolState:
        current = self.state.value()
        return current if current is not None else SymbolState(symbol)

    def process_element(self, value: RawBatch, ctx: KeyedProcessFunction.Context):
        counts = self.counts
        batch, dead = decode_batch(value, time.time_ns() // 1000, counts)
        for name, count in counts.items():
            if count:
                self.decoded[name].inc(count)
                counts[name] = 0
        if dead:
            self.dead_letters.inc(len(dead))
            for write in dead:
                yield DEAD_LETTER_TAG, write
        st = self._load(value.symbol)
        result = st.on_batch(batch.events, batch.receipts, self.emit_interval_ms * 1000, self.max_lead_us)
        if result.dead_writes:
            self.dead_letters.inc(len(result.dead_writes))
            for write in result.dead_writes:
                yield DEAD_LETTER_TAG, write
        for boundary_us in result.timers:
            ctx.timer_service().register_event_time_timer(boundary_us // 1000)
        gauges = self._symbol_gauges(value.symbol)
        for write in result.gap_writes:
            self.gaps.inc()
            gauges.values["sequenceGaps"] += 1
            yield GAP_TAG, write
        for write in result.late_writes:
            self.late.inc()
            yield LATE_TAG, write
        book = st.sync.book
        if book is not None:
            self.last_update_id = book.last_update_id
            self.book_levels = len(book.bids) + len(book.asks)
        self.stale_diffs = st.stale_diffs
        self.stale_quotes = st.stale_quotes
        self.stale_perp_quotes = st.stale_perp_quotes
        if st.sync.last_drift is not None:
            self.drift_levels = st.sync.last_drift.levels_mismatched
        self._read_counters(st)
        gauges.read(st)
        if result.changed:
            self.state.update(st)
        if result.writes:
            yield result.writes

    def _read_counters(self, st: SymbolState) -> None:
        self.refused.update(
            rejectedEvents=st.rejected_events,
            duplicateTrades=st.duplicate_trades,
            failedCuts=st.failed_cuts,
            crossedBooks=st.crossed_books,
            cappedEntries=st.capped_entries,
            stateEntries=st.entries(),
        )

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        st = self._load(ctx.get_current_key())
        now_us = time.time_ns() // 1000
        writes = st.on_boundary(timestamp * 1000, now_us, self.emit_interval_ms * 1000)
        self.boundaries_skipped = st.boundaries_skipped
        self._read_counters(st)
        self.emit_lag_ms = now_us // 1000 - timestamp  # wall minus event time: replay offset + pipeline lag
        gauges = self._symbol_gauges(st.symbol)
        gauges.values["featureEmitLagMs"] = self.emit_lag_ms
        gauges.read(st)
        if ctx.timer_service().current_watermark() < END_OF_INPUT_WATERMARK:  # a bounded input ends the chain
            following = st.following_timer(timestamp * 1000, self.emit_interval_ms * 1000)
            if following is not None:  # also cuts through a quiet stretch
                ctx.timer_service().register_event_time_timer(following // 1000)
        self.state.update(st)
        if writes:
            yield writes


class RedisSink(ProcessFunction):
    """Terminal operator: applies write batches to Redis."""

    def __init__(self, redis: RedisConfig) -> None:
        self.redis = redis  # pickled into the job graph with its secrets resolved: never logged

    def open(self, runtime_context: RuntimeContext) -> None:
        self.client = redis_store.connect_writer(self.redis, "hotpath")
        group = runtime_context.get_metrics_group()
        self.batches = group.counter("redisWriteBatches")
        self.write_latency_us = group.distribution("redisWriteLatencyUs")

    def close(self) -> None:
        self.client.close()

    def process_element(self, value, ctx: ProcessFunction.Context):
        writes = [value] if isinstance(value, RedisWrite) else value
        started = time.perf_counter_ns()
        redis_store.execute(self.client, writes)
        self.write_latency_us.update((time.perf_counter_ns() - started) // 1000)
        self.batches.inc()
        return iter(())


def kinesis_properties(k: KinesisConfig, flink: FlinkJobConfig) -> dict[str, str]:
    props = {
        "aws.region": k.region,
        "flink.stream.initpos": flink.start_position,  # only without state: a savepoint's positions win
        "flink.shard.getrecords.intervalmillis": str(flink.getrecords_interval_ms),
        "flink.shard.discovery.intervalmillis": "10000",
        # ride out a short endpoint outage inside the consumer instead of failing over the job
        "flink.shard.getrecords.maxretries": "20",
        "flink.shard.getrecords.backoff.base": "100",
        "flink.shard.getrecords.backoff.max": "1000",
        "flink.shard.getiterator.maxretries": "20",
        "flink.list.shards.maxretries": "20",
    }
    if flink.start_at is not None:  # the connector reads seconds since the epoch
        props["flink.stream.initpos.timestamp"] = f"{flink.start_at.timestamp():.3f}"
    if k.endpoint:
        props.update(
            {
                "aws.endpoint": k.endpoint,
                "aws.credentials.provider": "BASIC",
                "aws.credentials.provider.basic.accesskeyid": k.access_key_id.get_secret_value(),
                "aws.credentials.provider.basic.secretkey": k.secret_access_key.get_secret_value(),
            }
        )
    return props


def kinesis_source(env: StreamExecutionEnvironment, settings: Settings) -> DataStream:
    consumer = FlinkKinesisConsumer(
        settings.kinesis.stream, SimpleStringSchema(), kinesis_properties(settings.kinesis, settings.flink)
    )
    return env.add_source(consumer).name("Kinesis market data").uid("kinesis-source")


def build(
    env: StreamExecutionEnvironment,
    settings: Settings,
    source: DataStream | None = None,
    sink: Callable[[DataStream], object] | None = None,
    before_sink: Callable[[DataStream], DataStream] | None = None,
) -> None:
    """The hot-path graph. ``source`` defaults to Kinesis (a bounded bronze source for backfills),
    ``sink`` to Redis; ``before_sink`` lets a newer job version insert operators (uids keep state)."""
    cfg = settings.flink
    raw = source if source is not None else kinesis_source(env, settings)
    decoded = (
        raw.process(DecodeRecord(settings.exchange.max_event_time_lead_ms), output_type=Types.PICKLED_BYTE_ARRAY())
        .name("Decode SBE")
        .uid("decode-sbe")
    )
    strategy = (
        WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(cfg.out_of_orderness_ms))
        .with_idleness(Duration.of_millis(cfg.idleness_ms))  # before the assigner: it would drop it
        .with_timestamp_assigner(EventTimeAssigner())
    )
    timed = decoded.assign_timestamps_and_watermarks(strategy).name("Event-time watermarks").uid("watermarks")
    state = (
        timed.key_by(lambda batch: batch.symbol, key_type=Types.STRING())
        .process(
            HotPathFunction(cfg.emit_interval_ms, settings.exchange.max_event_time_lead_ms),
            output_type=Types.PICKLED_BYTE_ARRAY(),
        )
        .name("Order book, trade windows, features")
        .uid("hot-path-state")
    )
    # The hot state's writes reach their sink by a forward edge of one input, so PyFlink chains
    # the sink into the state operator's Python bundle; a union of four inputs would make it a
    # task of its own, every write batch crossing to the JVM and back (measured: docs/hot_path.md).
    side = state.get_side_output(GAP_TAG).union(
        state.get_side_output(LATE_TAG), decoded.get_side_output(DEAD_LETTER_TAG), state.get_side_output(DEAD_LETTER_TAG)
    )
    writes = before_sink(state) if before_sink is not None else state
    if sink is not None:
        sink(writes.union(side))
    else:
        writes.process(RedisSink(settings.redis)).name("Redis hot state").uid("redis-writer")
        side.process(RedisSink(settings.redis)).name("Redis side outputs").uid("redis-side-writer")


def job_configuration(settings: Settings, managed: bool = False) -> Configuration:
    """Options that must be set before the environment exists.

    On Managed Flink the service owns state, checkpoints and restarts: only the
    pipeline's own latency options are set there.
    """
    cfg = settings.flink
    conf = Configuration()
    if not managed:
        for key, value in {
            **state_storage.state_options(settings.flink),
            **state_storage.metrics_options(settings.flink),
        }.items():
            conf.set_string(key, value)
    conf.set_string("python.fn-execution.bundle.size", str(cfg.bundle_size))
    conf.set_string("python.fn-execution.bundle.time", str(cfg.bundle_time_ms))
    conf.set_string("pipeline.auto-watermark-interval", "100ms")
    conf.set_string("python.execution-mode", cfg.execution_mode)
    conf.set_string("execution.buffer-timeout.interval", f"{cfg.buffer_timeout_ms}ms")
    if not managed:
        conf.set_string("restart-strategy.type", "fixed-delay")
        conf.set_string("restart-strategy.fixed-delay.attempts", str(cfg.restart_attempts))
        conf.set_string("restart-strategy.fixed-delay.delay", f"{cfg.restart_delay_ms}ms")
    return conf


def configure(env: StreamExecutionEnvironment, settings: Settings, jars: list[Path] | None = None, managed: bool = False) -> None:
    """Parallelism, checkpointing and the connector jar (``jars``; none on Managed Flink, which adds its own)."""
    cfg = settings.flink
    env.set_parallelism(cfg.parallelism)
    env.set_buffer_timeout(cfg.buffer_timeout_ms)
    if not managed:  # Managed Flink: checkpointing is the application's CheckpointConfiguration
        env.enable_checkpointing(cfg.checkpoint_interval_ms, CheckpointingMode.EXACTLY_ONCE)
        # storage, retention and backend come with job_configuration (state_storage.state_options)
        checkpoints = env.get_checkpoint_config()
        checkpoints.set_min_pause_between_checkpoints(min(1000, cfg.checkpoint_interval_ms))
        checkpoints.set_checkpoint_timeout(cfg.checkpoint_timeout_ms)
        checkpoints.set_tolerable_checkpoint_failure_number(cfg.tolerable_checkpoint_failures)
        env.set_python_executable(sys.executable)
    for jar in jars if jars is not None else [state_storage.CONNECTOR_JAR]:
        if not jar.is_file():
            raise state_storage.MissingSetup(f"{jar} missing: run scripts/setup.sh (mvn package in deploy/flink)")
        env.add_jars(jar.as_uri())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="BTCUSDT hot-path Flink job")
    entry_point.add_config(parser)
    parser.add_argument(
        "--properties", default=None, help="application properties JSON (Managed Flink's format; there it is read by default)"
    )
    args, _ = parser.parse_known_args(argv)
    return args


def run(
    argv: list[str] | None = None,
    jars: list[Path] | None = None,
    python_files: list[Path] | None = None,
    before_sink: Callable[[DataStream], DataStream] | None = None,
    job_name: str = "btcusdt-hot-path",
    graph: Callable[..., None] = build,
) -> None:
    """Entry point shared by this module, the Managed Flink package's main.py and newer job versions
    (``graph``: another graph on the same environment, the throughput bench's platform floor)."""
    args = parse_args(argv)
    entry_point.setup_logging()
    properties = runtime_properties.properties_file(args.properties)
    managed = runtime_properties.on_managed_flink(properties)
    settings = runtime_properties.job_settings(args.config, properties)
    os.environ.setdefault("AWS_CBOR_DISABLE", "true")  # emulators do not speak CBOR
    if not managed and "FLINK_HOME" not in os.environ:  # the mini cluster: its classpath, with the reporter
        os.environ.update(state_storage.mini_cluster_environment(settings.flink, os.environ, state_storage.jemalloc_installed()))
    if not managed and settings.flink.execution_mode == "thread":
        # thread mode embeds CPython in the JVM (PEMJA); it starts from the base interpreter, which
        # does not see a virtualenv's packages ("No module named 'pemja'"): hand them over by path
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), *site.getsitepackages()]))
    env = StreamExecutionEnvironment.get_execution_environment(job_configuration(settings, managed))
    if not managed:
        state_storage.initialize_mini_cluster_filesystems(settings)
    if managed or not settings.flink.ship_connector_jar:
        jars = []
    configure(env, settings, jars=jars, managed=managed)
    for path in python_files or []:  # on the Python workers' path (Managed Flink: the pyFiles run option)
        env.add_python_file(str(path))
    graph(env, settings, before_sink=before_sink)
    env.execute(job_name)


def main(argv: list[str] | None = None) -> int:
    try:
        run(argv)
    except state_storage.MissingSetup as exc:
        logging.getLogger(__name__).error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
