"""Readers of ob: during repeated re-anchors see a whole book, old or new, never a mixed or empty one."""
import threading

import pytest

from flink_jobs import redis_writer
from flink_jobs.hot_path_state import SymbolState, coalesce
from udfs import redis_schema as rs
from udfs.events import DepthDiffEvent, DepthSnapshotEvent

pytestmark = pytest.mark.integration

VOLATILE = {"receipt_time_us", "written_at_us"}


def snapshot_of(state: SymbolState) -> DepthSnapshotEvent:
    """A REST snapshot equal to the exchange's book at the current update id (built from the real book)."""
    book = state.sync.book
    return DepthSnapshotEvent("BTCUSDT", 0, book.last_update_id, tuple(book.bids.items())[::-1], tuple(book.asks.items()))


SYMBOL = "SWAPTEST"  # keys of its own: nothing else in the suite writes or reads them


def test_concurrent_readers_never_see_a_mixed_or_missing_book(redis_client, spot_events, settings):
    state = SymbolState(SYMBOL)
    written: dict[str, dict[str, str]] = {}
    writer = redis_writer.connect(settings.redis, "hotpath")
    stop = threading.Event()
    problems: list[str] = []
    reads = [0]
    first_write = threading.Event()  # set once ob: exists: from then on it must never be missing

    def reader() -> None:
        import redis

        client = redis.Redis.from_url(settings.redis.url)
        while not stop.is_set():
            armed = first_write.is_set()  # read the flag first: a read that began before the first write may be empty
            raw = client.hgetall(rs.ob_key(SYMBOL))
            if not raw:
                if armed:
                    problems.append("empty book after the first write")
                continue
            got = {k.decode(): v.decode() for k, v in raw.items() if k.decode() not in VOLATILE}
            expected = written.get(got.get("last_update_id", ""))
            if expected != got:
                problems.append(f"book at {got.get('last_update_id')} is not one that was written")
            reads[0] += 1
        client.close()

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for t in readers:
        t.start()
    reanchors = diffs = 0
    try:
        for captured in spot_events:
            event = captured.event
            if not isinstance(event, (DepthDiffEvent, DepthSnapshotEvent)):
                continue
            writes = list(state.on_event(event, captured.receipt_time_us).writes)
            if isinstance(event, DepthDiffEvent) and state.sync.valid:
                diffs += 1
                if diffs % 25 == 0:  # re-anchor every 25 diffs: book rebuilt aside, swapped in
                    writes += state.on_event(snapshot_of(state), captured.receipt_time_us).writes
                    reanchors += 1
            for w in coalesce(writes):
                if w.key == rs.ob_key(SYMBOL):
                    written[w.fields["last_update_id"]] = dict(w.fields)
            if writes:
                redis_writer.execute(writer, coalesce(writes))  # expected versions are registered before
                first_write.set()
            if reanchors >= 120:
                break
    finally:
        stop.set()
        for t in readers:
            t.join(10)
        writer.close()
    assert reanchors >= 120 and reads[0] > 1000
    assert problems == []
    assert not redis_client.exists(rs.next_key(rs.ob_key(SYMBOL)))  # nothing left aside


def test_an_older_version_never_replaces_a_newer_one(redis_client, settings):
    """After a restore from a checkpoint the job re-emits older books: Redis keeps the newest."""
    from flink_jobs.hot_path_state import RedisWrite

    writer = redis_writer.connect(settings.redis, "hotpath")
    newer = RedisWrite("hash", "ob:{SWAPTEST}", {"last_update_id": "200", "best_bid": "2.0"}, version_field="last_update_id")
    older = RedisWrite("hash", "ob:{SWAPTEST}", {"last_update_id": "150", "best_bid": "1.5"}, version_field="last_update_id")
    same = RedisWrite("hash", "ob:{SWAPTEST}", {"last_update_id": "200", "best_bid": "2.5"}, version_field="last_update_id")
    feat = RedisWrite("hash", "feat:{SWAPTEST}", {"ts": "1000", "mid": "1.0"}, ttl_s=120, version_field="ts")
    redis_writer.execute(writer, [newer, feat])
    redis_writer.execute(writer, [older])
    assert redis_client.hgetall("ob:{SWAPTEST}") == {b"last_update_id": b"200", b"best_bid": b"2.0"}
    redis_writer.execute(writer, [same])  # the same version again is a rewrite (idempotent replay)
    assert redis_client.hget("ob:{SWAPTEST}", "best_bid") == b"2.5"
    assert 0 < redis_client.ttl("feat:{SWAPTEST}") <= 120 and redis_client.ttl("ob:{SWAPTEST}") == -1
    assert not redis_client.exists("ob:{SWAPTEST}:next", "feat:{SWAPTEST}:next")
    writer.close()


def test_a_gap_detected_again_after_a_restore_is_recorded_once(redis_client, settings):
    from flink_jobs.hot_path_state import gap_write
    from udfs.order_book import Gap

    writer = redis_writer.connect(settings.redis, "hotpath")
    gap = Gap("SWAPTEST", 101, 105, 110, 1_000_000)
    redis_writer.execute(writer, [gap_write(gap, 5)])
    redis_writer.execute(writer, [gap_write(gap, 9)])  # the restored job meets the same diffs again
    redis_writer.execute(writer, [gap_write(Gap("SWAPTEST", 201, 205, 210, 2_000_000), 9)])
    entries = redis_client.xrange("gaps:{SWAPTEST}")
    assert [e[1][b"expected_update_id"] for e in entries] == [b"101", b"201"]
    assert entries[0][1][b"receipt_time_us"] == b"5"
    writer.close()
