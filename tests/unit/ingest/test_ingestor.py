import asyncio
import json

from btcpred.common.config import load_settings
from btcpred.ingest.ingestor import Ingestor, aggregate
from btcpred.udfs import envelope, sbe
from btcpred.udfs.events import TradeEntry, TradesEvent


def make_ingestor(tmp_path):
    settings = load_settings(
        environ={
            "BTCPRED_KINESIS__ENDPOINT": "",
            "BTCPRED_INGESTOR__DEAD_LETTER_PATH": str(tmp_path / "dlq.jsonl"),
        }
    )
    return Ingestor(settings, kinesis_client=object())


def test_valid_frame_is_enveloped_with_receipt_time_and_keyed_by_symbol(tmp_path):
    ing = make_ingestor(tmp_path)
    frame = sbe.encode(TradesEvent("BTCUSDT", 5, 4, (TradeEntry(1, 100, 2, False),)))
    asyncio.run(ing.handle_frame(frame))
    symbol, env = ing.queue.get_nowait()
    assert symbol == "BTCUSDT"
    assert env.frame == frame and env.source == envelope.Source.WEBSOCKET and env.receipt_time_us > 1_700_000_000_000_000


def test_corrupt_frame_goes_to_dead_letter_file_not_to_kinesis(tmp_path):
    ing = make_ingestor(tmp_path)
    asyncio.run(ing.handle_frame(b"\x12\x00\x10\x27"))
    assert ing.queue.empty()
    (line,) = (tmp_path / "dlq.jsonl").read_text().splitlines()
    entry = json.loads(line)
    assert entry["reason"].startswith("truncated") and entry["frame_hex"] == "12001027"


def test_a_well_formed_frame_with_values_no_exchange_sends_is_a_dead_letter_with_its_reason(tmp_path):
    """The rules of ``udfs.event_rules`` at the first edge: a price of 0, a time an hour ahead of receipt."""
    import time

    from btcpred.ingest.ingestor import INVALID, INVALID_VALUE
    from btcpred.udfs.events import DepthDiffEvent

    ing = make_ingestor(tmp_path)
    before = INVALID.labels(INVALID_VALUE)._value.get()
    zero_price = sbe.encode(TradesEvent("BTCUSDT", 5, 4, (TradeEntry(1, 0, 2, False),)))
    ahead_us = time.time_ns() // 1000 + 3_600_000_000
    ahead = sbe.encode(DepthDiffEvent("BTCUSDT", ahead_us, 7, 8, ((100, 1),), ()))
    asyncio.run(ing.handle_frame(zero_price))
    asyncio.run(ing.handle_frame(ahead))
    assert ing.queue.empty() and INVALID.labels(INVALID_VALUE)._value.get() == before + 2
    first, second = (json.loads(line) for line in (tmp_path / "dlq.jsonl").read_text().splitlines())
    assert first["reason"] == "invalid_value: TradesEvent: trade 1 price 0 e8 not in (0, int64]"
    assert first["frame_hex"] == zero_price.hex()
    assert second["reason"].startswith("invalid_value: DepthDiffEvent: event time") and "ahead of its receipt" in second["reason"]


def test_combined_stream_url():
    ing = Ingestor(load_settings(environ={"BTCPRED_KINESIS__ENDPOINT": ""}), kinesis_client=object())
    assert ing.stream_url() == "ws://127.0.0.1:8765/stream?streams=btcusdt@trade/btcusdt@bestBidAsk/btcusdt@depth"


def test_one_connection_carries_every_symbols_streams_the_served_one_first():
    ing = Ingestor(
        load_settings(
            environ={
                "BTCPRED_KINESIS__ENDPOINT": "",
                "BTCPRED_EXCHANGE__SYMBOLS": "ETHUSDT,BTCUSDT",
                "BTCPRED_EXCHANGE__STREAMS": "trade,depth",
            }
        ),
        kinesis_client=object(),
    )
    assert ing.stream_url() == ("ws://127.0.0.1:8765/stream?streams=btcusdt@trade/btcusdt@depth/ethusdt@trade/ethusdt@depth")


def test_aggregation_groups_by_symbol_keeps_each_symbols_order_and_splits_on_snapshot_and_size():
    """Records go out in the order their first frames arrived; within one, a symbol's frames only."""
    ws = lambda i: envelope.Envelope(envelope.Source.WEBSOCKET, i, bytes([i]))  # noqa: E731
    rest = envelope.Envelope(envelope.Source.REST_SNAPSHOT, 9, b"snap")
    frames = [
        ("BTCUSDT", ws(1)),
        ("BTCUSDT", ws(2)),
        ("BTCUSDT", rest),
        ("BTCUSDT", ws(3)),
        ("ETHUSDT", ws(4)),
        ("BTCUSDT", ws(5)),
        ("BTCUSDT", ws(6)),
        ("BTCUSDT", ws(7)),
    ]
    records = aggregate(frames, max_frames=2)
    decoded = [(r.partition_key, [e.receipt_time_us for e in envelope.from_text(r.data.decode())]) for r in records]
    assert decoded == [
        ("BTCUSDT", [1, 2]),
        ("BTCUSDT", [9]),
        ("BTCUSDT", [3, 5]),
        ("ETHUSDT", [4]),
        ("BTCUSDT", [6, 7]),
    ]  # per symbol, in its arrival order: ETHUSDT's frame does not split BTCUSDT's [3, 5]
    assert all(r.data[:2] != b"Aw" for r in records)  # no version 3 (base64 "Aw..."): one source throughout


def test_a_long_window_of_two_symbols_never_moves_the_shared_watermark_past_an_unread_event():
    """Two keys' frames alternate (the second key's first, as when a window starts between a frame
    and its replay copy), 10 ms of data apart, 2.5 s in one window: more than ``max_frames`` each.
    Each record is stamped as the job stamps it (``split_record``, ``JointEventTime``) and the
    watermark before it is Flink's bounded out-of-orderness over the stamps seen: no record may hold
    an event at or behind it. Grouped by symbol, the first key's second record (2 s in) came before
    the second key's first (0 s): its events 1.8 s behind the watermark."""
    from btcpred.udfs.records import JointEventTime, split_record

    out_of_orderness_us = 200_000
    t0 = 1_723_161_255_000_000
    frames = []
    for i in range(250):
        for symbol in ("BTCUSDT-R1", "BTCUSDT"):
            t = t0 + i * 10_000
            frame = sbe.encode(TradesEvent(symbol, t, t, (TradeEntry(i + 1, 6_000_000_000_000, 1_000, False),)))
            frames.append((symbol, envelope.Envelope(envelope.Source.WEBSOCKET, t + 1_000_000, frame)))
    records = aggregate(frames, max_frames=200)
    assert [r.partition_key for r in records] == ["BTCUSDT-R1", "BTCUSDT", "BTCUSDT-R1", "BTCUSDT"]

    joint = JointEventTime()
    watermark_us = -(2**63)
    for record in records:
        (batch,) = split_record(record.data.decode("latin-1"), 0).batches
        oldest_us, _ = batch.event_times()
        assert oldest_us > watermark_us, (record.partition_key, oldest_us - watermark_us)
        stamp_ms = joint.stamp(batch, 0.0)
        watermark_us = max(watermark_us, (stamp_ms - 1) * 1000 - out_of_orderness_us)


class FlakyDepth:
    """A REST depth endpoint answering each call from a script: an exception to raise or a snapshot."""

    def __init__(self, answers):
        self.answers = list(answers)

    async def depth(self, symbol, limit):
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_a_malformed_snapshot_is_retried_and_reported_not_the_end_of_anchoring(tmp_path, monkeypatch):
    """A body whose levels are null raises TypeError inside the REST client (not an HTTP error). The
    anchor task counts it, /health turns red with the reason, and the next attempt anchors the book."""
    from prometheus_client import REGISTRY

    from btcpred.ingest import ingestor as module
    from btcpred.udfs.events import DepthSnapshotEvent

    good = DepthSnapshotEvent("BTCUSDT", 0, 42, ((100, 1),), ((101, 1),))
    rest = FlakyDepth([TypeError("'NoneType' object is not iterable"), good])
    monkeypatch.setattr(module, "BinanceRest", lambda url, session: rest)
    ing = make_ingestor(tmp_path)
    ing.snapshot_backoff_s = 0.0
    health = []

    async def run():
        real_sleep = asyncio.sleep

        async def observe(delay):  # /health as seen between the failed and the next attempt
            health.append(ing.health())
            await real_sleep(0)

        monkeypatch.setattr(module.asyncio, "sleep", observe)
        ing.anchored.add("BTCUSDT")
        await ing.inject_snapshot(None, "BTCUSDT")

    task = {"task": "anchor BTCUSDT"}
    before = REGISTRY.get_sample_value("ingest_task_failures_total", task) or 0.0
    asyncio.run(run())
    assert health == [(False, "anchor BTCUSDT: snapshot attempt 1: TypeError: 'NoneType' object is not iterable")]
    assert REGISTRY.get_sample_value("ingest_task_failures_total", task) == before + 1
    symbol, env = ing.queue.get_nowait()
    assert env.source == envelope.Source.REST_SNAPSHOT and ing.anchored == {"BTCUSDT"} and ing.health() == (True, "ok")


def test_when_every_snapshot_attempt_fails_the_next_diff_tries_again(tmp_path, monkeypatch):
    from btcpred.ingest import ingestor as module

    rest = FlakyDepth([ValueError("unexpected depth answer: {'code': -1121}")] * 5)
    monkeypatch.setattr(module, "BinanceRest", lambda url, session: rest)
    ing = make_ingestor(tmp_path)
    ing.snapshot_backoff_s = 0.0
    ing.anchored.update({"BTCUSDT", "ETHUSDT"})
    asyncio.run(ing.inject_snapshot(None, "BTCUSDT"))
    assert ing.anchored == {"ETHUSDT"} and ing.queue.empty()  # re-armed: BTCUSDT's next diff starts a new anchor task
    assert ing.health()[0] is False and "attempt 5" in ing.health()[1]


class ScriptedSocket:
    """A WebSocket that delivers ``frames`` as binary messages, then closes."""

    def __init__(self, frames: list[bytes]) -> None:
        import aiohttp

        self.messages = [aiohttp.WSMessage(aiohttp.WSMsgType.BINARY, f, None) for f in frames]
        self.messages.append(aiohttp.WSMessage(aiohttp.WSMsgType.CLOSED, None, None))

    async def receive(self, timeout: float):
        return self.messages.pop(0)


class DepthPerSymbol:
    """A REST depth endpoint answering each symbol with its own snapshot, recording who asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def depth(self, symbol, limit):
        from btcpred.udfs.events import DepthSnapshotEvent

        self.asked.append(symbol)
        return DepthSnapshotEvent(symbol, 0, 1000 + len(self.asked), ((100, 1),), ((101, 1),))


def test_each_carried_symbols_first_diff_anchors_that_symbols_book_once(tmp_path, monkeypatch):
    from btcpred.ingest import ingestor as module
    from btcpred.udfs.events import DepthDiffEvent

    rest = DepthPerSymbol()
    monkeypatch.setattr(module, "BinanceRest", lambda url, session: rest)
    ing = make_ingestor(tmp_path)
    diff = lambda symbol, u: sbe.encode(DepthDiffEvent(symbol, 5_000, u, u, ((100, 2),), ()))  # noqa: E731
    socket = ScriptedSocket([diff("BTCUSDT", 7), diff("ETHUSDT", 3), diff("BTCUSDT", 8), diff("ETHUSDT", 4)])

    async def run():
        reason = await ing._read_connection(socket, None, rotate_at=float("inf"))
        await asyncio.gather(*ing._tasks)  # the anchor tasks run off the read path
        return reason

    assert asyncio.run(run()) == "closed"
    assert sorted(rest.asked) == ["BTCUSDT", "ETHUSDT"] and ing.anchored == {"BTCUSDT", "ETHUSDT"}
    queued = [ing.queue.get_nowait() for _ in range(ing.queue.qsize())]
    snapshots = {symbol: sbe.decode(env.frame).symbol for symbol, env in queued if env.source == envelope.Source.REST_SNAPSHOT}
    assert snapshots == {"BTCUSDT": "BTCUSDT", "ETHUSDT": "ETHUSDT"}  # each under its own partition key
    assert [symbol for symbol, env in queued if env.source == envelope.Source.WEBSOCKET] == [
        "BTCUSDT",
        "ETHUSDT",
        "BTCUSDT",
        "ETHUSDT",
    ]
