"""The hot path's per-symbol state machine, free of Flink: the job and the batch path run this same code.

It lived in ``flink_jobs/hot_path_state.py`` until 2026-12-02 and in ``udfs/symbol_state.py`` until the
code became one package; state written then names those paths, which ``legacy_paths`` keeps resolving.

The Flink operator (``btcpred.flink_jobs.hot_path_job.HotPathFunction``) owns one of these per key
in keyed state and only translates its outputs into Redis writes and side
outputs. Depth diffs and snapshots are applied in stream order (sequence ids,
not time, decide validity); trade windows and features are cut at event-time
boundaries when the watermark passes them, so their values do not depend on
arrival timing. Records reach it decoded (``records``); what it writes is ``redis_writes``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from btcpred.udfs import event_rules
from btcpred.udfs import redis_schema as rs
from btcpred.udfs.depth_flow import DEEPEST, DepthFlow, float_levels
from btcpred.udfs.events import BestBidAskEvent, DepthDiffEvent, DepthSnapshotEvent, MarketEvent, PerpQuoteEvent, TradesEvent
from btcpred.udfs.features import HISTORY_US, WINDOWS_US, BookHistory, QuoteHistory, Snapshot, compute_snapshot, top_of
from btcpred.udfs.long_context import KEEP_BUCKETS, LongContext
from btcpred.udfs.order_book import BookSynchronizer, DiffOutcome, Gap
from btcpred.udfs.pickling import StdlibPickled
from btcpred.udfs.records import QUICK_EVENTS
from btcpred.udfs.redis_writes import RedisWrite, coalesce, dead_letter_write, drift_write, gap_write, late_write, rejected_write
from btcpred.udfs.trade_window import TradeBuffer, trade_points

LONGEST_WINDOW_US = max(WINDOWS_US.values())  # trades older than this reach no window
MAX_CATCH_UP = 120  # boundaries one timer cuts at most: a bogus far-future event time must not stall the job
# Caps on what keyed state holds whatever the stream does. Boundaries prune every history to
# HISTORY_US; the caps only bite when boundaries stop (a watermark held back) and are ~10x the
# busiest 6 s seen in the binance.com captures, so a healthy stream never meets them.
MAX_BOOK_HISTORY = 10_000  # depth-book tops (10 a second)
MAX_QUOTES = 50_000  # best bid/ask tops per market (~90 a second, bursts of several hundred)
MAX_TRADES = 200_000  # trades within the longest window
MAX_PENDING_TIMERS = 10_000  # boundaries registered, not yet fired
MAX_CONTEXT_BUCKETS = 2 * KEEP_BUCKETS  # 500 ms buckets: boundaries prune them to KEEP_BUCKETS


@dataclass(frozen=True, slots=True)
class EventResult:
    writes: list[RedisWrite]
    gap: Gap | None = None
    late: bool = False  # a trade older than the last cut boundary: windows already closed
    rejected: str | None = None  # why the event was refused (``event_rules``): nothing changed
    book_time_us: int | None = None  # the book changed, at this event time (its ob: write may be deferred)
    changed: bool = True  # False: state untouched, nothing to persist


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one Kinesis record's events did: the operator turns it into outputs and timers."""

    writes: list[RedisWrite]  # coalesced: one ob: hash at most, stream entries in order
    gap_writes: list[RedisWrite]  # for the gap side output, one per gap
    late_writes: list[RedisWrite]  # for the late side output, one per late trade
    timers: list[int]  # event-time boundaries (µs) to register a timer for
    changed: bool  # False: state untouched, nothing to persist
    dead_writes: list[RedisWrite] = field(default_factory=list)  # events refused (``event_rules``) or that raised


STATE_FORMAT = 1  # SymbolState's layout; bump it when a field changes meaning or type (appending one needs none)


@dataclass(slots=True)
class SymbolState(StdlibPickled):  # committed after every bundle: C pickler, not cloudpickle
    """One symbol's keyed state. Pickled as the tuple of its fields in order (``StdlibPickled``):
    fields are only ever appended, so state written by an earlier version restores, the fields it
    lacks taking their defaults; ``state_format`` says which layout wrote it (0: written before the
    format was recorded, told apart by its length alone). ``tests/data/state/`` keeps blobs
    written by earlier commits, and ``tests/unit/udfs/test_symbol_state_blob.py`` restores them."""

    symbol: str
    sync: BookSynchronizer = None  # type: ignore[assignment]
    trades: TradeBuffer = field(default_factory=TradeBuffer)
    history: BookHistory = field(default_factory=BookHistory)
    last_diff_time_us: int = 0
    last_boundary_us: int = 0
    pending_timers: set[int] = field(default_factory=set)  # boundaries with a registered timer, not yet fired
    stale_diffs: int = 0  # diffs already contained in the book (exported as a Flink gauge)
    boundaries_skipped: int = 0  # overtaken boundaries beyond MAX_CATCH_UP, never cut (a Flink gauge)
    quotes: QuoteHistory = field(default_factory=QuoteHistory)  # the best bid/ask stream's tops
    stale_quotes: int = 0  # best bid/ask updates older than the newest one seen, dropped
    perp: QuoteHistory = field(default_factory=QuoteHistory)  # the leading perpetual's tops, where configured
    stale_perp_quotes: int = 0
    state_format: int = STATE_FORMAT  # the layout this state was written in (see the class docstring)
    last_trade_id: int = -1  # newest trade id applied: a resent Kinesis batch's trades are not counted twice
    duplicate_trades: int = 0  # trades dropped as already applied (a Flink gauge)
    rejected_events: int = 0  # events refused by ``event_rules`` or that raised while applied (a Flink gauge)
    failed_cuts: int = 0  # boundaries whose features raised: dead-lettered, not written (a Flink gauge)
    crossed_books: int = 0  # diffs after which the book was crossed: marked invalid, a re-anchor asked for
    capped_entries: int = 0  # history entries dropped by the caps (MAX_*): features near them are inexact
    receipt_lag_us: int | None = None  # our receipt minus the exchange's time, smallest of the last record
    depth_flow: DepthFlow = field(default_factory=DepthFlow)  # OFI over the top 5 and 10 levels per book update
    context: LongContext = field(default_factory=LongContext)  # 500 ms buckets of flow and moves for 30 s-5 min
    # diffs and quotes applied after a boundary at or past their event time was cut: that boundary's
    # features missed them (trades so late are refused and sent to the late output instead). The
    # book must still apply them; a healthy input order keeps this at 0 (a Flink gauge per symbol)
    late_book_events: int = 0

    def __post_init__(self) -> None:
        if self.sync is None:
            self.sync = BookSynchronizer(self.symbol)

    def _restore_state(self, state: tuple) -> None:
        """State written before a field was appended restores with that field's default; state of
        an older ``state_format`` would be converted here (none needs it yet)."""
        written = self.written_format(state)
        if written > STATE_FORMAT:
            raise ValueError(
                f"state of format {written} is newer than this code's {STATE_FORMAT}: restore it with the version that wrote it"
            )
        StdlibPickled._restore_state(self, state)  # slots=True rebuilds the class: no zero-argument super()
        for f in dataclasses.fields(self)[len(state) :]:
            setattr(self, f.name, f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
        self.state_format = STATE_FORMAT

    @classmethod
    def written_format(cls, state: tuple) -> int:
        """The ``state_format`` a pickled state tuple was written in; 0 before the field existed."""
        index = cls.__slots__.index("state_format")
        return state[index] if len(state) > index else 0

    def on_event(
        self,
        event: MarketEvent,
        receipt_time_us: int | None = None,
        write_book: bool = True,
        max_lead_us: int = event_rules.DEFAULT_MAX_LEAD_US,
    ) -> EventResult:
        """Apply one event in stream order; returns the writes it causes, a gap, or a late flag.

        An event that fails ``event_rules`` changes nothing and comes back ``rejected`` with the reason.

        ``write_book=False`` leaves the ``ob:`` write out (``book_time_us`` says the book
        changed): a caller applying a batch writes the book once, with ``book_write``, since
        only the last state reaches Redis and building the hash per diff cost ~50 µs each.
        """
        reason = event_rules.problem(event, receipt_time_us, max_lead_us)
        if reason is not None:
            self.rejected_events += 1
            return EventResult([], rejected=reason)
        if isinstance(event, DepthDiffEvent):
            self.last_diff_time_us = max(self.last_diff_time_us, event.event_time_us)
            outcome, gap = self.sync.on_diff(event)
            if outcome is DiffOutcome.STALE:
                self.stale_diffs += 1
            if outcome in (DiffOutcome.APPLIED, DiffOutcome.GAP):
                if event.event_time_us <= self.last_boundary_us:
                    self.late_book_events += 1
                if gap is None and self.sync.valid and self.sync.crossed():
                    # the exchange's book is never crossed: ours missed something. Invalid until a
                    # re-anchor, which the gap record asks for (never seen in the real captures)
                    self.sync.valid = False
                    self.crossed_books += 1
                    gap = Gap(
                        self.symbol, event.first_update_id, event.first_update_id, event.last_update_id, event.event_time_us
                    )
                return EventResult(
                    self._book_changed(event.event_time_us, receipt_time_us, write_book), gap, book_time_us=event.event_time_us
                )
            return EventResult([], gap)
        if isinstance(event, DepthSnapshotEvent):
            if self.sync.on_snapshot(event):
                book_time_us = max(self.last_diff_time_us, event.event_time_us)
                writes = self._book_changed(book_time_us, receipt_time_us, write_book)
                drift = self.sync.last_drift
                if drift is not None:
                    writes.append(drift_write(self.symbol, drift, event.book_update_id))
                return EventResult(writes, book_time_us=book_time_us)
            return EventResult([], changed=False)
        if isinstance(event, TradesEvent):
            newest = max(t.trade_id for t in event.trades)
            if newest <= self.last_trade_id:  # a batch the ingestor's writer resent: applied already
                self.duplicate_trades += len(event.trades)
                return EventResult([])
            if min(t.trade_id for t in event.trades) <= self.last_trade_id:  # partly seen: the new ones only
                fresh = tuple(t for t in event.trades if t.trade_id > self.last_trade_id)
                self.duplicate_trades += len(event.trades) - len(fresh)
                event = dataclasses.replace(event, trades=fresh)
            if event.transact_time_us <= self.last_boundary_us:
                return EventResult([], late=True, changed=False)
            self.last_trade_id = newest
            for point in trade_points(event):
                self.trades.add(point)
                self.context.add_trade(point.time_us, point.qty, point.sign)
            return EventResult([])
        if isinstance(event, QUICK_EVENTS):
            self.on_quote(event)
            return EventResult([])
        return EventResult([], changed=False)

    def on_quote(self, event: BestBidAskEvent | PerpQuoteEvent) -> None:
        """bookUpdateId jumps are normal (the stream sends the newest top only), never a gap signal;
        an update not newer than the last one of its market is stale and dropped."""
        if type(event) is BestBidAskEvent:
            if not self.quotes.add(event):
                self.stale_quotes += 1
                return
        elif not self.perp.add(event):
            self.stale_perp_quotes += 1
            return
        if event.event_time_us <= self.last_boundary_us:
            self.late_book_events += 1

    def on_batch(
        self, events: list[MarketEvent], receipts: list[int], interval_us: int, max_lead_us: int = event_rules.DEFAULT_MAX_LEAD_US
    ) -> BatchResult:
        """Apply a record's events in order, writing the book once at the end (only its last
        state reaches Redis), and collect the boundaries the events need a timer for.

        No event can stop the stream: one that fails ``event_rules`` (checked before anything
        changes) or raises while applied is a dead letter with its reason, and the rest go on.
        """
        changed = False
        writes: list[RedisWrite] = []
        gap_writes: list[RedisWrite] = []
        late_writes: list[RedisWrite] = []
        dead_writes: list[RedisWrite] = []
        timers: list[int] = []
        book_changed_at = None  # (event time, receipt) of the last book change
        quote_passes = event_rules.quote_passes
        lag = None
        for event, receipt in zip(events, receipts):
            try:
                if type(event) in QUICK_EVENTS:  # most frames, none writes: the short way
                    quote: BestBidAskEvent | PerpQuoteEvent = event  # type: ignore[assignment]  # QUICK_EVENTS are quotes
                    if not quote_passes(quote, receipt, max_lead_us):
                        reason = event_rules.problem(event, receipt, max_lead_us)
                        self.rejected_events += 1
                        dead_writes.append(rejected_write(event, reason or "refused", receipt))
                        changed = True
                        continue
                    self.on_quote(quote)
                    changed = True
                else:
                    result = self.on_event(event, receipt, write_book=False, max_lead_us=max_lead_us)
                    if result.rejected is not None:
                        dead_writes.append(rejected_write(event, result.rejected, receipt))
                        changed = True
                        continue
                    changed |= result.changed
                    writes.extend(result.writes)
                    if result.book_time_us is not None:
                        book_changed_at = (result.book_time_us, receipt)
                    if result.gap is not None:
                        gap_writes.append(gap_write(result.gap, receipt))
                    if result.late:  # windows up to that boundary are already written: recorded, not dropped silently
                        late_writes.append(late_write(event, receipt, self.last_boundary_us))  # type: ignore[arg-type]  # only trades are late
                if event.event_time_us:
                    if receipt:
                        lag = receipt - event.event_time_us if lag is None else min(lag, receipt - event.event_time_us)
                    boundary_us = self.timer_to_register(event.event_time_us, interval_us)
                    if boundary_us is not None:
                        timers.append(boundary_us)
                        changed = True
            except Exception as exc:  # noqa: BLE001 - a defect must cost one event, never the job (issue 28)
                self.rejected_events += 1
                dead_writes.append(rejected_write(event, f"raised {type(exc).__name__}: {exc}", receipt))
                changed = True
        if book_changed_at is not None:
            writes.append(self.book_write(*book_changed_at))
        if lag is not None:
            self.receipt_lag_us = lag
        self.enforce_caps()
        return BatchResult(coalesce(writes), gap_writes, late_writes, timers, changed, dead_writes)

    def enforce_caps(self) -> int:
        """Drop the oldest entries of any history past its cap (counted); returns how many."""
        dropped = 0
        entries = self.history.entries
        while len(entries) > MAX_BOOK_HISTORY:
            entries.popleft()
            dropped += 1
        for columns, cap in ((self.depth_flow, MAX_BOOK_HISTORY), (self.context, MAX_CONTEXT_BUCKETS)):
            excess = len(columns) - cap
            if excess > 0:
                columns.drop_oldest(excess)
                dropped += excess
        for quotes in (self.quotes, self.perp):
            excess = len(quotes) - MAX_QUOTES
            if excess > 0:
                quotes.drop_oldest(excess)
                dropped += excess
        points = self.trades.points
        while len(points) > MAX_TRADES:
            points.popleft()
            dropped += 1
        excess = len(self.pending_timers) - MAX_PENDING_TIMERS
        if excess > 0:  # a dropped boundary is registered again when an event needs it: cuts are idempotent
            self.pending_timers = set(sorted(self.pending_timers)[excess:])
            dropped += excess
        self.capped_entries += dropped
        return dropped

    def entries(self) -> int:
        """What keyed state holds, in entries (book levels, histories, trades, ring, timers): a gauge
        whose growth shows a leak long before memory does."""
        book = self.sync.book
        levels = len(book.bids) + len(book.asks) if book is not None else 0
        return (
            levels
            + len(self.history.entries)
            + len(self.quotes)
            + len(self.perp)
            + len(self.trades.points)
            + len(self.depth_flow)
            + len(self.context)
            + len(self.sync.recent)
            + len(self.pending_timers)
        )

    def timer_to_register(self, event_time_us: int, interval_us: int) -> int | None:
        """The boundary after ``event_time_us`` unless a timer for it is pending or it has been cut.

        Registrations cost a JVM round trip, so each boundary is registered once.
        Pending boundaries are a set, not a high-water mark: a trade that arrives
        600 ms ahead of the depth stream registers boundary N+1000 while N is
        pending, and a high-water mark then refused N+500 for the diffs behind it.
        """
        boundary = (event_time_us // interval_us + 1) * interval_us
        if boundary <= self.last_boundary_us or boundary in self.pending_timers:
            return None
        self.pending_timers.add(boundary)
        return boundary

    def following_timer(self, fired_us: int, interval_us: int) -> int | None:
        """After a boundary fires, the next one, unless pending already: the chain cuts through quiet stretches."""
        self.pending_timers = {t for t in self.pending_timers if t > fired_us}
        return self.timer_to_register(fired_us, interval_us)

    def _book_changed(self, time_us: int, receipt_time_us: int | None, write_book: bool) -> list[RedisWrite]:
        book = self.sync.book
        assert book is not None
        bids, asks = book.top_bids(DEEPEST), book.top_asks(DEEPEST)
        top = top_of(bids, asks, book.last_update_id, time_us)
        if top is not None:
            self.history.add(top, valid=self.sync.valid)
            entry = self.history.entries[-1]  # stamped no earlier than its predecessor
            self.depth_flow.add(entry.top.time_us, float_levels(bids), float_levels(asks))
            self.context.add_book(entry.top.time_us, entry.top.mid, entry.log_return_sq)
        return [self.book_write(time_us, receipt_time_us)] if write_book else []

    def book_write(self, time_us: int, receipt_time_us: int | None) -> RedisWrite:
        """The ``ob:`` hash of the current book, stamped with event time ``time_us``."""
        book = self.sync.book
        assert book is not None
        return RedisWrite(
            "hash",
            rs.ob_key(self.symbol),
            rs.ob_fields(book, time_us, self.sync.valid),
            receipt_time_us=receipt_time_us,
            version_field="last_update_id",
        )

    def cut(self, time_us: int) -> Snapshot | None:
        """Windows and features at boundary ``time_us``, then prune what no later boundary needs.

        The batch feature builder calls this directly, so training data comes from
        the very code that serves: None for a boundary not after the last one or
        before the book has a top.
        """
        if time_us <= self.last_boundary_us:
            return None
        self.last_boundary_us = time_us
        snap = compute_snapshot(time_us, self.history, self.trades, self.quotes, self.perp, self.depth_flow, self.context)
        self.trades.prune_before(time_us - LONGEST_WINDOW_US)
        self.history.prune(time_us)
        self.depth_flow.prune(time_us - HISTORY_US)
        self.quotes.prune(time_us)
        self.perp.prune(time_us)
        self.context.prune(time_us)
        return snap

    def due_boundaries(self, time_us: int, interval_us: int | None) -> list[int]:
        """The boundaries a timer at ``time_us`` cuts: every one not yet cut up to it, oldest first.

        PyFlink hands timer registrations to the JVM asynchronously. A registration
        that reaches the JVM after the watermark passed a later boundary fires after
        it, when its cut would be a no-op: that boundary was lost (the savepoint test's
        one missing ``feathist:`` entry, as the stream's backlog ran the watermark
        ahead after a resume). The later timer therefore cuts the ones it overtook;
        their values are still exact, since nothing they read has been pruned.
        """
        if time_us <= self.last_boundary_us:
            return []
        if not interval_us or not self.last_boundary_us or (time_us - self.last_boundary_us) % interval_us:
            return [time_us]
        first = max(self.last_boundary_us + interval_us, time_us - (MAX_CATCH_UP - 1) * interval_us)
        self.boundaries_skipped += (first - self.last_boundary_us) // interval_us - 1
        return list(range(first, time_us + 1, interval_us))

    def on_boundary(self, time_us: int, wall_us: int, interval_us: int | None = None) -> list[RedisWrite]:
        """Cut trade windows and features at event time ``time_us`` and, given ``interval_us``,
        at every boundary before it not cut yet (``due_boundaries``).

        Idempotent per boundary: a registration that arrives after its boundary
        already fired fires it a second time; a boundary not after the last one is a no-op.
        """
        writes: list[RedisWrite] = []
        for boundary_us in self.due_boundaries(time_us, interval_us):
            writes.extend(self._boundary_writes(boundary_us, wall_us))
        return writes

    def _boundary_writes(self, time_us: int, wall_us: int) -> list[RedisWrite]:
        try:
            snap = self.cut(time_us)
        except Exception as exc:  # noqa: BLE001 - one boundary's features lost, dead-lettered; the job goes on
            self.failed_cuts += 1
            return [dead_letter_write(f"cut at {time_us} µs raised {type(exc).__name__}: {exc}", self.symbol, wall_us)]
        if snap is None:
            return []
        window_fields = {name: rs.trade_fields(stats) for name, stats in snap.windows.items()}
        writes = [
            RedisWrite("hash", rs.trade_key(self.symbol, name), fields, ttl_s=rs.TRADE_TTL_S)
            for name, fields in window_fields.items()
        ]
        # the boundary's market time on our clock: what serving measures freshness from (a catch-up
        # after an outage cuts boundaries minutes old, fresh to the job, stale to a trader)
        market_wall_us = time_us + self.receipt_lag_us if self.receipt_lag_us is not None else None
        feat = rs.feat_fields(snap, wall_us, market_wall_us)
        writes.append(RedisWrite("hash", rs.feat_key(self.symbol), feat, ttl_s=rs.FEATURE_TTL_S, version_field="ts"))
        history_fields = dict(feat)
        for name, fields in window_fields.items():
            history_fields.update({f"tr_{name}_{k}": v for k, v in fields.items()})
        writes.append(RedisWrite("xadd", rs.feat_history_key(self.symbol), history_fields, maxlen=rs.FEATURE_HISTORY_MAXLEN))
        return writes
