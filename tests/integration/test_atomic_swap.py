"""Readers of ob: during repeated re-anchors see a whole book, old or new, never a mixed or empty one."""

import pytest

from btcpred.adapters import redis as redis_store
from btcpred.udfs import redis_schema as rs
from tests.integration.swap_workload import SwapWorkload

pytestmark = pytest.mark.integration

SYMBOL = "SWAPTEST"  # keys of its own: nothing else in the suite writes or reads them


def test_concurrent_readers_never_see_a_mixed_or_missing_book(redis_client, spot_events, settings):
    import redis

    workload = SwapWorkload(
        SYMBOL, lambda: redis_store.connect_writer(settings.redis, "hotpath"), lambda: redis.Redis.from_url(settings.redis.url)
    )
    try:
        reanchors = workload.run(spot_events, reanchors=120)
    finally:
        workload.close()
    assert reanchors >= 120 and workload.reads > 1000
    assert workload.problems == [] and workload.read_errors == 0
    assert not redis_client.exists(rs.next_key(rs.ob_key(SYMBOL)))  # nothing left aside


def test_an_older_version_never_replaces_a_newer_one(redis_client, settings):
    """After a restore from a checkpoint the job re-emits older books: Redis keeps the newest."""
    from btcpred.udfs.redis_writes import RedisWrite

    writer = redis_store.connect_writer(settings.redis, "hotpath")
    newer = RedisWrite("hash", "ob:{SWAPTEST}", {"last_update_id": "200", "best_bid": "2.0"}, version_field="last_update_id")
    older = RedisWrite("hash", "ob:{SWAPTEST}", {"last_update_id": "150", "best_bid": "1.5"}, version_field="last_update_id")
    same = RedisWrite("hash", "ob:{SWAPTEST}", {"last_update_id": "200", "best_bid": "2.5"}, version_field="last_update_id")
    feat = RedisWrite("hash", "feat:{SWAPTEST}", {"ts": "1000", "mid": "1.0"}, ttl_s=120, version_field="ts")
    redis_store.execute(writer, [newer, feat])
    redis_store.execute(writer, [older])
    assert redis_client.hgetall("ob:{SWAPTEST}") == {b"last_update_id": b"200", b"best_bid": b"2.0"}
    redis_store.execute(writer, [same])  # the same version again is a rewrite (idempotent replay)
    assert redis_client.hget("ob:{SWAPTEST}", "best_bid") == b"2.5"
    assert 0 < redis_client.ttl("feat:{SWAPTEST}") <= 120 and redis_client.ttl("ob:{SWAPTEST}") == -1
    assert not redis_client.exists("ob:{SWAPTEST}:next", "feat:{SWAPTEST}:next")
    writer.close()


def test_a_gap_detected_again_after_a_restore_is_recorded_once(redis_client, settings):
    from btcpred.udfs.order_book import Gap
    from btcpred.udfs.redis_writes import gap_write

    writer = redis_store.connect_writer(settings.redis, "hotpath")
    gap = Gap("SWAPTEST", 101, 105, 110, 1_000_000)
    redis_store.execute(writer, [gap_write(gap, 5)])
    redis_store.execute(writer, [gap_write(gap, 9)])  # the restored job meets the same diffs again
    redis_store.execute(writer, [gap_write(Gap("SWAPTEST", 201, 205, 210, 2_000_000), 9)])
    entries = redis_client.xrange("gaps:{SWAPTEST}")
    assert [e[1][b"expected_update_id"] for e in entries] == [b"101", b"201"]
    assert entries[0][1][b"receipt_time_us"] == b"5"
    writer.close()
