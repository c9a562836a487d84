"""Batched Kinesis PutRecords with per-record retries.

Kinesis accepts a batch partially: failed entries come back with an error code
and are resent (only those) with exponential back-off and full jitter (tenacity). Only one
batch is in flight at a time so records of one partition key keep their order
except when a partial failure forces a resend; the job's sequence checks catch
that as a gap rather than silently mis-applying a diff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client import Counter
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_random_exponential

log = logging.getLogger("kinesis_writer")

RECORDS_PUT = Counter("ingest_kinesis_records_put_total", "Records accepted by Kinesis")
RECORDS_RETRIED = Counter("ingest_kinesis_records_retried_total", "Records resent after a per-record failure", ["error_code"])
for _code in ("request_failed", "ProvisionedThroughputExceededException", "InternalFailure"):  # exported at 0 from the start
    RECORDS_RETRIED.labels(_code)
RECORDS_FAILED = Counter("ingest_kinesis_records_failed_total", "Records given up after all attempts")

MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Record:
    data: bytes
    partition_key: str


class PutFailed(RuntimeError):
    """Records still failing after every attempt; the caller dead-letters them."""

    def __init__(self, records: Sequence[Record], last_error: str) -> None:
        super().__init__(f"{len(records)} records failed after retries: {last_error}")
        self.records = list(records)


class KinesisWriter:
    def __init__(
        self,
        client,
        stream: str,
        max_attempts: int = 8,
        base_delay_s: float = 0.05,
        max_delay_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        min_retry_s: float = 0.0,
    ) -> None:
        """Gives up on a batch after ``max_attempts`` *and* at least ``min_retry_s`` of back-off.

        Full-jitter back-off makes the time ``max_attempts`` alone covers random (8 attempts
        summed to 2.6 s once, under a 3 s endpoint outage); a floor in time is what rides
        out an outage of known length.
        """
        self.client = client
        self.stream = stream
        self.max_attempts = max_attempts
        self.min_retry_s = min_retry_s
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.sleep = sleep

    def put(self, records: Sequence[Record]) -> None:
        """Put all records (any count), splitting into API-sized batches."""
        batch: list[Record] = []
        size = 0
        for record in records:
            rsize = len(record.data) + len(record.partition_key)
            if batch and (len(batch) == MAX_BATCH_RECORDS or size + rsize > MAX_BATCH_BYTES):
                self._put_batch(batch)
                batch, size = [], 0
            batch.append(record)
            size += rsize
        if batch:
            self._put_batch(batch)

    def _stop(self, state: RetryCallState) -> bool:
        """Give up after ``max_attempts`` and at least ``min_retry_s`` slept (tenacity's ``idle_for``:
        the sum of back-offs, so a fake ``sleep`` in tests counts as the real one would)."""
        return state.attempt_number >= self.max_attempts and state.idle_for >= self.min_retry_s

    def _put_batch(self, batch: list[Record]) -> None:
        pending = batch
        retrying = Retrying(
            stop=self._stop,
            wait=wait_random_exponential(multiplier=self.base_delay_s, max=self.max_delay_s),
            retry=retry_if_exception_type(_NotAccepted),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    try:
                        self._send(pending, attempt.retry_state.attempt_number)
                    except _NotAccepted as exc:
                        pending = exc.records  # the next attempt resends only these
                        raise
        except _NotAccepted as exc:
            RECORDS_FAILED.inc(len(exc.records))
            raise PutFailed(exc.records, exc.error) from None

    def _send(self, pending: list[Record], attempt: int) -> None:
        """One PutRecords of ``pending``; raises ``_NotAccepted`` with what is left to resend."""
        try:
            response = self.client.put_records(
                StreamName=self.stream,
                Records=[{"Data": r.data, "PartitionKey": r.partition_key} for r in pending],
            )
        except Exception as exc:  # throttling, network, emulator restart: retry the whole batch
            error = f"{type(exc).__name__}: {exc}"
            RECORDS_RETRIED.labels("request_failed").inc(len(pending))
            log.warning("PutRecords failed (attempt %d): %s", attempt, error)
            raise _NotAccepted(pending, error) from exc
        failed, error = [], ""
        for record, result in zip(pending, response["Records"]):
            if "ErrorCode" in result:
                failed.append(record)
                error = f"{result['ErrorCode']}: {result.get('ErrorMessage', '')}"
                RECORDS_RETRIED.labels(result["ErrorCode"]).inc()
        RECORDS_PUT.inc(len(pending) - len(failed))
        if failed:
            raise _NotAccepted(failed, error)


class _NotAccepted(Exception):
    """Records Kinesis did not take on one attempt (a failed request: all of them)."""

    def __init__(self, records: list[Record], error: str) -> None:
        super().__init__(error)
        self.records, self.error = records, error


def ensure_stream(client, stream: str, shards: int, timeout_s: float = 30.0) -> None:
    """Create the stream if absent and wait until it is ACTIVE (emulator and dev setups)."""
    try:
        client.create_stream(StreamName=stream, ShardCount=shards)
        log.info("created Kinesis stream %s with %d shards", stream, shards)
    except client.exceptions.ResourceInUseException:
        pass
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.describe_stream(StreamName=stream)["StreamDescription"]["StreamStatus"]
        if status == "ACTIVE":
            return
        time.sleep(0.2)
    raise TimeoutError(f"Kinesis stream {stream} not ACTIVE after {timeout_s}s")
