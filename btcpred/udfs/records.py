"""Kinesis records into per-symbol batches of decoded events, and the watermark's event time.

The hot-path job's first operators (``DecodeRecord``, the timestamp assigner, the keyed function's
decode step) and the batch path's replay of bronze read records through these, so both decode a
frame the same way. A record, envelope or frame that does not parse becomes a dead letter with its
reason (``redis_writes.dead_letter_write``), never an exception. These objects cross operators
pickled and never reach keyed state (``symbol_state.SymbolState`` does).
"""

from __future__ import annotations

from dataclasses import dataclass

from btcpred.udfs import envelope, event_rules, sbe
from btcpred.udfs.events import BestBidAskEvent, MarketEvent, PerpQuoteEvent
from btcpred.udfs.pickling import StdlibPickled
from btcpred.udfs.redis_writes import RedisWrite, dead_letter_write


class DecodedBatch(StdlibPickled):
    """The decoded frames of one Kinesis record, all of one symbol, in stream order.

    It crosses operators pickled, so it lives in an importable module: in thread mode
    PyFlink pickles by reference, and a class of the job's ``__main__`` cannot be found.
    """

    __slots__ = ("symbol", "events", "receipts")

    def __init__(self, symbol: str, events: list, receipts: list[int]) -> None:
        self.symbol = symbol
        self.events = events
        self.receipts = receipts

    @property
    def event_time_ms(self) -> int:
        return max((e.event_time_us for e in self.events), default=0) // 1000

    def event_times(self) -> tuple[int, int]:
        """(oldest spot event time, oldest perpetual quote time) in µs; 0 where there is none (``JointEventTime``)."""
        spot_us = perp_us = 0
        for event in self.events:
            t = event.event_time_us
            if not t:
                continue
            if type(event) is PerpQuoteEvent:
                perp_us = t if not perp_us or t < perp_us else perp_us
            elif not spot_us or t < spot_us:
                spot_us = t
        return spot_us, perp_us


class RawBatch(StdlibPickled):
    """One record's frames of one symbol, not yet decoded: what crosses ``key_by``.

    The job decodes after the shuffle: a list of frames pickles and unpickles in 0.3 µs a frame,
    the decoded events in 7 µs (building every event and level tuple again on the far side),
    about what decoding costs. Before the shuffle only ``sbe.peek`` runs: the symbol to key by and
    the event times the watermark needs (``spot_time_us``, ``perp_time_us``: each stream's oldest).
    """

    __slots__ = ("symbol", "frames", "receipts", "sources", "spot_time_us", "perp_time_us")

    def __init__(
        self,
        symbol: str,
        frames: list[bytes],
        receipts: list[int],
        sources: bytearray,
        spot_time_us: int = 0,
        perp_time_us: int = 0,
    ) -> None:
        self.symbol = symbol
        self.frames = frames
        self.receipts = receipts
        self.sources = sources  # envelope.Source of each frame
        self.spot_time_us = spot_time_us
        self.perp_time_us = perp_time_us

    def event_times(self) -> tuple[int, int]:
        return self.spot_time_us, self.perp_time_us


class JointEventTime:
    """The event time the job's watermark follows: the slower of the spot stream and the perpetual's.

    Both arrive in one keyed stream over two exchange connections, and one connection can run
    seconds ahead of the other (a burst, a slow socket, a replay at 10x where 200 ms of data pass
    in 20 ms). A watermark driven by the faster one cut boundaries before the slower one's events
    up to them had arrived: the live book missed diffs the training replay applied. Each record is
    stamped with the lower of the two streams' newest times instead, so the bounded-out-of-
    orderness watermark waits for both, however far behind the slower one is. Only a perpetual
    that has sent nothing for ``PERP_IDLE_S`` of wall time is dead (its features go absent as its
    last quote ages) and stops holding spot back: how far behind it is says nothing about whether
    it is alive (fresh-clone run r-1: a live but lagging feed was declared dead at 5 s of event
    time, at 10x half a second of wall time, and boundaries were cut without its quotes).
    A record may hold both streams' frames (envelope version 3): each event counts for its own.

    A record counts with its *oldest* event of each stream, not its newest. Records of several
    symbols share one watermark (one per subtask), and the ingestor packs a linger window's frames
    into one record per symbol, one after the other: stamped with its newest event, the first
    symbol's record moved the watermark past the early events of the next symbol's record of the
    same window, whenever the window spanned more than the out-of-orderness (a slow put, a burst;
    20x replays made it common). Fresh-clone runs of the two-symbol backfill test showed it: a trade
    of the second key late at its first boundary, a boundary of the first key cut a trade short.
    The watermark now lags by the span of the newest record instead (the linger, ~10 ms at 1x).
    """

    __slots__ = ("spot_ms", "perp_ms", "perp_seen_s")
    PERP_IDLE_S = 2.0

    def __init__(self) -> None:
        self.spot_ms = 0
        self.perp_ms = 0
        self.perp_seen_s = float("-inf")  # wall time (monotonic s) the last perpetual record arrived

    def stamp(self, batch: DecodedBatch | RawBatch, now_s: float) -> int:
        """The record's timestamp in ms (``now_s``: monotonic wall seconds); 0 before spot has one."""
        spot_us, perp_us = batch.event_times()
        if perp_us:
            self.perp_ms = max(self.perp_ms, perp_us // 1000)
            self.perp_seen_s = now_s
        if spot_us:
            self.spot_ms = max(self.spot_ms, spot_us // 1000)
        if now_s - self.perp_seen_s > self.PERP_IDLE_S:
            return self.spot_ms
        return min(self.spot_ms, self.perp_ms)


@dataclass(slots=True)
class DecodedRecord:
    """One Kinesis record taken apart: its frames per symbol, its dead letters, and counts for metrics."""

    batches: list[DecodedBatch]
    dead_letters: list["RedisWrite"]
    decoded: dict[str, int]  # events per type name


EVENT_TYPES = ("TradesEvent", "BestBidAskEvent", "DepthDiffEvent", "DepthSnapshotEvent", "PerpQuoteEvent")
QUICK_EVENTS = (BestBidAskEvent, PerpQuoteEvent)  # most frames, none writes: ``on_batch`` applies them the short way


@dataclass(slots=True)
class SplitRecord:
    """One Kinesis record taken apart without decoding: its frames per symbol, and its dead letters."""

    batches: list[RawBatch]
    dead_letters: list["RedisWrite"]


_PERP = envelope.Source.PERP_QUOTE


def split_record(value: str, now_us: int, max_lead_us: int = event_rules.DEFAULT_MAX_LEAD_US) -> SplitRecord:
    """What the job does with a record before ``key_by``: an envelope that does not parse is one
    dead letter; a frame whose structure is broken (``sbe.peek``), a perpetual quote that is no
    best bid/ask, or an event time further ahead of its receipt than ``max_lead_us`` is one dead
    letter, and its record goes on; the rest is grouped by symbol.

    The time rule runs here, not only after the shuffle: the record's event time stamps the
    watermark before ``key_by``, and one frame a day ahead would move every key's boundaries a day."""
    out = SplitRecord([], [])
    try:
        frames = envelope.from_text(value)
    except envelope.EnvelopeError as exc:
        out.dead_letters.append(dead_letter_write(f"envelope: {exc}", value, now_us))
        return out
    batches: dict[str, RawBatch] = {}
    for env in frames:
        peeked = sbe.peek(env.frame)
        if isinstance(peeked, sbe.DecodeError):
            out.dead_letters.append(dead_letter_write(f"sbe {peeked.kind.value}: {peeked.detail}", env.frame.hex(), now_us))
            continue
        template, event_time_us, symbol = peeked
        if event_time_us - env.receipt_time_us > max_lead_us and env.receipt_time_us:
            out.dead_letters.append(
                dead_letter_write(
                    f"{SBE_EVENT_NAMES.get(template, template)} refused: event time {event_time_us} µs is "
                    f"{(event_time_us - env.receipt_time_us) / 1e6:.3f} s ahead of its receipt (limit {max_lead_us / 1e6:g} s)",
                    env.frame.hex(),
                    now_us,
                )
            )
            continue
        perp = env.source is _PERP
        if perp and template != sbe.TEMPLATE_BEST_BID_ASK:
            out.dead_letters.append(
                dead_letter_write(
                    f"envelope: a perpetual quote record holds a {SBE_EVENT_NAMES.get(template, template)}",
                    env.frame.hex(),
                    now_us,
                )
            )
            continue
        batch = batches.get(symbol)
        if batch is None:
            batch = batches[symbol] = RawBatch(symbol, [], [], bytearray())
            out.batches.append(batch)
        batch.frames.append(env.frame)
        batch.receipts.append(env.receipt_time_us)
        batch.sources.append(env.source)
        if not event_time_us:  # a REST snapshot: no exchange time
            continue
        if perp:
            if not batch.perp_time_us or event_time_us < batch.perp_time_us:
                batch.perp_time_us = event_time_us
        elif not batch.spot_time_us or event_time_us < batch.spot_time_us:
            batch.spot_time_us = event_time_us
    return out


SBE_EVENT_NAMES = {
    sbe.TEMPLATE_TRADES: "TradesEvent",
    sbe.TEMPLATE_BEST_BID_ASK: "BestBidAskEvent",
    sbe.TEMPLATE_DEPTH_SNAPSHOT: "DepthSnapshotEvent",
    sbe.TEMPLATE_DEPTH_DIFF: "DepthDiffEvent",
}


def decode_batch(raw: RawBatch, now_us: int, counts: dict[str, int]) -> tuple[DecodedBatch, list["RedisWrite"]]:
    """What the keyed operator does first: the frames decoded (``counts`` gains each event's type);
    a frame whose values do not decode (a bad exponent) is a dead letter, the rest go on."""
    events: list[MarketEvent] = []
    receipts: list[int] = []
    dead: list[RedisWrite] = []
    decode = sbe.decode
    for frame, receipt, source in zip(raw.frames, raw.receipts, raw.sources):
        event = decode(frame)
        if isinstance(event, sbe.DecodeError):
            dead.append(dead_letter_write(f"sbe {event.kind.value}: {event.detail}", frame.hex(), now_us))
            continue
        if source == _PERP:
            event = PerpQuoteEvent.leading(event, event.symbol)  # type: ignore[arg-type]  # split_record admits best bid/ask only
        counts[type(event).__name__] += 1
        events.append(event)
        receipts.append(receipt)
    return DecodedBatch(raw.symbol, events, receipts), dead


def decode_record(value: str, now_us: int) -> DecodedRecord:
    """A record split and decoded, free of Flink: what the job's two steps (``split_record`` before
    ``key_by``, ``decode_batch`` after) make of it, in one call (the graph test's reference, the
    archive builder and ``bench/job_compute.py`` run exactly this)."""
    split = split_record(value, now_us)
    out = DecodedRecord([], split.dead_letters, dict.fromkeys(EVENT_TYPES, 0))
    for raw in split.batches:
        batch, dead = decode_batch(raw, now_us, out.decoded)
        out.batches.append(batch)
        out.dead_letters.extend(dead)
    return out
