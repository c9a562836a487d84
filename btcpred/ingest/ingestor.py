"""Exchange WebSocket (SBE) -> validate -> Kinesis PutRecords.

One combined-stream connection keeps trades, best bid/ask and depth diffs in
exchange order. Where ``exchange.perp_ws_url`` is set, a second connection reads the
leading perpetual's bookTicker (JSON) into the same records (``btcpred/ingest/perp_quotes.py``). The reader only decodes and enqueues; a single writer task
drains the queue into PutRecords batches, so a slow Kinesis call never stalls
the socket. Reconnects back off exponentially with jitter; the connection is
rotated before Binance's 24 h limit. Frames that fail validation are written to
a dead-letter file and counted, never dropped silently.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import aiohttp
import boto3
from prometheus_client import Counter, Gauge
from tenacity import AsyncRetrying, stop_after_attempt, wait_exponential

from btcpred.adapters.binance_rest import BinanceRest
from btcpred.adapters.kinesis_writer import KinesisWriter, PutFailed, Record, ensure_stream
from btcpred.adapters.snapshot_injector import snapshot_envelope
from btcpred.common.config import Settings, aws_client_kwargs
from btcpred.common.service import failing_health, record_failure, run_service, serving_health, supervise
from btcpred.ingest.dead_letters import spill_for
from btcpred.ingest.perp_quotes import PerpQuoteError, parse_json, perp_quote_envelope, perp_stream_url
from btcpred.udfs import envelope, event_rules, sbe
from btcpred.udfs.events import DepthDiffEvent

log = logging.getLogger("ingestor")

FRAMES = Counter("ingest_frames_received_total", "WebSocket frames received", ["template"])
INVALID = Counter("ingest_frames_invalid_total", "Frames failing SBE or bookTicker validation (dead-lettered)", ["kind"])
PERP_INVALID = "perp_quote"  # the INVALID kind of a futures bookTicker that does not parse
INVALID_VALUE = "invalid_value"  # the INVALID kind of a frame that decodes but fails ``event_rules``
for _kind in (*(k.value for k in sbe.DecodeErrorKind), PERP_INVALID):  # exported from the start, at 0: no "no data"
    INVALID.labels(_kind)
RECONNECTS = Counter("ingest_ws_reconnects_total", "WebSocket (re)connections", ["reason"])
QUEUE_DEPTH = Gauge("ingest_queue_depth", "Records waiting for PutRecords")
LAST_FRAME = Gauge("ingest_last_frame_timestamp_seconds", "Wall time of the last frame received")
SNAPSHOTS = Counter("ingest_snapshots_injected_total", "REST snapshots put in band", ["result"])
TASK_FAILURES = Counter(
    "ingest_task_failures_total", "Supervised tasks that failed (anchor <symbol>: every attempt; writer: a batch)", ["task"]
)
for _task in ("writer", "perp"):
    TASK_FAILURES.labels(_task)
for _result in ("ok", "error"):
    SNAPSHOTS.labels(_result)

QUEUE_LIMIT = 100_000
SNAPSHOT_ATTEMPTS = 5  # anchor snapshot fetches per diff that finds the book unanchored


MAX_RECORD_BYTES = 256 * 1024  # raw bytes before base64; Kinesis allows 1 MiB per record


def aggregate(frames: list[tuple[str, envelope.Envelope]], max_frames: int) -> list[Record]:
    """Pack a linger window's frames into records per symbol, each symbol's in arrival order, the
    records ordered by the arrival of their first frame.

    Symbols are grouped, not cut into runs: on a combined stream of several symbols their frames
    alternate, and records of consecutive frames held one or two each (a 2-key load test: 1,800
    events/s against 9,400 for one key). Order across symbols carries no meaning to keyed state,
    but it does to the watermark, which all keys of a subtask share: a window past
    ``max_frames`` a symbol (a slow put at 20x) once went out as all of one symbol's records, then
    all of the next's, and the first symbol's second record, seconds of data later than the
    window's start, moved the watermark past the events of the second symbol's first record before
    they were read (CI run of stop 38: the live book missed a diff at its 56.5 s boundary that the
    backfill applied). Ordered by first arrival, no record follows one that starts later in data
    time than itself. The perpetual's quotes share the spot frames' records (envelope version 3
    when a record mixes them); the job's cost is per record more than per frame. A REST snapshot
    stays a record of its own: rare and large, it gains nothing from company, and a spot-only
    stream stays byte for byte what a job before version 3 reads."""
    by_symbol: dict[str, list[tuple[int, envelope.Envelope]]] = {}
    for position, (symbol, env) in enumerate(frames):
        by_symbol.setdefault(symbol, []).append((position, env))
    records: list[tuple[int, Record]] = []
    for symbol, envs in by_symbol.items():
        group: list[envelope.Envelope] = []
        first = 0
        snapshot = False
        size = 0
        for position, env in envs:
            this = env.source is envelope.Source.REST_SNAPSHOT
            if group and (this != snapshot or len(group) >= max_frames or size + len(env.frame) > MAX_RECORD_BYTES):
                records.append((first, Record(envelope.batch_to_text(group).encode("ascii"), symbol)))
                group, size = [], 0
            if not group:
                first = position
            snapshot = this
            group.append(env)
            size += len(env.frame) + 13
        records.append((first, Record(envelope.batch_to_text(group).encode("ascii"), symbol)))
    records.sort(key=lambda item: item[0])
    return [record for _, record in records]


class Ingestor:
    def __init__(self, settings: Settings, kinesis_client=None) -> None:
        self.settings = settings
        self.symbols = settings.exchange.carried
        self.max_lead_us = settings.exchange.max_event_time_lead_ms * 1000
        for symbol in self.symbols:
            TASK_FAILURES.labels(f"anchor {symbol}")  # exported at 0 from the start: an alert's increase() has a baseline
        client = kinesis_client or boto3.client("kinesis", **aws_client_kwargs(settings.kinesis))
        if settings.kinesis.endpoint:  # emulator: the stream lives only as long as the process
            ensure_stream(client, settings.kinesis.stream, settings.kinesis.shards)
        self.writer = KinesisWriter(
            client, settings.kinesis.stream, settings.ingestor.max_put_attempts, min_retry_s=settings.ingestor.min_put_retry_s
        )
        self.queue: asyncio.Queue[tuple[str, envelope.Envelope]] = asyncio.Queue(QUEUE_LIMIT)
        self.spill = spill_for(settings)  # bounded, rotated; records Kinesis refused are replayed from it
        self.connected = False
        self.perp_connected = False
        self.anchored: set[str] = set()  # symbols whose anchor snapshot is in band or on its way
        self.snapshot_backoff_s = 0.5  # first retry delay of the anchor snapshot, doubling (tenacity)
        self.failing: dict[str, str] = {}  # task -> its last error, while it is failing (/health 503)
        self.health = failing_health(self.failing)  # /health: red while a task fails
        self._tasks: set[asyncio.Task] = set()  # the anchor tasks in flight (a task nobody holds can vanish)
        self._stopping = asyncio.Event()

    # ------------------------------------------------------------------ reading
    def stream_url(self) -> str:
        """One combined connection for every carried symbol's streams (Binance allows 1,024 a connection)."""
        names = "/".join(f"{symbol.lower()}@{s}" for symbol in self.symbols for s in self.settings.exchange.streams)
        return f"{self.settings.exchange.ws_url}/stream?streams={names}"

    def _dead_letter(self, frame: bytes, reason: str) -> None:
        self.spill.frame(frame, reason)

    async def handle_frame(self, frame: bytes) -> DepthDiffEvent | None:
        receipt_us = time.time_ns() // 1000
        LAST_FRAME.set(receipt_us / 1e6)
        decoded = sbe.decode(frame)
        if isinstance(decoded, sbe.DecodeError):
            INVALID.labels(decoded.kind.value).inc()
            self._dead_letter(frame, f"{decoded.kind.value}: {decoded.detail}")
            return None
        problem = event_rules.problem(decoded, receipt_us, self.max_lead_us)
        if problem is not None:  # well formed, values no exchange sends: the job would refuse it too
            INVALID.labels(INVALID_VALUE).inc()
            self._dead_letter(frame, f"{INVALID_VALUE}: {type(decoded).__name__}: {problem}")
            return None
        FRAMES.labels(type(decoded).__name__).inc()
        await self.queue.put((decoded.symbol, envelope.Envelope(envelope.Source.WEBSOCKET, receipt_us, frame)))
        QUEUE_DEPTH.set(self.queue.qsize())
        return decoded if isinstance(decoded, DepthDiffEvent) else None

    async def handle_perp_text(self, text: str) -> None:
        """One futures bookTicker message -> an in-band perpetual quote, or a dead letter."""
        receipt_us = time.time_ns() // 1000
        ex = self.settings.exchange
        try:
            env = perp_quote_envelope(parse_json(text), ex.symbol, ex.perp_symbol or ex.symbol, receipt_us, self.max_lead_us)
        except (PerpQuoteError, ValueError) as exc:
            INVALID.labels(PERP_INVALID).inc()
            self._dead_letter(text.encode(), f"{PERP_INVALID}: {exc}")
            return
        FRAMES.labels("PerpQuoteEvent").inc()
        await self.queue.put((ex.symbol, env))
        QUEUE_DEPTH.set(self.queue.qsize())

    async def read_forever(self, session: aiohttp.ClientSession) -> None:
        headers = {"X-MBX-APIKEY": self.settings.exchange.api_key.get_secret_value()} if self.settings.exchange.api_key else {}
        await self._connect_forever(session, self.stream_url(), "connected", headers, self._read_connection)

    async def read_perp_forever(self, session: aiohttp.ClientSession) -> None:
        ex = self.settings.exchange
        assert ex.perp_ws_url is not None
        await self._connect_forever(
            session,
            perp_stream_url(ex.perp_ws_url, ex.perp_symbol or ex.symbol),
            "perp_connected",
            {},
            self._read_perp_connection,
        )

    async def _connect_forever(self, session: aiohttp.ClientSession, url: str, flag: str, headers: dict, read_connection) -> None:
        """Connect, read until the connection ends, reconnect with jittered exponential backoff
        (at once after a planned rotation); ``flag`` names the attribute that says it is connected."""
        cfg = self.settings.ingestor
        backoff = 0.5
        reason = "start"
        while not self._stopping.is_set():
            RECONNECTS.labels(reason).inc()
            try:
                async with session.ws_connect(url, heartbeat=30.0, headers=headers, max_msg_size=cfg.max_message_bytes) as ws:
                    log.info("connected to %s", url)
                    setattr(self, flag, True)
                    backoff = 0.5
                    reason = await read_connection(ws, session, time.monotonic() + cfg.rotate_after_s)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                reason = "error"
                log.warning("WebSocket error on %s: %s", url, exc)
            setattr(self, flag, False)
            if self._stopping.is_set():
                return
            delay = random.uniform(0, backoff) if reason != "rotate" else 0
            backoff = min(cfg.reconnect_max_backoff_s, backoff * 2)
            log.info("reconnecting to %s in %.2fs (%s)", url, delay, reason)
            await asyncio.sleep(delay)

    @staticmethod
    async def _messages(ws, rotate_at: float):
        """The connection's messages until it ends; then yields why, as a str: "rotate" (the planned
        reconnect before Binance's 24 h limit), "silent" (60 s without a message), "too_big" (a message
        past ``ingestor.max_message_bytes``) or "closed"."""
        while True:
            timeout = rotate_at - time.monotonic()
            if timeout <= 0:
                yield "rotate"
                return
            try:
                msg = await ws.receive(timeout=min(timeout, 60.0))
            except asyncio.TimeoutError:
                yield "rotate" if time.monotonic() >= rotate_at else "silent"
                return
            if (
                msg.type == aiohttp.WSMsgType.ERROR
                and isinstance(msg.data, aiohttp.WebSocketError)
                and msg.data.code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
            ):
                yield "too_big"  # past ingestor.max_message_bytes: aiohttp closed the connection unread
                return
            if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR):
                yield "closed"
                return
            yield msg

    async def _read_perp_connection(self, ws, session, rotate_at: float) -> str:
        async for msg in self._messages(ws, rotate_at):
            if isinstance(msg, str):
                return msg
            if msg.type == aiohttp.WSMsgType.TEXT:
                await self.handle_perp_text(msg.data)
        return "closed"

    async def _read_connection(self, ws, session, rotate_at: float) -> str:
        async for msg in self._messages(ws, rotate_at):
            if isinstance(msg, str):
                return msg
            if msg.type == aiohttp.WSMsgType.BINARY:
                diff = await self.handle_frame(msg.data)
                if diff is not None and diff.symbol not in self.anchored:
                    self.anchored.add(diff.symbol)  # its first diff: anchor its book in band, off the read path
                    task = asyncio.create_task(self.inject_snapshot(session, diff.symbol))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            elif msg.type == aiohttp.WSMsgType.TEXT:
                log.info("text frame from exchange: %s", msg.data[:200])
        return "closed"

    async def inject_snapshot(self, session: aiohttp.ClientSession, symbol: str) -> None:
        """Fetch ``symbol``'s anchor snapshot and put it in band. Any failure (network, a 4xx, a body
        that does not parse, whatever the exception) is counted and retried with exponential back-off;
        after the last attempt the book is left to the symbol's next diff, and /health stays red until
        a snapshot goes in."""
        ex = self.settings.exchange
        task_name = f"anchor {symbol}"
        retrying = AsyncRetrying(
            stop=stop_after_attempt(SNAPSHOT_ATTEMPTS), reraise=True, wait=wait_exponential(multiplier=self.snapshot_backoff_s)
        )
        try:
            async for attempt in retrying:
                with attempt:
                    try:
                        snapshot = await BinanceRest(ex.rest_url, session).depth(symbol, ex.snapshot_limit)
                        await self.queue.put((symbol, snapshot_envelope(snapshot)))
                    except Exception as exc:  # noqa: BLE001 - supervised: every failure is retried the same way
                        n = attempt.retry_state.attempt_number
                        SNAPSHOTS.labels("error").inc()
                        record_failure(TASK_FAILURES, self.failing, task_name, exc, f"snapshot attempt {n}: ")
                        log.warning("%s snapshot fetch failed (attempt %d): %s: %s", symbol, n, type(exc).__name__, exc)
                        raise
        except Exception:  # noqa: BLE001 - every attempt failed (each counted above)
            self.anchored.discard(symbol)  # try again on its next diff
            return
        SNAPSHOTS.labels("ok").inc()
        self.failing.pop(task_name, None)
        log.info("%s snapshot at update id %d put in band", symbol, snapshot.book_update_id)

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
                log.error("%s; spilling them for replay (python -m btcpred.ingest.dead_letters replay)", exc)
                for record in exc.records:
                    self.spill.record(record, "kinesis_put_failed")
            except Exception as exc:  # noqa: BLE001 - supervised: the batch is kept, the writer goes on
                record_failure(TASK_FAILURES, self.failing, "writer", exc)
                log.exception("writing %d records failed; spilling them for replay", len(records))
                for record in records:
                    self.spill.record(record, f"writer_error: {type(exc).__name__}")
            else:
                self.failing.pop("writer", None)

    def readiness(self) -> tuple[bool, str]:
        if not self.connected:
            return False, "exchange WebSocket not connected"
        if self.settings.exchange.perp_ws_url and not self.perp_connected:
            return False, "perpetual bookTicker stream not connected"
        return True, "streaming"

    async def run(self) -> None:
        async with (
            serving_health(self.settings.ingestor.metrics_port, self.readiness, self.health, host=self.settings.metrics_host),
            aiohttp.ClientSession() as session,
        ):
            # supervised: a defect in either is counted, shown on /health and restarted, never a silent end
            helpers = [asyncio.create_task(supervise("writer", self.write_forever, TASK_FAILURES, self.failing))]
            if self.settings.exchange.perp_ws_url:
                helpers.append(
                    asyncio.create_task(supervise("perp", lambda: self.read_perp_forever(session), TASK_FAILURES, self.failing))
                )
            try:
                await self.read_forever(session)
            finally:
                for task in helpers:
                    task.cancel()


async def _run(settings: Settings) -> None:
    await Ingestor(settings).run()


def main(argv: list[str] | None = None) -> None:
    run_service("Binance SBE WebSocket -> Kinesis ingestor", _run, argv)


if __name__ == "__main__":
    main()
