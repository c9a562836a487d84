"""HTTP/WebSocket front of the simulated exchange.

Streams (SBE binary frames, one message per WebSocket frame):
``/ws/<stream>`` and ``/stream?streams=<s1>/<s2>/...`` with stream names
``btcusdt@trade``, ``btcusdt@bestBidAsk``, ``btcusdt@depth``. With ``--perp-capture``, a USD-M
capture of the same minutes is replayed beside it and its best bid/ask served as the futures
API does, JSON on ``/futures/ws/btcusdt@bookTicker`` (base URL ``.../futures`` for the ingestor).
REST: ``/api/v3/depth``, ``/api/v3/aggTrades``. Test control: ``/sim/*``.

Replay pacing follows the collector's receipt times divided by ``speed``
(0 = as fast as clients take frames). By default the replay starts when the
first client subscribes, so a test never misses the beginning.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import logging
import time
from dataclasses import asdict, dataclass, field

from aiohttp import WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest

from btcpred.adapters.binance_rest import AGG_TRADES_WEIGHT, depth_weight
from btcpred.adapters.loaders import load_capture
from btcpred.adapters.loaders.base import CapturedEvent, merge_perp_quotes
from btcpred.udfs.events import BestBidAskEvent, PerpQuoteEvent
from rig.simulator.exchange import PERP_STREAM_PREFIX, SimulatedExchange
from rig.simulator.faults import FaultPlan, corrupt
from rig.simulator.laps import lap_step, shifted

log = logging.getLogger("simulator")

FRAMES_SENT = Counter("simulator_frames_sent_total", "SBE frames sent to clients", ["stream"])
FAULTS_APPLIED = Counter("simulator_faults_applied_total", "Injected faults", ["fault"])
REPLAY_PROGRESS = Gauge("simulator_replay_progress_ratio", "Share of the capture replayed")
CLIENTS = Gauge("simulator_clients", "Connected WebSocket clients")

CLIENT_QUEUE_LIMIT = 200_000


@dataclass(eq=False)
class Subscriber:
    streams: frozenset[str]
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(CLIENT_QUEUE_LIMIT))
    closed: asyncio.Event = field(default_factory=asyncio.Event)


REPLAY_TASK = web.AppKey("replay", asyncio.Task)


class ReplayServer:
    def __init__(self, events: list[CapturedEvent], speed: float, start_on_first_client: bool = True, laps: int = 1) -> None:
        self.events = events
        self.speed = speed
        self.laps = laps  # 0: lap after lap until stopped (rig/simulator/laps.py)
        self.lap = 0
        self.exchanges = exchanges_of(events)
        self.faults = FaultPlan()
        self.rest_weights: list[tuple[float, int]] = []  # (monotonic time, weight) of the last minute
        self.subscribers: set[Subscriber] = set()
        self.position = 0
        self.finished = False
        self.started = asyncio.Event()
        if not start_on_first_client:
            self.started.set()
        self._held: tuple[str, bytes] | None = None  # frame held back by a reorder fault
        self.dropped_diffs: list[tuple[int, int]] = []  # (U, u) of diffs dropped by the fault switch
        self.muted_trades: list[int] = []  # event times of trade frames suppressed
        self._mute_until_us = 0

    # ----------------------------------------------------------------- replay
    async def run_replay(self) -> None:
        await self.started.wait()
        step = lap_step(self.events)
        for lap in itertools.count() if self.laps == 0 else range(self.laps):
            self.lap = lap
            events = shifted(self.events, lap, step)
            if lap:
                self.exchanges = exchanges_of(events)  # REST serves the new lap's books
            await self._replay_lap(events)
        if self._held:
            await self._deliver(*self._held)
            self._held = None
        self.finished = True
        log.info("replay finished: %d events, %d lap(s)", len(self.events), self.lap + 1)

    async def _replay_lap(self, events: list[CapturedEvent]) -> None:
        log.info("lap %d: replay of %d events starting at speed %s", self.lap, len(events), self.speed or "max")
        wall0 = time.monotonic()
        first_receipt = events[0].receipt_time_us if events else 0
        for index, captured in enumerate(events):
            if self.speed > 0:
                due = wall0 + (captured.receipt_time_us - first_receipt) / 1e6 / self.speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif index % 200 == 0:
                await asyncio.sleep(0)  # as fast as possible, but let clients drain
            out = self.exchanges[captured.event.symbol].process(captured)
            self.position = index + 1
            if out is not None:
                await self._publish(*out, captured.event)
            REPLAY_PROGRESS.set(self.position / len(events))

    async def _publish(self, stream: str, frame: bytes | str, event=None) -> None:
        if isinstance(frame, str):  # the perpetual's JSON: the fault switches act on the SBE streams
            await self._deliver(stream, frame)
            return
        f = self.faults
        if stream.endswith("@depth") and f.drop_diffs > 0:
            f.drop_diffs -= 1
            FAULTS_APPLIED.labels("drop_diff").inc()
            self.dropped_diffs.append((event.first_update_id, event.last_update_id))
            return
        if f.mute_trades_ms > 0 and event is not None:
            self._mute_until_us = event.event_time_us + f.mute_trades_ms * 1000
            f.mute_trades_ms = 0
        if stream.endswith("@trade") and event is not None and event.event_time_us <= self._mute_until_us:
            FAULTS_APPLIED.labels("mute_trade").inc()
            self.muted_trades.append(event.event_time_us)
            return
        if f.disconnect_next:
            f.disconnect_next = False
            FAULTS_APPLIED.labels("disconnect").inc()
            for sub in list(self.subscribers):
                sub.closed.set()
        if f.corrupt_next > 0 and f.corrupt_stream in ("", stream):
            f.corrupt_next -= 1
            FAULTS_APPLIED.labels("corrupt").inc()
            frame = corrupt(frame)
        if f.reorder_next > 0 and self._held is None and f.reorder_stream in ("", stream):
            self._held = (stream, frame)
            return
        copies = 1
        if f.duplicate_next > 0:
            f.duplicate_next -= 1
            FAULTS_APPLIED.labels("duplicate").inc()
            copies = 2
        for _ in range(copies):
            await self._deliver(stream, frame)
        if self._held is not None and f.reorder_stream in ("", stream):
            f.reorder_next -= 1
            FAULTS_APPLIED.labels("reorder").inc()
            held, self._held = self._held, None
            await self._deliver(*held)

    async def _deliver(self, stream: str, frame: bytes | str) -> None:
        FRAMES_SENT.labels(stream).inc()
        for sub in list(self.subscribers):
            if stream in sub.streams:
                try:
                    sub.queue.put_nowait(frame)
                except asyncio.QueueFull:
                    log.warning("client too slow (%d frames queued); disconnecting it", sub.queue.qsize())
                    sub.closed.set()

    # ----------------------------------------------------------------- handlers
    async def _serve_ws(self, request: web.Request, streams: list[str]) -> web.WebSocketResponse:
        if not streams:
            raise web.HTTPBadRequest(text="no streams requested")
        ws = web.WebSocketResponse(heartbeat=20.0)
        await ws.prepare(request)
        sub = Subscriber(frozenset(streams))
        self.subscribers.add(sub)
        CLIENTS.set(len(self.subscribers))
        self.started.set()

        async def pump() -> None:
            while True:
                frame = await sub.queue.get()
                if isinstance(frame, str):
                    await ws.send_str(frame)
                else:
                    await ws.send_bytes(frame)

        pump_task = asyncio.create_task(pump())
        reader = asyncio.create_task(self._drain_incoming(ws))
        closer = asyncio.create_task(sub.closed.wait())
        try:
            await asyncio.wait({pump_task, reader, closer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump_task, reader, closer):
                task.cancel()
            self.subscribers.discard(sub)
            CLIENTS.set(len(self.subscribers))
            await ws.close()
        return ws

    @staticmethod
    async def _drain_incoming(ws: web.WebSocketResponse) -> None:
        async for msg in ws:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                return

    async def ws_single(self, request: web.Request) -> web.WebSocketResponse:
        return await self._serve_ws(request, [request.match_info["stream"]])

    async def ws_futures(self, request: web.Request) -> web.WebSocketResponse:
        return await self._serve_ws(request, [PERP_STREAM_PREFIX + request.match_info["stream"]])

    async def ws_combined(self, request: web.Request) -> web.WebSocketResponse:
        return await self._serve_ws(request, [s for s in request.query.get("streams", "").split("/") if s])

    @property
    def exchange(self) -> SimulatedExchange:
        """The capture's own symbol's exchange (the first symbol of the capture)."""
        return next(iter(self.exchanges.values()))

    def _exchange_for(self, request: web.Request) -> SimulatedExchange:
        symbol = request.query.get("symbol", "").upper()
        if symbol not in self.exchanges:
            raise web.HTTPBadRequest(text=f'{{"code":-1121,"msg":"Invalid symbol {symbol!r}."}}', content_type="application/json")
        return self.exchanges[symbol]

    @staticmethod
    def _int_param(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
        raw = request.query.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise web.HTTPBadRequest(
                text=f'{{"code":-1100,"msg":"Illegal characters in {name}."}}', content_type="application/json"
            ) from None
        if not lo <= value <= hi:
            raise web.HTTPBadRequest(text=f'{{"code":-1100,"msg":"{name} out of range."}}', content_type="application/json")
        return value

    async def _rest_faults(self, weight: int) -> tuple[web.Response | None, dict[str, str]]:
        """Slow answers, 429 and 418 as Binance sends them; else the weight header of a served request."""
        f = self.faults
        if f.rest_delay_ms:
            FAULTS_APPLIED.labels("rest_delay").inc()
            await asyncio.sleep(f.rest_delay_ms / 1000)
        if time.monotonic() < f.rest_down_until:
            FAULTS_APPLIED.labels("rest_down").inc()
            return web.Response(status=503, text="Service Unavailable"), {}
        for name, status in (("rest_ban_next", 418), ("rest_throttle_next", 429)):
            if getattr(f, name) > 0:
                setattr(f, name, getattr(f, name) - 1)
                FAULTS_APPLIED.labels(name).inc()
                body = '{"code":-1003,"msg":"Way too much request weight used."}'
                return web.Response(
                    status=status, text=body, content_type="application/json", headers={"Retry-After": str(f.rest_retry_after_s)}
                ), {}
        now = time.monotonic()
        self.rest_weights = [(t, w) for t, w in self.rest_weights if t > now - 60] + [(now, weight)]
        return None, {"X-MBX-USED-WEIGHT-1M": str(sum(w for _, w in self.rest_weights))}

    async def depth(self, request: web.Request) -> web.Response:
        exchange = self._exchange_for(request)
        limit = self._int_param(request, "limit", 100, 1, 5000) or 100
        refused, headers = await self._rest_faults(depth_weight(limit))
        return refused or web.json_response(exchange.depth_json(limit), headers=headers)

    async def agg_trades(self, request: web.Request) -> web.Response:
        exchange = self._exchange_for(request)
        refused, headers = await self._rest_faults(AGG_TRADES_WEIGHT)
        if refused:
            return refused
        big = 2**62
        rows = exchange.agg_trades_json(
            self._int_param(request, "fromId", None, 0, big),
            self._int_param(request, "startTime", None, 0, big),
            self._int_param(request, "endTime", None, 0, big),
            self._int_param(request, "limit", 500, 1, 1000) or 500,
        )
        return web.json_response(rows, headers=headers)

    async def status(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "position": self.position,
                "total": len(self.events),
                "finished": self.finished,
                "lap": self.lap,
                "started": self.started.is_set(),
                "last_update_id": self.exchange.book.last_update_id,
                "last_event_time_us": self.exchange.last_event_time_us,
                "clients": len(self.subscribers),
                "symbols": list(self.exchanges),
                "faults": asdict(self.faults),
                "dropped_diffs": self.dropped_diffs,
                "muted_trades": [min(self.muted_trades, default=0), max(self.muted_trades, default=0), len(self.muted_trades)],
            }
        )

    async def book_at(self, request: web.Request) -> web.Response:
        update_id = self._int_param(request, "update_id", None, 0, 2**62)
        exchange = self._exchange_for(request) if "symbol" in request.query else self.exchange
        top = exchange.top_at(update_id) if update_id is not None else None
        if top is None:
            raise web.HTTPNotFound(text=f"no book remembered at update id {update_id}")
        bids, asks = top
        return web.json_response({"update_id": update_id, "bids": bids, "asks": asks})

    async def set_faults(self, request: web.Request) -> web.Response:
        try:
            self.faults.update(**(await request.json()))
        except (KeyError, TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return web.json_response(asdict(self.faults))

    async def health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ready", "events": len(self.events)})

    async def metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes(
            [
                web.get("/ws/{stream}", self.ws_single),
                web.get("/futures/ws/{stream}", self.ws_futures),
                web.get("/stream", self.ws_combined),
                web.get("/api/v3/depth", self.depth),
                web.get("/api/v3/aggTrades", self.agg_trades),
                web.get("/sim/status", self.status),
                web.get("/sim/book", self.book_at),
                web.post("/sim/faults", self.set_faults),
                web.get("/health", self.health),
                web.get("/ready", self.ready),
                web.get("/metrics", self.metrics),
            ]
        )

        async def start_replay(app: web.Application) -> None:
            app[REPLAY_TASK] = asyncio.create_task(self.run_replay())

        async def stop_replay(app: web.Application) -> None:
            app[REPLAY_TASK].cancel()

        app.on_startup.append(start_replay)
        app.on_cleanup.append(stop_replay)
        return app


def with_perp_quotes(events: list[CapturedEvent], perp: list[CapturedEvent]) -> list[CapturedEvent]:
    """The spot capture with the perpetual capture's best bid/ask merged in by the collector's
    receipt time (both captures were recorded side by side), keyed to the spot symbol."""
    if not any(type(c.event) is BestBidAskEvent for c in perp):
        raise SystemExit("the perpetual capture holds no best bid/ask updates")
    return list(merge_perp_quotes(events, perp, next(c.event.symbol for c in events)))


def exchanges_of(events: list[CapturedEvent]) -> dict[str, SimulatedExchange]:
    """One exchange per symbol of the events, the capture's own first; a perpetual's quotes are keyed
    to the spot symbol they lead, so they stay with it."""
    symbols = dict.fromkeys(c.event.symbol for c in events)
    return {symbol: SimulatedExchange([c for c in events if c.event.symbol == symbol]) for symbol in symbols}


def with_replay_keys(events: list[CapturedEvent], count: int) -> list[CapturedEvent]:
    """The capture plus ``count`` copies of its spot events under replay keys ``<symbol>-R<i>``, each
    right after its original (same receipt time): a scale-out test's extra symbols. The same real
    frames, never presented as another market (the key says so); the perpetual's quotes are not copied."""
    symbol = next(c.event.symbol for c in events)
    keys = [f"{symbol}-R{i}" for i in range(1, count + 1)]
    out = []
    for captured in events:
        out.append(captured)
        if type(captured.event) is not PerpQuoteEvent:
            out.extend(CapturedEvent(captured.receipt_time_us, dataclasses.replace(captured.event, symbol=key)) for key in keys)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Replay a real Binance capture as an SBE exchange")
    parser.add_argument("--capture", required=True, help="capture file (hftbacktest WebSocket format)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed factor; 0 = as fast as possible")
    parser.add_argument("--start-immediately", action="store_true", help="do not wait for the first client")
    parser.add_argument(
        "--perp-capture",
        help="a USD-M capture of the same minutes: its best bid/ask is served "
        "as the futures bookTicker stream (cross-market features)",
    )
    parser.add_argument(
        "--laps",
        type=int,
        default=1,
        help="replay the capture this many times, each lap shifted in time and ids; 0 = until stopped",
    )
    parser.add_argument(
        "--replay-keys",
        type=int,
        default=0,
        help="serve the capture also under this many replay keys <SYMBOL>-R<i> (scale-out tests)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    events = list(load_capture(args.capture).events())
    if args.perp_capture:
        events = with_perp_quotes(events, list(load_capture(args.perp_capture).events()))
    if args.replay_keys:
        events = with_replay_keys(events, args.replay_keys)
    server = ReplayServer(events, args.speed, start_on_first_client=not args.start_immediately, laps=args.laps)
    web.run_app(server.app(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
