"""Re-anchor service: sequence gaps in, a REST snapshot in band out, until the job's book is valid again.

Sequence (docs/recovery.md has it step by step):

1. The Flink job appends a record to ``gaps:<symbol>`` and marks its book invalid
   (``ob:`` ``book_valid=0``; inference falls back only if features go stale).
2. This service reads the stream through a consumer group (a restart resumes
   where it left off) and takes ``reanchor:<symbol>`` with SET NX PX: one
   re-anchor per symbol in flight, across every instance; gaps arriving meanwhile
   are acknowledged as covered by it.
3. It fetches a REST depth snapshot within Binance's limits and puts it into the
   market-data stream on the symbol's partition key, so the job meets it in
   stream order and rebuilds the book aside from it and its buffered diffs.
4. The job RENAMEs the rebuilt ``ob:`` over the live one in one transaction.
   The service waits for ``book_valid=1`` at or beyond the snapshot's update id;
   a snapshot too old for the job's buffered diffs leaves the book invalid, and
   the next attempt fetches a newer one.
5. It deletes the flag, logs the re-anchor to ``reanchors:<symbol>`` and acks the gaps.

Once a minute the same path runs without a gap: the snapshot lets the job compare
its book with the exchange's at the same update id (drift check).

The book also heals without a gap record: whenever ``ob:`` is invalid or absent for longer than
``reanchor.heal_after_s`` (a re-anchor that failed through a REST outage, a gap record lost, a job
started without state), a re-anchor starts by itself and is retried until the book is valid;
``/health`` is red meanwhile and ``reanchor_book_unhealthy_seconds`` says for how long.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from dataclasses import dataclass

import aiohttp
import boto3
import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge, Histogram

from btcpred.adapters import redis as redis_store
from btcpred.adapters.binance_rest import BinanceRest, RestBanned, RetryableError
from btcpred.adapters.kinesis_writer import KinesisWriter, Record
from btcpred.adapters.snapshot_injector import snapshot_envelope
from btcpred.common.config import Settings, aws_client_kwargs
from btcpred.common.service import failing_health, record_failure, run_service, serving_health, supervise
from btcpred.udfs import envelope
from btcpred.udfs import redis_schema as rs

log = logging.getLogger("reanchor")

REANCHOR_SECONDS = Histogram(
    "reanchor_duration_seconds", "Lock taken to book valid again", ["reason"], buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
)
REANCHORS = Counter("reanchors_total", "Finished re-anchors", ["reason", "outcome"])
GAPS_READ = Counter("reanchor_gaps_read_total", "Gap records consumed", ["handling"])
for _handling in ("reanchored", "coalesced"):  # exported at 0 from the start
    GAPS_READ.labels(_handling)
UNHEALTHY_S = Gauge(
    "reanchor_book_unhealthy_seconds", "How long the symbol's ob: has been invalid or absent (0 while valid)", ["symbol"]
)
for _reason in ("gap", "verify", "heal"):
    REANCHORS.labels(_reason, "ok"), REANCHORS.labels(_reason, "failed"), REANCHOR_SECONDS.labels(_reason)
TASK_FAILURES = Counter(
    "reanchor_task_failures_total",
    "Failures the service survived: a snapshot attempt (4xx, bad body) or a loop restarted",
    ["task"],
)
IN_PROGRESS = Gauge("reanchor_in_progress", "1 while a re-anchor of the symbol is running", ["symbol"])


@dataclass(frozen=True, slots=True)
class Outcome:
    reason: str
    ok: bool
    snapshot_update_id: int | None
    in_band_update_ids: tuple[int, ...]  # every snapshot this run put in band, in stream order
    attempts: int
    duration_s: float


class Reanchorer:
    """Heals one symbol's book. A process runs one per carried symbol, sharing the REST client (and so
    Binance's per-IP weight budget), the Kinesis writer and /health; each has its own lock and gaps."""

    def __init__(
        self,
        settings: Settings,
        redis: aioredis.Redis,
        rest: BinanceRest,
        writer: KinesisWriter,
        symbol: str | None = None,
        failing: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.symbol = symbol or settings.exchange.symbol
        self.redis = redis
        self.rest = rest
        self.writer = writer
        self.cfg = settings.reanchor
        self.consumer = f"{socket.gethostname()}-{id(self)}"
        self.last_outcome: Outcome | None = None
        self.failing: dict[str, str] = {} if failing is None else failing  # task -> its last error (/health 503)
        for task in ("snapshot", "gaps", "verify", "heal"):
            TASK_FAILURES.labels(self.task(task))  # exported at 0 from the start: an alert's increase() has a baseline

    def task(self, kind: str) -> str:
        """A supervised unit's name (metric label, /health key): per symbol, as each heals its own book."""
        return f"{kind} {self.symbol}"

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(rs.gap_stream_key(self.symbol), self.cfg.consumer_group, id="0", mkstream=True)
        except aioredis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _book_state(self) -> tuple[bool, int]:
        valid, last_id = await self.redis.hmget(rs.ob_key(self.symbol), "book_valid", "last_update_id")
        return valid == b"1", int(last_id or 0)

    async def _wait_valid(self, snapshot_id: int, timeout_s: float, drift_check: bool = False) -> bool | None:
        """True once the book is valid at or past ``snapshot_id``, False at the timeout.

        For a drift check (which starts on a valid book) None as soon as the book turns
        invalid: a gap broke it meanwhile, and waiting out the timeout would hold the
        symbol's lock while the gap path waits for it.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            valid, last_id = await self._book_state()
            if valid and last_id >= snapshot_id:
                return True
            if drift_check and not valid:
                return None
            await asyncio.sleep(0.02)
        return False

    async def reanchor(self, reason: str) -> Outcome | None:
        """One re-anchor; None if another one for the symbol is already running."""
        key = rs.reanchor_key(self.symbol)
        started = time.time()
        flag = json.dumps({"reason": reason, "started_at_us": int(started * 1e6), "owner": self.consumer})
        if not await self.redis.set(key, flag, nx=True, px=self.cfg.lock_ttl_ms):
            return None
        IN_PROGRESS.labels(self.symbol).set(1)
        snapshot_id, attempts, ok = None, 0, False
        in_band: list[int] = []  # an earlier attempt's snapshot may be the one that heals the book
        try:
            while attempts < self.cfg.max_attempts and not ok:
                attempts += 1
                try:
                    snap = await self.rest.depth(self.symbol, self.settings.exchange.snapshot_limit)
                except RestBanned as exc:
                    log.error("REST banned: waiting %.0f s before the next snapshot", exc.until - time.time())
                    await asyncio.sleep(max(0.0, exc.until - time.time()))
                    continue
                except RetryableError as exc:
                    log.warning("snapshot fetch failed after retries: %s", exc)
                    continue
                except Exception as exc:  # noqa: BLE001 - a 4xx, a body that does not parse: this attempt failed
                    record_failure(TASK_FAILURES, self.failing, self.task("snapshot"), exc)
                    log.error("snapshot attempt %d failed: %s: %s", attempts, type(exc).__name__, exc)
                    await asyncio.sleep(min(30.0, 0.5 * 2**attempts))
                    continue
                self.failing.pop(self.task("snapshot"), None)
                snapshot_id = snap.book_update_id
                if reason == "verify":
                    # REST runs ahead of the stream: put in band before the job's book reaches it, the snapshot
                    # would re-anchor a valid book ahead (skipping the tops features sum over) with nothing compared
                    await self._valid_past(snapshot_id, self.cfg.attempt_timeout_s)
                data = envelope.to_text(snapshot_envelope(snap)).encode()
                await asyncio.to_thread(self.writer.put, [Record(data, self.symbol)])
                in_band.append(snapshot_id)
                await self.redis.pexpire(key, self.cfg.lock_ttl_ms)
                waited = await self._wait_valid(snapshot_id, self.cfg.attempt_timeout_s, drift_check=reason == "verify")
                if waited is None:  # this run now re-anchors for the gap, with a fresh snapshot
                    log.info("book turned invalid during the drift check: re-anchoring for the gap")
                    reason = "gap"
                    continue
                ok = waited
                if not ok:
                    log.warning(
                        "book not valid %.1f s after snapshot %d (attempt %d)", self.cfg.attempt_timeout_s, snapshot_id, attempts
                    )
        finally:
            await self.redis.delete(key)
            IN_PROGRESS.labels(self.symbol).set(0)
        outcome = Outcome(reason, ok, snapshot_id, tuple(in_band), attempts, time.time() - started)
        REANCHORS.labels(reason, "ok" if ok else "failed").inc()
        if ok:
            REANCHOR_SECONDS.labels(reason).observe(outcome.duration_s)
        await self.redis.xadd(
            rs.reanchor_log_key(self.symbol),
            {
                "reason": reason,
                "outcome": "ok" if ok else "failed",
                "snapshot_update_id": str(snapshot_id or ""),
                "in_band_update_ids": ",".join(map(str, in_band)),
                "attempts": str(attempts),
                "started_at_us": str(int(started * 1e6)),
                "duration_ms": f"{outcome.duration_s * 1000:.1f}",
            },
            maxlen=rs.EVENT_STREAM_MAXLEN,
            approximate=True,
        )
        log.info(
            "%s re-anchor (%s) %s after %d attempt(s), %.0f ms",
            self.symbol,
            reason,
            "done" if ok else "FAILED",
            attempts,
            outcome.duration_s * 1000,
        )
        self.last_outcome = outcome
        return outcome

    async def _reanchor_for_gap(self, gap_last_id: int) -> tuple[Outcome | None, bool]:
        """Re-anchor for gaps just read; returns (our outcome, or None if another ran, and whether they are healed).

        A re-anchor already running (a drift check, or another instance) may have fetched
        its snapshot before the gap, so it is no proof the gap heals: once it ends, the gaps
        count as healed only if the book is valid again past the gap's update id; if not,
        this re-anchors itself.
        """
        while True:
            outcome = await self.reanchor("gap")
            if outcome is not None:
                return outcome, outcome.ok
            await self._wait_unlocked()
            if await self._valid_past(gap_last_id, self.cfg.attempt_timeout_s):
                return None, True

    async def _wait_unlocked(self) -> None:
        key = rs.reanchor_key(self.symbol)
        while await self.redis.exists(key):  # the lock has a TTL: this ends even if its owner died
            await asyncio.sleep(0.02)

    async def _valid_past(self, update_id: int, timeout_s: float) -> bool:
        """Once ``ob:`` is at or past ``update_id`` (or the timeout): whether it is valid."""
        deadline = time.monotonic() + timeout_s
        while True:
            valid, last_id = await self._book_state()
            if last_id >= update_id or time.monotonic() > deadline:
                return valid
            await asyncio.sleep(0.02)

    async def consume_gaps_once(self, block_ms: int = 1000) -> int:
        """Read new gap records; re-anchor once for all of them. Returns how many were read."""
        stream = rs.gap_stream_key(self.symbol)
        batches = await self.redis.xreadgroup(self.cfg.consumer_group, self.consumer, {stream: ">"}, count=100, block=block_ms)
        entries = [(entry_id, fields) for _, rows in batches for entry_id, fields in rows]
        if not entries:
            return 0
        gap_last_id = max(int(fields.get(b"last_update_id", 0)) for _, fields in entries)
        outcome, healed = await self._reanchor_for_gap(gap_last_id)
        GAPS_READ.labels("reanchored" if outcome else "coalesced").inc(len(entries))
        if healed:
            await self.redis.xack(stream, self.cfg.consumer_group, *(entry_id for entry_id, _ in entries))
        # a failed re-anchor leaves the gaps pending: the next start re-reads them (below)
        return len(entries)

    async def retry_pending(self) -> None:
        """Gaps read but not acknowledged (a crash or a failed re-anchor) are handled again."""
        stream = rs.gap_stream_key(self.symbol)
        pending = await self.redis.xpending_range(stream, self.cfg.consumer_group, min="-", max="+", count=1000)
        if pending:
            ids = [p["message_id"] for p in pending]
            _, healed = await self._reanchor_for_gap(0)
            if healed:
                await self.redis.xack(stream, self.cfg.consumer_group, *ids)

    async def gaps_forever(self) -> None:
        await self.ensure_group()
        await self.retry_pending()
        while True:
            try:
                await self.consume_gaps_once()
            except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
                log.warning("Redis unavailable: %s", exc)
                await asyncio.sleep(1.0)
            except aioredis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("gap stream or consumer group gone (Redis restarted empty?): recreating it")
                await self.ensure_group()

    async def heal_once(self, unhealthy_since: float | None, now: float) -> float | None:
        """One look at the book: returns since when (monotonic s) it has been invalid or absent, None
        while valid. Past ``heal_after_s`` it shows on /health and a re-anchor runs (unless one is
        running already); a failed one is simply tried again at the next look."""
        valid, _ = await self._book_state()
        book = self.task("book")
        if valid:
            self.failing.pop(book, None)
            UNHEALTHY_S.labels(self.symbol).set(0)
            return None
        since = unhealthy_since if unhealthy_since is not None else now
        UNHEALTHY_S.labels(self.symbol).set(now - since)
        if now - since >= self.cfg.heal_after_s:
            self.failing[book] = f"ob: invalid or absent for {now - since:.0f} s: re-anchoring without a gap record"
            if not await self.redis.exists(rs.reanchor_key(self.symbol)):
                outcome = await self.reanchor("heal")
                if outcome is not None and outcome.ok:
                    self.failing.pop(book, None)
                    UNHEALTHY_S.labels(self.symbol).set(0)
                    return None
        return since

    async def heal_forever(self) -> None:
        since = None
        while True:
            try:
                since = await self.heal_once(since, time.monotonic())
            except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
                log.warning("book health check skipped, Redis unavailable: %s", exc)
            await asyncio.sleep(self.cfg.heal_check_interval_s)

    async def verify_forever(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.verify_interval_s)
            try:
                valid, _ = await self._book_state()
                if valid:  # an invalid or absent book is the gap path's business, not a drift check
                    await self.reanchor("verify")
            except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
                log.warning("drift check skipped, Redis unavailable: %s", exc)


async def run(settings: Settings) -> None:
    redis = redis_store.connect_async(settings.redis, "reanchor", socket_timeout=5)
    writer = KinesisWriter(boto3.client("kinesis", **aws_client_kwargs(settings.kinesis)), settings.kinesis.stream)
    failing: dict[str, str] = {}
    async with aiohttp.ClientSession() as session:
        rest = BinanceRest(settings.exchange.rest_url, session, settings.reanchor.weight_budget_per_minute)
        services = [Reanchorer(settings, redis, rest, writer, symbol, failing) for symbol in settings.exchange.carried]

        def readiness() -> tuple[bool, str]:
            return True, f"consuming gaps of {', '.join(s.symbol for s in services)}"

        try:
            async with serving_health(
                settings.reanchor.metrics_port, readiness, failing_health(failing), host=settings.metrics_host
            ):
                await asyncio.gather(
                    *(
                        supervise(s.task(loop), run, TASK_FAILURES, failing)
                        for s in services
                        for loop, run in (("gaps", s.gaps_forever), ("verify", s.verify_forever), ("heal", s.heal_forever))
                    )
                )
        finally:
            await redis.aclose()


def main(argv: list[str] | None = None) -> None:
    run_service("Gap records -> REST snapshot in band -> book valid again", run, argv)


if __name__ == "__main__":
    main()
