"""Exchange WebSocket (SBE) -> validate -> Kinesis PutRecords.

One combined-stream connection keeps trades, best bid/ask and depth diffs in
exchange order. The reader only decodes and enqueues; a single writer task
drains the queue into PutRecords batches, so a slow Kinesis call never stalls
the socket. Reconnects back off exponentially with jitter; the connection is
rotated before Binance's 24 h limit. Frames that fail validation are written to
a dead-letter file and counted, never dropped silently.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from pathlib import Path

import aiohttp
import boto3
from prometheus_client import Counter, Gauge

from common.config import Settings, aws_client_kwargs
from common.service import failing_health, record_failure, run_service, serving_health
from ingest.binance_rest import BinanceRest
from ingest.kinesis_writer import KinesisWriter, PutFailed, Record, ensure_stream
from ingest.snapshot_injector import snapshot_envelope
from udfs import envelope, sbe
from udfs.events import DepthDiffEvent

log = logging.getLogger("ingestor")

FRAMES = Counter("ingest_frames_received_total", "WebSocket frames received", ["template"])
INVALID = Counter("ingest_frames_invalid_total", "Frames failing SBE validation (dead-lettered)", ["kind"])
for _kind in sbe.DecodeErrorKind:  # every series exported from the start, at 0: alerts and panels never see "no data"
    INVALID.labels(_kind.value)
RECONNECTS = Counter("ingest_ws_reconnects_total", "WebSocket (re)connections", ["reason"])
QUEUE_DEPTH = Gauge("ingest_queue_depth", "Records waiting for PutRecords")
LAST_FRAME = Gauge("ingest_last_frame_timestamp_seconds", "Wall time of the last frame received")
SNAPSHOTS = Counter("ingest_snapshots_injected_total", "REST snapshots put in band", ["result"])
TASK_FAILURES = Counter("ingest_task_failures_total", "Supervised tasks that failed (anchor: every attempt; writer: a batch)",
                        ["task"])
for _task in ("anchor", "writer"):
    TASK_FAILURES.labels(_task)
for _result in ("ok", "error"):
    SNAPSHOTS.labels(_result)

QUEUE_LIMIT = 100_000


MAX_RECORD_BYTES = 256 * 1024  # raw bytes before base64; Kinesis allows 1 MiB per record


def aggregate(frames: list[tuple[str, envelope.Envelope]], max_frames: int) -> list[Record]:
    """Pack consecutive frames of one symbol and source into records, keeping their order."""
    records: list[Record] = []
    group: list[envelope.Envelope] = []
    key: tuple[str, envelope.Source] | None = None
    size = 0

    def flush() -> None:
        if group:
            records.append(Record(envelope.batch_to_text(group).encode("ascii"), key[0]))

    for symbol, env in frames:
        this = (symbol, env.source)
        if group and (this != key or len(group) >= max_frames or size + len(env.frame) > MAX_RECORD_BYTES):
            flush()
            group, size = [], 0
        key = this
        group.append(env)
        size += len(env.frame) + 12
    flush()
    return records


class Ingestor:
    def __init__(self, settings: Settings, kinesis_client=None) -> None:
        self.settings = settings
        self.symbol = settings.exchange.symbol
        client = kinesis_client or boto3.client("kinesis", **aws_client_kwargs(settings.kinesis))
        if settings.kinesis.endpoint:  # emulator: the stream lives only as long as the process
            ensure_stream(client, settings.kinesis.stream, settings.kinesis.shards)
        self.writer = KinesisWriter(client, settings.kinesis.stream, settings.ingestor.max_put_attempts,
                                    min_retry_s=settings.ingestor.min_put_retry_s)
        self.queue: asyncio.Queue[tuple[str, envelope.Envelope]] = asyncio.Queue(QUEUE_LIMIT)
        self.dead_letter = Path(settings.ingestor.dead_letter_path)
        self.connected = False
        self.anchored = False
        self.snapshot_backoff_s = 0.5  # first retry delay of the anchor snapshot, doubling
        self.failing: dict[str, str] = {}  # task -> its last error, while it is failing (/health 503)
        self.health = failing_health(self.failing)  # /health: red while a task fails
        self._tasks: set[asyncio.Task] = set()  # the anchor tasks in flight (a task nobody holds can vanish)
        self._stopping = asyncio.Event()

    # ------------------------------------------------------------------ reading
    def stream_url(self) -> str:
        names = "/".join(f"{self.symbol.lower()}@{s}" for s in self.settings.exchange.streams)
        return f"{self.settings.exchange.ws_url}/stream?streams={names}"

    def _dead_letter(self, frame: bytes, reason: str) -> None:
        self.dead_letter.parent.mkdir(parents=True, exist_ok=True)
        with self.dead_letter.open("a") as fh:
            fh.write(json.dumps({"receipt_time_us": time.time_ns() // 1000, "reason": reason, "frame_hex": frame.hex()}) + "\n")

    async def handle_frame(self, frame: bytes) -> DepthDiffEvent | None:
        receipt_us = time.time_ns() // 1000
        LAST_FRAME.set(receipt_us / 1e6)
        decoded = sbe.decode(frame)
        if isinstance(decoded, sbe.DecodeError):
            INVALID.labels(decoded.kind.value).inc()
            self._dead_letter(frame, f"{decoded.kind.value}: {decoded.detail}")
            return None
        FRAMES.labels(type(decoded).__name__).inc()
        await self.queue.put((decoded.symbol, envelope.Envelope(envelope.Source.WEBSOCKET, receipt_us, frame)))
        QUEUE_DEPTH.set(self.queue.qsize())
        return decoded if isinstance(decoded, DepthDiffEvent) else None

    async def read_forever(self, session: aiohttp.ClientSession) -> None:
        cfg = self.settings.ingestor
        backoff = 0.5
        reason = "start"
        headers = {"X-MBX-APIKEY": self.settings.exchange.api_key.get_secret_value()} if self.settings.exchange.api_key else {}
        while not self._stopping.is_set():
            RECONNECTS.labels(reason).inc()
            try:
                async with session.ws_connect(self.stream_url(), heartbeat=30.0, headers=headers, max_msg_size=0) as ws:
                    log.info("connected to %s", self.stream_url())
                    self.connected, backoff = True, 0.5
                    reason = await self._read_connection(ws, session, time.monotonic() + cfg.rotate_after_s)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                reason = "error"
                log.warning("WebSocket error: %s", exc)
            self.connected = False
            if self._stopping.is_set():
                return
            delay = random.uniform(0, backoff) if reason != "rotate" else 0
            backoff = min(cfg.reconnect_max_backoff_s, backoff * 2)
            log.info("reconnecting in %.2fs (%s)", delay, reason)
            await asyncio.sleep(delay)

    async def _read_connection(self, ws, session, rotate_at: float) -> str:
        while True:
            timeout = rotate_at - time.monotonic()
            if timeout <= 0:
                return "rotate"
            try:
                msg = await ws.receive(timeout=min(timeout, 60.0))
            except asyncio.TimeoutError:
                if time.monotonic() >= rotate_at:
                    return "rotate"
                return "silent"
            if msg.type == aiohttp.WSMsgType.BINARY:
                diff = await self.handle_frame(msg.data)
                if diff is not None and not self.anchored:
                    self.anchored = True  # first diff seen: anchor the book in band, off the read path
                    task = asyncio.create_task(self.inject_snapshot(session))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            elif msg.type == aiohttp.WSMsgType.TEXT:
                log.info("text frame from exchange: %s", msg.data[:200])
            elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR):
                return "closed"

    async def inject_snapshot(self, session: aiohttp.ClientSession) -> None:
        """Fetch the anchor snapshot and put it in band. Any failure (network, a 4xx, a body that
        does not parse, whatever the exception) is counted and retried; after the last attempt the
        book is left to the next diff, and /health stays red until a snapshot goes in."""
        ex = self.settings.exchange
        for attempt in range(5):
            try:
                snapshot = await BinanceRest(ex.rest_url, session).depth(ex.symbol, ex.snapshot_limit)
                await self.queue.put((ex.symbol, snapshot_envelope(snapshot)))
            except Exception as exc:  # noqa: BLE001 - supervised: every failure is retried the same way
                SNAPSHOTS.labels("error").inc()
                record_failure(TASK_FAILURES, self.failing, "anchor", exc, f"snapshot attempt {attempt + 1}: ")
                log.warning("snapshot fetch failed (attempt %d): %s: %s", attempt + 1, type(exc).__name__, exc)
                await asyncio.sleep(self.snapshot_backoff_s * 2**attempt)
                continue
            SNAPSHOTS.labels("ok").inc()
            self.failing.pop("anchor", None)
            log.info("snapshot at update id %d put in band", snapshot.book_update_id)
            return
        self.anchored = False  # try again on the next diff

    # ------------------------------------------------------------------ writing
    async def write_forever(self) -> None:
        cfg = self.settings.ingestor
        while True:
            batch = [await self.queue.get()]
            deadline = time.monotonic() + cfg.batch_linger_ms / 1000
            while len(batch) < cfg.batch_max_records:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            QUEUE_DEPTH.set(self.queue.qsize())
            records = aggregate(batch, cfg.max_frames_per_record)
            try:
                await asyncio.to_thread(self.writer.put, records)
            except PutFailed as exc:
                log.error("%s; dead-lettering them", exc)
                for record in exc.records:
                    self._dead_letter(record.data, "kinesis_put_failed")
            except Exception as exc:  # noqa: BLE001 - supervised: the batch is kept, the writer goes on
                record_failure(TASK_FAILURES, self.failing, "writer", exc)
                log.exception("writing %d records failed; dead-lettering them", len(records))
                for record in records:
                    self._dead_letter(record.data, f"writer_error: {type(exc).__name__}")
            else:
                self.failing.pop("writer", None)

    def readiness(self) -> tuple[bool, str]:
        if not self.connected:
            return False, "exchange WebSocket not connected"
        return True, "streaming"

    async def run(self) -> None:
        async with serving_health(self.settings.ingestor.metrics_port, self.readiness, self.health,
                                  host=self.settings.metrics_host), \
                aiohttp.ClientSession() as session:
            writer = asyncio.create_task(self.write_forever())
            try:
                await self.read_forever(session)
            finally:
                writer.cancel()


async def _run(settings: Settings) -> None:
    await Ingestor(settings).run()


def main(argv: list[str] | None = None) -> None:
    run_service("Binance SBE WebSocket -> Kinesis ingestor", _run, argv)


if __name__ == "__main__":
    main()
