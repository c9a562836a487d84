"""Re-anchors of a real book, written through the job's writer, with readers checking every read.

Diffs of the real capture are applied; every 25 diffs a snapshot equal to the book is put
in (the re-anchor: the book rebuilt aside and swapped in). Readers loop on ``ob:`` and
flag any read that is not a whole book the writer wrote (mixed, half-written) and any
empty read after the first write. Shared by the single-node and the Redis Cluster tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from btcpred.adapters import redis as redis_store
from btcpred.udfs import redis_schema as rs
from btcpred.udfs.events import DepthDiffEvent, DepthSnapshotEvent
from btcpred.udfs.redis_writes import coalesce
from btcpred.udfs.symbol_state import SymbolState

VOLATILE = {"receipt_time_us", "written_at_us"}
TRANSIENT = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.ClusterError,
    redis.exceptions.TryAgainError,
)


def snapshot_of(state: SymbolState) -> DepthSnapshotEvent:
    """A REST snapshot equal to the exchange's book at the current update id (built from the real book)."""
    book = state.sync.book
    return DepthSnapshotEvent(state.symbol, 0, book.last_update_id, tuple(book.bids.items())[::-1], tuple(book.asks.items()))


@dataclass
class SwapWorkload:
    """``writer_factory``/``reader_factory`` make clients; after a transient error a client is made
    anew, as the job's Redis sink is when its task restarts (and a cluster client then reads the
    new slot map)."""

    symbol: str
    writer_factory: Callable[[], object]
    reader_factory: Callable[[], object]
    written: dict[str, dict[str, str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    reads: int = 0
    read_errors: int = 0  # reads that failed outright (a failover): refused, never wrong
    write_retries: int = 0
    longest_write_s: float = 0.0  # a batch held up by a failover shows here, even if the client retried it itself
    last_written: dict[str, str] | None = None

    def _reader(self, stop: threading.Event, first_write: threading.Event) -> None:
        client = self.reader_factory()
        while not stop.is_set():
            armed = first_write.is_set()  # read the flag first: a read that began before the first write may be empty
            try:
                raw = client.hgetall(rs.ob_key(self.symbol))
            except TRANSIENT:
                self.read_errors += 1
                client.close()
                time.sleep(0.1)
                client = self.reader_factory()
                continue
            if not raw:
                if armed:
                    self.problems.append("empty book after the first write")
                continue
            got = {k.decode(): v.decode() for k, v in raw.items() if k.decode() not in VOLATILE}
            if self.written.get(got.get("last_update_id", "")) != got:
                self.problems.append(f"book at {got.get('last_update_id')} is not one that was written")
            self.reads += 1
        client.close()

    def _execute(self, writes) -> None:
        started = time.monotonic()
        while True:
            try:
                redis_store.execute(self.writer, writes)
                self.longest_write_s = max(self.longest_write_s, time.monotonic() - started)
                return
            except TRANSIENT:  # the job's sink fails, its task restarts with a new client: the same here
                self.write_retries += 1
                self.writer.close()
                time.sleep(0.2)
                self.writer = self.writer_factory()

    def final_book(self) -> dict[str, str]:
        return {
            k.decode(): v.decode() for k, v in self.writer.hgetall(rs.ob_key(self.symbol)).items() if k.decode() not in VOLATILE
        }

    def run(self, spot_events, reanchors: int, on_reanchor: Callable[[int], None] | None = None) -> int:
        self.writer = self.writer_factory()
        state = SymbolState(self.symbol)
        stop, first_write = threading.Event(), threading.Event()
        readers = [threading.Thread(target=self._reader, args=(stop, first_write)) for _ in range(3)]
        for t in readers:
            t.start()
        done = diffs = 0
        try:
            for captured in spot_events:
                event = captured.event
                if not isinstance(event, (DepthDiffEvent, DepthSnapshotEvent)):
                    continue
                writes = list(state.on_event(event, captured.receipt_time_us).writes)
                if isinstance(event, DepthDiffEvent) and state.sync.valid:
                    diffs += 1
                    if diffs % 25 == 0:
                        writes += state.on_event(snapshot_of(state), captured.receipt_time_us).writes
                        done += 1
                        if on_reanchor:
                            on_reanchor(done)
                for w in coalesce(writes):
                    if w.key == rs.ob_key(self.symbol):
                        self.written[w.fields["last_update_id"]] = dict(w.fields)  # registered before it is written
                        self.last_written = dict(w.fields)
                if writes:
                    self._execute(coalesce(writes))
                    first_write.set()
                if done >= reanchors:
                    break
        finally:
            stop.set()
            for t in readers:
                t.join(10)
        return done

    def close(self) -> None:
        if getattr(self, "writer", None) is not None:
            self.writer.close()
