"""The live job's graph (``hot_path_job.build``) on the PyFlink mini cluster, output by output.

A bounded source of Kinesis records built from real capture frames (the simulator's SBE
encoding, packed the way the ingestor packs them) runs through the very operators the
live job runs: decode, watermarks, the keyed book/windows/features, side outputs. The
injected faults are synthetic: two depth diffs dropped, a drift-check snapshot, a healing
snapshot, a damaged trade frame and a record that is no envelope. A collecting sink keeps
every write instead of Redis.

What is expected comes from two places:
- hand-checked facts about the input: one gap naming the dropped ids, the book equal to the
  exchange's, two dead letters, one drift check with nothing mismatched, contiguous
  boundaries, features stale exactly from the gap diff to the healing snapshot;
- the job's own state machine driven record by record with Flink's timer rules, for the
  exact values: the graph must add nothing, lose nothing and reorder nothing. It is driven
  twice, with the most eager watermark and with none until the end; the input is chosen so
  both give the same writes, so Flink's output cannot depend on when its watermarks came
  (a bounded input this small is through before most periodic watermarks: which timers
  fire before the end of input varies from run to run, so lateness is the e2e tests' matter).

No Kinesis, no Redis: this tier catches graph regressions (operator order, chaining,
side outputs, timer wiring) in seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from btcpred.udfs import envelope, sbe
from btcpred.udfs.events import DepthDiffEvent, DepthSnapshotEvent, TradesEvent
from btcpred.udfs.order_book import OrderBook
from btcpred.udfs.records import decode_record
from btcpred.udfs.redis_writes import RedisWrite
from btcpred.udfs.symbol_state import SymbolState
from rig.simulator.exchange import SimulatedExchange
from rig.simulator.faults import corrupt

pytestmark = pytest.mark.jobgraph

SYMBOL = "BTCUSDT"
INTERVAL_US = 500_000
OUT_OF_ORDERNESS_MS = 200
FRAMES_PER_RECORD = 20
SECONDS = 50  # of the capture: ~6,000 frames, ~100 boundaries


@dataclass(frozen=True)
class GraphInput:
    records: list[str]
    dropped: tuple[tuple[int, int], tuple[int, int]]  # (U, u) of the two dropped diffs
    drift_snapshot_id: int
    healing_snapshot_id: int
    exchange_book: OrderBook  # the exchange's book after the last diff of the slice


def _snapshot(book: OrderBook) -> DepthSnapshotEvent:
    """A REST answer: the whole book, no exchange time."""
    return DepthSnapshotEvent(SYMBOL, 0, book.last_update_id, tuple(book.bids.items()), tuple(book.asks.items()))


def _copy(book: OrderBook) -> OrderBook:
    return OrderBook.from_snapshot(_snapshot(book))


def graph_input(events) -> GraphInput:
    """The first ``SECONDS`` of the capture as records, with the faults placed by position:
    a drift check's snapshot at 25 % (taken 3 diffs before it goes in band), two diffs dropped
    at 45 %, a healing snapshot taken 5 diffs after the drop and put in band 3 diffs later
    (REST runs ahead of the stream), a damaged trade frame at 70 %, a non-envelope record at 80 %."""
    snapshot = next(c.event for c in events if isinstance(c.event, DepthSnapshotEvent))
    exchange = SimulatedExchange(events)
    start_us = next(c.receipt_time_us for c in events if not isinstance(c.event, DepthSnapshotEvent))
    frames = [
        (c.receipt_time_us, c.event, out[1])
        for c in events
        if c.receipt_time_us < start_us + SECONDS * 1_000_000 and (out := exchange.process(c)) is not None
    ]
    diff_positions = [
        i for i, (_, e, _) in enumerate(frames) if isinstance(e, DepthDiffEvent) and e.last_update_id > snapshot.book_update_id
    ]
    n = len(frames)
    drift_at = next(i for i in diff_positions if i > n * 0.25)
    drop_at = next(i for i in diff_positions if i > n * 0.45)
    drop = diff_positions[diff_positions.index(drop_at) :][:2]
    healing_at = diff_positions[diff_positions.index(drop_at) + 7]
    corrupt_at = next(i for i in range(int(n * 0.7), n) if isinstance(frames[i][1], TradesEvent))

    replayed = OrderBook.from_snapshot(snapshot)  # the exchange's book as each frame is sent
    units: list[tuple[envelope.Source, int, bytes] | str] = [(envelope.Source.REST_SNAPSHOT, start_us, sbe.encode(snapshot))]
    held: dict[int, DepthSnapshotEvent] = {}  # snapshots fetched, by the position where they go in band
    ids = {}
    for i, (receipt, event, frame) in enumerate(frames):
        if isinstance(event, DepthDiffEvent) and event.last_update_id > replayed.last_update_id:
            replayed.apply_levels(event)
        if i in held:
            units.append((envelope.Source.REST_SNAPSHOT, receipt, sbe.encode(held.pop(i))))
        if i == int(n * 0.8):
            units.append("not an envelope")
        if i in drop:
            continue
        units.append((envelope.Source.WEBSOCKET, receipt, corrupt(frame) if i == corrupt_at else frame))
        if i in (drift_at, healing_at):
            later = diff_positions[diff_positions.index(i) + 3]
            held[later] = _snapshot(replayed)
            ids["drift" if i == drift_at else "healing"] = replayed.last_update_id
    records: list[str] = []
    group: list[envelope.Envelope] = []
    for unit in units:  # the ingestor's packing: consecutive frames of one source, at most FRAMES_PER_RECORD
        if group and (isinstance(unit, str) or unit[0] != group[-1].source or len(group) >= FRAMES_PER_RECORD):
            records.append(envelope.batch_to_text(group))
            group = []
        if isinstance(unit, str):
            records.append(unit)
        else:
            group.append(envelope.Envelope(*unit))
    records.append(envelope.batch_to_text(group))
    dropped = tuple((frames[i][1].first_update_id, frames[i][1].last_update_id) for i in drop)
    return GraphInput(records, dropped, ids["drift"], ids["healing"], replayed)


# ---------------------------------------------------------------- the expected writes
def expected_writes(records: list[str], eager: bool) -> list[RedisWrite]:
    """The job's operators in order with Flink's timer rules: a timer fires once the watermark
    (largest event time so far - out-of-orderness - 1 ms) reaches it, earliest first, and
    registers the following boundary; at the end of input every pending timer fires, and no
    following one. ``eager`` advances the watermark after every record; otherwise only at the end."""
    st = SymbolState(SYMBOL)
    pending: set[int] = set()
    out: list[RedisWrite] = []
    max_ms = None

    def fire(watermark_ms: float, chain: bool) -> None:
        while pending and min(pending) // 1000 <= watermark_ms:
            due = min(pending)
            pending.remove(due)
            out.extend(st.on_boundary(due, 0, INTERVAL_US))
            following = st.following_timer(due, INTERVAL_US) if chain else None
            if following is not None:
                pending.add(following)

    for value in records:
        record = decode_record(value, 0)
        out.extend(record.dead_letters)
        for batch in record.batches:
            result = st.on_batch(batch.events, batch.receipts, INTERVAL_US)
            out.extend(result.gap_writes + result.late_writes + result.writes)
            pending.update(result.timers)
            if batch.event_time_ms:
                max_ms = max(max_ms or 0, batch.event_time_ms)
        if eager and max_ms is not None:
            fire(max_ms - OUT_OF_ORDERNESS_MS - 1, chain=True)
    fire(float("inf"), chain=False)
    return out


# ---------------------------------------------------------------- the job graph, collected
GRAPH_JOB = Path(__file__).with_name("collect_job.py")


def run_graph(records: list[str], work: Path) -> list[list]:
    """The graph in a child process (PyFlink's gateway, JVM and Beam stay out of pytest's)."""
    source, out = work / "records.json", work / "writes.jsonl"
    source.write_text(json.dumps(records))
    done = subprocess.run(
        [
            sys.executable,
            str(GRAPH_JOB),
            str(source),
            str(out),
            str(work / "checkpoints"),
            str(INTERVAL_US // 1000),
            str(OUT_OF_ORDERNESS_MS),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "AWS_CBOR_DISABLE": "true"},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return [json.loads(line) for line in out.read_text().splitlines()]


def as_rows(writes: list[RedisWrite]) -> list[list]:
    return [json.loads(json.dumps([w.kind, w.key, w.fields, w.receipt_time_us])) for w in writes]


def of_key(rows: list[list], key: str, drop: tuple[str, ...] = ()) -> list[list]:
    """The rows of one key in output order (each key comes from one stream: its order is the job's),
    with wall-clock fields left out."""
    return [
        [kind, k, {f: v for f, v in fields.items() if f not in drop}, receipt] for kind, k, fields, receipt in rows if k == key
    ]


@pytest.fixture(scope="module")
def graph_run(spot_slice, tmp_path_factory):
    given = graph_input(spot_slice)
    lazy, eager = as_rows(expected_writes(given.records, eager=False)), as_rows(expected_writes(given.records, eager=True))
    collected = run_graph(given.records, tmp_path_factory.mktemp("graph"))
    return given, lazy, eager, collected


# wall-clock fields differ run to run: emitted_at_us, and market_wall_us (the receipt lag of the last record the
# key had seen when its boundary was cut, which depends on when the watermark passed it)
WALL = ("emitted_at_us", "market_wall_us")
KEYS = {
    "ob:{BTCUSDT}": (),
    "feathist:{BTCUSDT}": WALL,
    "feat:{BTCUSDT}": WALL,
    "tr:{BTCUSDT}:1s": (),
    "tr:{BTCUSDT}:5s": (),
    "gaps:{BTCUSDT}": (),
    "late:{BTCUSDT}": (),
    "drift:{BTCUSDT}": (),
    "dlq:hotpath": ("receipt_time_us",),
}


def test_the_input_does_not_depend_on_watermark_timing(graph_run):
    _, lazy, eager, _ = graph_run
    for key, drop in KEYS.items():
        assert of_key(eager, key, drop) == of_key(lazy, key, drop), key
    assert {k for _, k, _, _ in lazy} <= set(KEYS)


def test_every_output_of_the_graph_equals_the_state_machine_record_by_record(graph_run):
    _, lazy, _, collected = graph_run
    assert {k for _, k, _, _ in collected} <= set(KEYS), {k for _, k, _, _ in collected}
    for key, drop in KEYS.items():
        got, want = of_key(collected, key, drop), of_key(lazy, key, drop)
        first_diff = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        assert got == want, (
            f"{key}: {len(got)} written, {len(want)} expected; first difference at #{first_diff}: "
            f"{got[first_diff : first_diff + 1]} vs {want[first_diff : first_diff + 1]}"
        )


def test_book_gap_drift_and_dead_letters_by_hand(graph_run):
    given, _, _, collected = graph_run
    (dropped_first, _), (_, dropped_last) = given.dropped
    # one gap, naming the dropped ids
    gaps = [fields for _, _, fields, _ in of_key(collected, "gaps:{BTCUSDT}")]
    assert [(int(g["expected_update_id"]), int(g["first_update_id"])) for g in gaps] == [(dropped_first, dropped_last + 1)], gaps
    # the last book written is the exchange's, level by level (top 10)
    books = [fields for _, _, fields, _ in of_key(collected, "ob:{BTCUSDT}")]
    last = max(books, key=lambda b: int(b["last_update_id"]))
    assert int(last["last_update_id"]) == given.exchange_book.last_update_id and last["book_valid"] == "1"
    for i, (price, qty) in enumerate(given.exchange_book.top_bids(10), 1):
        assert (float(last[f"bid{i}_p"]), float(last[f"bid{i}_q"])) == (price / 1e8, qty / 1e8), i
    for i, (price, qty) in enumerate(given.exchange_book.top_asks(10), 1):
        assert (float(last[f"ask{i}_p"]), float(last[f"ask{i}_q"])) == (price / 1e8, qty / 1e8), i
    # ob: versions only move forward (one write per record that changed the book)
    ids = [int(b["last_update_id"]) for b in books]
    assert ids == sorted(ids) and len(books) > 100
    # the drift check's snapshot met the valid book at its own id and found nothing wrong
    drift = [fields for _, _, fields, _ in of_key(collected, "drift:{BTCUSDT}")]
    assert len(drift) == 1 and drift[0]["levels_mismatched"] == "0" and int(drift[0]["levels_compared"]) >= 40, drift
    assert int(drift[0]["snapshot_update_id"]) == given.drift_snapshot_id
    # two dead letters: the record that is no envelope, the damaged trade frame
    reasons = sorted(fields["reason"].split(":")[0] for _, _, fields, _ in of_key(collected, "dlq:hotpath"))
    assert len(reasons) == 2 and reasons[0] == "envelope" and reasons[1].startswith("sbe "), reasons
    assert of_key(collected, "late:{BTCUSDT}") == []


def test_boundaries_are_contiguous_and_stale_exactly_from_the_gap_to_the_snapshot(graph_run):
    given, _, _, collected = graph_run
    (dropped_first, _), _ = given.dropped
    history = [fields for _, _, fields, _ in of_key(collected, "feathist:{BTCUSDT}")]
    stamps = [int(h["ts"]) for h in history]
    assert stamps == list(range(stamps[0], stamps[0] + INTERVAL_US * len(stamps), INTERVAL_US))
    assert len(stamps) >= 2 * (SECONDS - 8), len(stamps)
    stale = [h for h in history if h["book_valid"] == "0.0"]
    ids = [int(float(h["book_update_id"])) for h in stale]
    assert stale and min(ids) > dropped_first and max(ids) < given.healing_snapshot_id, (ids, given.dropped)
    first, last = history.index(stale[0]), history.index(stale[-1])
    assert all(h["book_valid"] == "0.0" for h in history[first : last + 1])  # one unbroken stale stretch
    assert all(h["book_valid"] == "1.0" for h in history[last + 1 :])
    assert int(float(history[last + 1]["book_update_id"])) >= given.healing_snapshot_id
