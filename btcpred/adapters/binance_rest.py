"""Binance spot REST within its limits: request weight, 429 back-off, 418 bans, jittered retries.

Binance charges every request a weight and refuses an IP whose weight in the
current minute passes the ``REQUEST_WEIGHT`` limit (6,000 today): 429 with
``Retry-After`` first, then 418 bans lasting minutes to days for clients that
keep going. This client spends at most ``weight_budget_per_minute`` of its own
accounting (synchronised from ``X-MBX-USED-WEIGHT-1M``), waits out ``Retry-After``
on 429, stops all requests until a 418 ban ends, and retries transport errors
and 5xx with full-jitter exponential back-off (tenacity).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass

import aiohttp
from prometheus_client import Counter
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, stop_after_delay, wait_random_exponential

from btcpred.adapters.loaders.base import parse_units
from btcpred.udfs import event_rules
from btcpred.udfs.events import DepthSnapshotEvent

WEIGHT_LIMIT_PER_MINUTE = 6000  # exchangeInfo REQUEST_WEIGHT, per IP
MAX_BAN_S = 3 * 24 * 3600.0  # Binance's longest 418 ban; a longer (or infinite) Retry-After is capped here
AGG_TRADES_WEIGHT = 4


def depth_weight(limit: int) -> int:
    """GET /api/v3/depth: the weight grows with the number of levels asked for."""
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


REST_REQUESTS = Counter("rest_requests_total", "Binance REST requests by endpoint and outcome", ["endpoint", "outcome"])


class RetryableError(Exception):
    """Worth another attempt after ``retry_after_s`` (or the back-off)."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class InvalidSnapshot(ValueError):
    """A depth answer that must not replace a book: malformed, or failing ``event_rules``."""


class RestBanned(Exception):
    """The IP is banned (418) until ``until``; nothing is sent before then."""

    def __init__(self, until: float) -> None:
        super().__init__(f"REST banned for {until - time.time():.1f} s more")
        self.until = until


@dataclass(slots=True)
class WeightBudget:
    """The weight spent in the last 60 s, by our own count and by the exchange's header."""

    per_minute: int
    spent: deque = None  # type: ignore[assignment]
    exchange_used: int = 0

    def __post_init__(self) -> None:
        self.spent = deque()

    def used(self, now: float) -> int:
        while self.spent and self.spent[0][0] <= now - 60:
            self.spent.popleft()
            self.exchange_used = 0  # the exchange's figure included what just left the window
        return max(sum(w for _, w in self.spent), self.exchange_used)

    def wait_s(self, weight: int, now: float) -> float:
        """How long until ``weight`` more fits in the budget (0 if it fits now)."""
        if self.used(now) + weight <= self.per_minute or not self.spent:
            return 0.0
        return max(0.0, self.spent[0][0] + 60 - now)

    def record(self, weight: int, now: float, header: str | None) -> None:
        self.spent.append((now, weight))
        if header and header.isdigit():
            self.exchange_used = int(header)


class BinanceRest:
    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        weight_budget_per_minute: int = 3000,
        max_attempts: int = 6,
        deadline_s: float = 60.0,
        timeout_s: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.budget = WeightBudget(weight_budget_per_minute)
        self.banned_until = 0.0
        self.max_attempts = max_attempts
        self.deadline_s = deadline_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def _attempt(self, path: str, params: dict[str, str], weight: int) -> object:
        now = time.time()
        if now < self.banned_until:
            raise RestBanned(self.banned_until)
        wait = self.budget.wait_s(weight, now)
        if wait > 0:
            await asyncio.sleep(wait)
        endpoint = path.rsplit("/", 1)[-1]
        try:
            async with self.session.get(f"{self.base_url}{path}", params=params, timeout=self.timeout) as resp:
                self.budget.record(weight, time.time(), resp.headers.get("X-MBX-USED-WEIGHT-1M"))
                retry_after = _seconds(resp.headers.get("Retry-After"))
                if resp.status == 418:
                    self.banned_until = time.time() + min(retry_after or 120.0, MAX_BAN_S)
                    REST_REQUESTS.labels(endpoint, "banned").inc()
                    raise RestBanned(self.banned_until)
                if resp.status == 429:
                    REST_REQUESTS.labels(endpoint, "throttled").inc()
                    raise RetryableError(
                        "429 too many requests", min(retry_after, self.deadline_s) if retry_after is not None else None
                    )
                if resp.status >= 500:
                    REST_REQUESTS.labels(endpoint, "server_error").inc()
                    raise RetryableError(
                        f"{resp.status} from the exchange", min(retry_after, self.deadline_s) if retry_after is not None else None
                    )
                resp.raise_for_status()  # other 4xx: our request is wrong, retrying will not help
                body = await resp.json()
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
            REST_REQUESTS.labels(endpoint, "transport_error").inc()
            raise RetryableError(f"{type(exc).__name__}: {exc}") from exc
        REST_REQUESTS.labels(endpoint, "ok").inc()
        return body

    async def get(self, path: str, params: dict[str, str], weight: int) -> object:
        """One logical request: retried on 429/5xx/transport errors, never past a ban or the deadline."""

        def wait(state) -> float:
            exc = state.outcome.exception()
            jitter = wait_random_exponential(multiplier=0.2, max=10)(state)
            return max(exc.retry_after_s or 0.0, jitter) if isinstance(exc, RetryableError) else jitter

        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(RetryableError),
            wait=wait,
            reraise=True,
            stop=stop_after_attempt(self.max_attempts) | stop_after_delay(self.deadline_s),
        ):
            with attempt:
                return await self._attempt(path, params, weight)
        raise AssertionError("unreachable")  # pragma: no cover

    async def depth_raw(self, symbol: str, limit: int = 1000) -> dict:
        """The exchange's JSON as sent (decimal strings), for archiving."""
        body = await self.get("/api/v3/depth", {"symbol": symbol, "limit": str(limit)}, depth_weight(limit))
        if not isinstance(body, dict) or "lastUpdateId" not in body:
            raise ValueError(f"unexpected depth answer: {str(body)[:200]}")
        return body

    async def depth(self, symbol: str, limit: int = 1000) -> DepthSnapshotEvent:
        """The book as a snapshot event, checked before it can replace anything (``depth_snapshot``)."""
        return depth_snapshot(symbol, await self.depth_raw(symbol, limit))

    async def agg_trades(self, symbol: str, from_id: int | None, limit: int = 1000) -> list[dict]:
        params = {"symbol": symbol, "limit": str(limit)}
        if from_id is not None:
            params["fromId"] = str(from_id)
        body = await self.get("/api/v3/aggTrades", params, AGG_TRADES_WEIGHT)
        assert isinstance(body, list)
        return body


def depth_snapshot(symbol: str, body: dict) -> DepthSnapshotEvent:
    """A ``/api/v3/depth`` answer as a snapshot event; ``InvalidSnapshot`` unless every level parses and
    the book passes ``event_rules`` (prices > 0, sizes >= 0, within int64, not crossed). A re-anchor
    swaps the live book for this one, so a bad answer must fail the attempt, never reach the job."""
    try:
        update_id = body["lastUpdateId"]
        if type(update_id) is not int:
            raise TypeError(f"lastUpdateId {update_id!r} is not an integer")
        bids, asks = ([(parse_units(str(p)), parse_units(str(q))) for p, q in body[side]] for side in ("bids", "asks"))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidSnapshot(f"depth answer for {symbol} does not parse: {type(exc).__name__}: {exc}") from None
    # REST depth has no event time: 0 marks "no exchange time" so it never moves watermarks.
    snapshot = DepthSnapshotEvent(symbol, 0, update_id, tuple(bids), tuple(asks))
    problem = event_rules.value_problem(snapshot)
    if problem is not None:
        raise InvalidSnapshot(f"depth answer for {symbol} refused: {problem}")
    return snapshot


def _seconds(value: str | None) -> float | None:
    """A ``Retry-After`` in seconds; None unless a finite number >= 0 (``inf`` once banned us for ever)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None
