"""Every raw SBE frame of the market-data stream to ``bronze/sbe/{symbol}/year=/month=/day=/hour=/``.

A separate Kinesis consumer rather than a sink in the Flink job: the archive
must not slow or fail the hot path, must hold frames the job rejects too, and
stays replayable with the job stopped. No loss, no duplicates:

* the position is a checkpoint per shard in S3, written only after the objects
  holding every frame up to it are written (a crash re-reads, never skips);
* objects are named ``{stream}.{shard}-{first sequence}.parquet``; an object whose first
  sequence is beyond the checkpoint was written by a run that died before
  checkpointing, so a starting archiver deletes those first and re-reads their
  records from the checkpoint: each frame ends up in exactly one object;
* one archiver per shard: a lease in S3 taken and renewed by conditional writes
  (``shard_lease.py``), so two instances never delete each other's uncommitted objects;
* a shard's first run writes its checkpoint before any object (an *origin*, at no sequence
  yet), so "no checkpoint" only ever means "never archived". Objects without any checkpoint
  are someone else's or the remains of a deleted checkpoint: the archiver refuses to start the
  shard rather than delete them (``--discard-uncheckpointed`` is the operator's explicit
  bootstrap). Only a definite 404 reads as "no checkpoint"; a 403 or 503 fails the attempt
  (retried, counted, /health red). A 403 used to read as "no checkpoint" and deleted the
  shard's whole archive (issue 28).

Rows: one per frame (``shard_id``, ``sequence_number``, ``frame_index`` within the
record, ``receipt_time_us``, ``source``, ``template_id``, ``frame``); a record that
is not a valid envelope is kept whole with ``template_id = -1``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import socket
import struct
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import boto3
import pyarrow as pa
from botocore.exceptions import BotoCoreError
from prometheus_client import Counter, Gauge
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_fixed

from btcpred.adapters.lake import Lake
from btcpred.common import entry_point
from btcpred.common.config import Settings, aws_client_kwargs, load_settings
from btcpred.common.service import failing_health, record_failure, serve_health_in_thread, supervise_blocking
from btcpred.reliability.shard_lease import LeaseHeld, ShardLease
from btcpred.udfs import envelope
from btcpred.udfs import lake_layout as layout

log = logging.getLogger("sbe_archiver")

DEFAULT_METRICS_PORT = 9104
FRAMES = Counter("sbe_archiver_frames_total", "Frames archived", ["kind"])
OBJECTS = Counter("sbe_archiver_objects_total", "Parquet objects written")
READ_ERRORS = Counter("sbe_archiver_read_errors_total", "GetRecords calls that failed (retried)")
READ_RETRY_S = 0.5
SYMBOL_KEY = re.compile(r"[A-Z0-9][A-Z0-9_-]{0,31}")
BEHIND_MS = Gauge("sbe_archiver_millis_behind_latest", "Kinesis MillisBehindLatest of the last read", ["shard"])
TASK_FAILURES = Counter("sbe_archiver_task_failures_total", "Exceptions a shard's archiving loop survived", ["shard"])
DISCARDED = Counter(
    "sbe_archiver_discarded_objects_total",
    "Objects deleted at a shard's start because they hold records after its checkpoint "
    "(a crash between write and checkpoint; their records are read again)",
    ["shard"],
)
SHARDS = Gauge("sbe_archiver_shards", "Shards the archiver has started a loop for (rediscovered after a reshard)")
STANDBY = Gauge("sbe_archiver_standby_shards", "Shards whose lease another archiver holds: this one waits, healthy")
CAUGHT_UP = Gauge(
    "sbe_archiver_caught_up_timestamp_seconds",
    "When the last read that reached the shard's tip was asked: every record put before then is read "
    "(and written at the next flush)",
    ["shard"],
)


class CheckpointError(RuntimeError):
    """A shard's checkpoint cannot be trusted: unreadable, malformed, or missing beside objects."""


def frames_of(data: bytes, arrival_us: int) -> list[tuple[int, int, int, int, bytes]]:
    """(frame index, receipt time, source, template id, frame) of one Kinesis record."""
    try:
        envelopes = envelope.from_text(data.decode("ascii"))
    except (envelope.EnvelopeError, UnicodeDecodeError):
        return [(0, arrival_us, -1, -1, data)]
    rows = []
    for i, env in enumerate(envelopes):
        template = struct.unpack_from("<H", env.frame, 2)[0] if len(env.frame) >= 4 else -1
        rows.append((i, env.receipt_time_us, int(env.source), template, env.frame))
    return rows


def symbol_of(record: dict, default: str) -> str:
    """A record's symbol: its partition key (the ingestor keys each record by its symbol), if it is
    one that can name a folder; a record without one is kept under ``default``, never dropped."""
    key = record.get("PartitionKey") or ""
    return key if SYMBOL_KEY.fullmatch(key) else default


@dataclass
class ShardBuffer:
    first_sequence: str | None = None
    last_sequence: str | None = None
    rows: dict[tuple[str, int], list[tuple]] = field(
        default_factory=lambda: defaultdict(list)
    )  # (symbol, receipt hour µs) -> rows
    count: int = 0


class SbeArchiver:
    def __init__(
        self,
        settings: Settings,
        kinesis=None,
        lake: Lake | None = None,
        flush_rows: int = 200_000,
        flush_interval_s: float = 60.0,
        records_per_call: int = 10_000,
        discard_uncheckpointed: bool = False,
        shard_discovery_s: float = 60.0,
        lease_ttl_s: float = 120.0,
    ) -> None:
        self.records_per_call = records_per_call
        self.owner = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"  # this process, in each shard's lease
        self.lease_ttl_s = lease_ttl_s
        self.leases: dict[str, ShardLease] = {}
        self.discard_uncheckpointed = discard_uncheckpointed  # the operator's explicit bootstrap (see the module doc)
        self.shard_discovery_s = shard_discovery_s
        self.settings = settings
        self.stream = settings.kinesis.stream
        self.symbols = settings.exchange.carried  # each record's partition key says whose it is
        self.kinesis = kinesis or boto3.client("kinesis", **aws_client_kwargs(settings.kinesis))
        self.lake = lake or Lake(settings.s3)
        self.flush_rows = flush_rows
        self.flush_interval_s = flush_interval_s
        self.stopping = False  # set by SIGTERM: flush, checkpoint, return
        self.failing: dict[str, str] = {}  # shard -> its last error while it is down (/health 503)
        self.reading: set[str] = set()  # shards whose loop is running (/ready)
        self.standby: set[str] = set()  # shards another archiver holds the lease of: we wait, this is no failure

    def object_prefix(self, shard_id: str) -> str:
        return layout.sbe_object_prefix(self.stream, shard_id)

    def checkpoint_key(self, shard_id: str) -> str:
        return layout.sbe_checkpoint_key(self.stream, shard_id)

    def checkpoint(self, shard_id: str) -> str | None:
        """The last sequence number archived; None before the first (an origin checkpoint, or none).
        A storage error raises: it is never "no checkpoint"."""
        doc = self._read_checkpoint(shard_id)
        return None if doc is None else doc["sequence_number"]

    def _read_checkpoint(self, shard_id: str) -> dict | None:
        """The checkpoint document, None only when S3 says there is none; a malformed one raises."""
        key = self.checkpoint_key(shard_id)
        raw = self.lake.get_bytes_if_present(key)
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
            seq = doc["sequence_number"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{key} is not a checkpoint ({exc}): refusing to guess a position") from None
        if seq is not None and not (isinstance(seq, str) and seq.isdigit()):
            raise CheckpointError(f"{key} holds sequence number {seq!r}: refusing to guess a position")
        return doc

    def _write_checkpoint(self, shard_id: str, sequence_number: str | None) -> None:
        self.lake.put_bytes(
            self.checkpoint_key(shard_id), json.dumps({"sequence_number": sequence_number, "at": time.time()}).encode()
        )

    def shard_objects(self, shard_id: str) -> list[tuple[str, int]]:
        """(key, first sequence) of every object this stream's shard wrote, under the carried symbols."""
        prefix = self.object_prefix(shard_id)
        found = []
        for key in (k for symbol in self.symbols for k in self.lake.keys(layout.sbe_symbol_prefix(symbol))):
            name = key.rsplit("/", 1)[-1]
            if name.startswith(prefix) and name.endswith(".parquet") and name[len(prefix) : -len(".parquet")].isdigit():
                found.append((key, int(name[len(prefix) : -len(".parquet")])))
        return found

    def discard_uncommitted(self, shard_id: str) -> int:
        """Delete objects holding records after the checkpoint (a crash between write and
        checkpoint); a shard never archived gets its origin checkpoint first.

        Objects with no checkpoint at all are refused (``CheckpointError``) unless the archiver was
        started with ``discard_uncheckpointed``: deleting them is an operator's decision."""
        doc = self._read_checkpoint(shard_id)
        objects = self.shard_objects(shard_id)
        if doc is None:
            if objects and not self.discard_uncheckpointed:
                raise CheckpointError(
                    f"{len(objects)} archived objects of {shard_id} but no checkpoint at "
                    f"{self.checkpoint_key(shard_id)}: refusing to delete them. Restore the checkpoint, or start "
                    "the archiver once with --discard-uncheckpointed to re-archive the shard from Kinesis"
                )
            committed = -1
        else:
            committed = int(doc["sequence_number"]) if doc["sequence_number"] else -1
        stale = [key for key, first in objects if first > committed]
        for key in stale:
            self.lake.delete(key)
            DISCARDED.labels(shard_id).inc()
        if stale:
            log.warning(
                "discarded %d uncommitted objects of %s (written after checkpoint %s)",
                len(stale),
                shard_id,
                committed if committed >= 0 else "origin",
            )
        if doc is None:
            self._write_checkpoint(shard_id, None)  # the origin: from now on, objects always have a checkpoint
        return len(stale)

    def _iterator(self, shard_id: str) -> str:
        seq = self.checkpoint(shard_id)
        kwargs = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": seq}
            if seq
            else {"ShardIteratorType": "TRIM_HORIZON"}
        )
        return self.kinesis.get_shard_iterator(StreamName=self.stream, ShardId=shard_id, **kwargs)["ShardIterator"]

    def flush(self, shard_id: str, buf: ShardBuffer, write_checkpoint: bool = True) -> int:
        """Objects first, checkpoint second, both under the shard's lease; returns frames written."""
        if buf.first_sequence is None:
            return 0
        if shard_id in self.leases:
            self.leases[shard_id].renew(force=True)  # LeaseLost: another archiver has the shard, write nothing
        written = 0
        for (symbol, hour_us), rows in buf.rows.items():
            first_seq = min((r[2] for r in rows), key=int)
            cols = list(zip(*rows))
            table = pa.table([pa.array(c, t.type) for c, t in zip(cols, layout.SBE_SCHEMA)], schema=layout.SBE_SCHEMA)
            self.lake.put_table(layout.sbe_object_key(symbol, hour_us, self.stream, shard_id, first_seq), table)
            OBJECTS.inc()
            written += table.num_rows
        if write_checkpoint:
            self._write_checkpoint(shard_id, buf.last_sequence)
        return written

    def _get_records(self, iterator: str) -> dict | None:
        """One GetRecords, retried on the same iterator while the endpoint is unreachable (tenacity,
        every 0.5 s, each failure counted); None once the archiver is stopping."""

        def failed(state: RetryCallState) -> None:
            READ_ERRORS.inc()
            log.warning("GetRecords failed, retrying: %s", state.outcome.exception())

        try:
            for attempt in Retrying(
                retry=retry_if_exception_type(BotoCoreError),
                wait=wait_fixed(READ_RETRY_S),
                stop=lambda _: self.stopping,
                before_sleep=failed,
                reraise=True,
            ):
                with attempt:
                    return self.kinesis.get_records(ShardIterator=iterator, Limit=self.records_per_call)
        except BotoCoreError:
            if not self.stopping:
                raise
        return None

    def run_shard(self, shard_id: str, stop_after_idle_s: float | None = None) -> int:
        """Archive one shard; with ``stop_after_idle_s``, return once the shard has been quiet that long.
        Only under the shard's lease (``shard_lease``): a second archiver on it waits (``LeaseHeld``)."""
        lease = ShardLease(self.lake, layout.sbe_lease_key(self.stream, shard_id), self.owner, self.lease_ttl_s)
        lease.acquire()
        self.standby.discard(shard_id)  # ours now: no longer standing by
        STANDBY.set(len(self.standby))
        self.leases[shard_id] = lease
        try:
            return self._archive_shard(shard_id, stop_after_idle_s)
        finally:  # ended or failed, this attempt writes no more: the next one (ours or another's) needn't wait
            self.leases.pop(shard_id, None)
            try:
                lease.release()  # conditional: a lease taken over meanwhile is left to its new owner
            except Exception as exc:  # noqa: BLE001 - S3 down: the lease expires by itself
                log.warning("could not release the lease of %s (it expires in %.0f s): %s", shard_id, self.lease_ttl_s, exc)

    def _archive_shard(self, shard_id: str, stop_after_idle_s: float | None) -> int:
        lease = self.leases[shard_id]
        self.discard_uncommitted(shard_id)
        iterator = self._iterator(shard_id)
        buf, started, idle_since, total = ShardBuffer(), time.monotonic(), None, 0
        while iterator and not self.stopping:
            lease.renew()  # every third of its TTL
            asked_at = time.time()
            resp = self._get_records(iterator)
            if resp is None:  # stopping while the endpoint was down: flush what was read, checkpoint it
                break
            iterator = resp.get("NextShardIterator")
            BEHIND_MS.labels(shard_id).set(resp.get("MillisBehindLatest", 0))
            now_us = time.time_ns() // 1000
            for record in resp["Records"]:
                seq = record["SequenceNumber"]
                buf.first_sequence = buf.first_sequence or seq
                buf.last_sequence = seq
                symbol = symbol_of(record, self.symbols[0])
                for index, receipt_us, source, template, frame in frames_of(record["Data"], now_us):
                    buf.rows[symbol, receipt_us // layout.HOUR_US * layout.HOUR_US].append(
                        (symbol, shard_id, seq, index, receipt_us, source, template, frame)
                    )
                    buf.count += 1
                    FRAMES.labels("raw_record" if template == -1 else "frame").inc()
            if buf.count >= self.flush_rows or (buf.count and time.monotonic() - started >= self.flush_interval_s):
                total += self.flush(shard_id, buf)
                buf, started = ShardBuffer(), time.monotonic()
            if not resp.get("MillisBehindLatest") and len(resp["Records"]) < self.records_per_call:
                CAUGHT_UP.labels(shard_id).set(asked_at)  # a full page may have more behind it, whatever the lag says
            if resp["Records"]:
                idle_since = None
            else:
                idle_since = idle_since or time.monotonic()
                if stop_after_idle_s is not None and time.monotonic() - idle_since >= stop_after_idle_s:
                    break
                time.sleep(0.2)
        total += self.flush(shard_id, buf)
        return total

    def shards(self) -> list[str]:
        """Every shard of the stream, open or closed (a closed one is read to its end), all pages."""
        page = self.kinesis.list_shards(StreamName=self.stream)
        found = [s["ShardId"] for s in page["Shards"]]
        while page.get("NextToken"):
            page = self.kinesis.list_shards(NextToken=page["NextToken"])
            found += [s["ShardId"] for s in page["Shards"]]
        return found

    def run(self, stop_after_idle_s: float | None = None, max_backoff_s: float = 30.0) -> int:
        """Archive every shard of the stream, one thread each (checkpoints and objects are per
        shard, so shards never share a buffer). A shard's loop that raises is logged, counted and
        restarted from its checkpoint with back-off; with ``stop_after_idle_s`` each runs once."""
        totals: dict[str, int] = {}

        def archive(shard_id: str) -> None:
            TASK_FAILURES.labels(shard_id)  # exported at 0 from the start: an alert's increase() has a baseline
            DISCARDED.labels(shard_id)

            def once() -> int:
                self.reading.add(shard_id)
                try:
                    return self.run_shard(shard_id, stop_after_idle_s)
                finally:
                    self.reading.discard(shard_id)

            def as_standby() -> int:
                """``once``, but a lease another archiver holds is waited for, not failed on: a standby is
                healthy (green /health, no task failure), and takes over once the lease expires."""
                while not self.stopping:
                    try:
                        total = once()
                    except LeaseHeld as exc:
                        if shard_id not in self.standby:
                            log.info("shard %s: standing by (%s)", shard_id, exc)
                        self.standby.add(shard_id)
                        STANDBY.set(len(self.standby))
                        deadline = time.monotonic() + self.lease_ttl_s / 4
                        while not self.stopping and time.monotonic() < deadline:
                            time.sleep(0.2)
                        continue
                    return total
                return 0

            if stop_after_idle_s is not None:  # one pass (backfills, tests): a failure is the caller's
                try:
                    totals[shard_id] = once()
                except Exception as exc:
                    record_failure(TASK_FAILURES, self.failing, shard_id, exc)
                    raise
                return
            # the checkpoint makes a restart lose nothing
            totals[shard_id] = (
                supervise_blocking(
                    shard_id, as_standby, TASK_FAILURES, self.failing, lambda: self.stopping, max_backoff_s=max_backoff_s
                )
                or 0
            )

        threads: dict[str, threading.Thread] = {}

        def start_new_shards(shard_ids: list[str]) -> None:
            for shard in shard_ids:
                if shard not in threads:
                    threads[shard] = threading.Thread(target=archive, args=(shard,), name=f"archive-{shard}", daemon=True)
                    threads[shard].start()
            SHARDS.set(len(threads))

        start_new_shards(self.shards())
        if stop_after_idle_s is None:  # a reshard closes shards and opens new ones: look again now and then
            next_look = time.monotonic() + self.shard_discovery_s
            while not self.stopping:
                time.sleep(0.2)
                if time.monotonic() < next_look:
                    continue
                next_look = time.monotonic() + self.shard_discovery_s
                try:
                    start_new_shards(self.shards())
                except Exception as exc:  # noqa: BLE001 - the shards already read go on; counted, shown, retried
                    record_failure(TASK_FAILURES, self.failing, "list-shards", exc)
                    continue
                self.failing.pop("list-shards", None)
        for thread in list(threads.values()):
            thread.join()
        return sum(totals.values())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Kinesis market-data stream -> bronze/sbe parquet")
    entry_point.add_config(parser)
    parser.add_argument("--metrics-port", type=int, default=DEFAULT_METRICS_PORT)
    parser.add_argument(
        "--discard-uncheckpointed",
        action="store_true",
        help="once, to bootstrap: delete a shard's archived objects that have no checkpoint "
        "(otherwise the shard refuses to start) and archive it again from Kinesis",
    )
    args = parser.parse_args(argv)
    entry_point.setup_logging()
    settings = load_settings(args.config)
    archiver = SbeArchiver(settings, discard_uncheckpointed=args.discard_uncheckpointed)
    serve_health_in_thread(
        args.metrics_port,
        lambda: (bool(archiver.reading), f"reading {sorted(archiver.reading)}, standing by for {sorted(archiver.standby)}"),
        failing_health(archiver.failing),
        host=settings.metrics_host,
    )
    signal.signal(signal.SIGTERM, lambda *_: setattr(archiver, "stopping", True))
    archiver.lake.ensure_bucket()
    archiver.run()


if __name__ == "__main__":
    main()
