"""Each service's Redis user can do its job and nothing more (the stack's redis-server runs deploy/redis_acl.py's rules)."""

import pytest
import redis

from btcpred.adapters import redis as redis_store
from btcpred.common.config import RedisConfig
from btcpred.udfs import redis_schema as rs
from btcpred.udfs.redis_writes import RedisWrite

pytestmark = pytest.mark.integration

SYM = "ACLTEST"


@pytest.fixture()
def as_role(settings, redis_client):
    opened = []

    def connect(role):
        client = redis_store.connect(settings.redis, role)
        opened.append(client)
        return client

    redis_client.hset(rs.ob_key(SYM), mapping={"last_update_id": "7", "book_valid": "1"})
    redis_client.hset(rs.feat_key(SYM), mapping={"ts": "1000", "mid": "1.5"})
    yield connect
    for client in opened:
        client.close()


def denied(call) -> None:
    with pytest.raises(redis.exceptions.NoPermissionError):
        call()


def test_inference_reads_the_hot_state_and_cannot_change_it(as_role, redis_client):
    inference = as_role("inference")
    assert inference.hgetall(rs.ob_key(SYM))[b"last_update_id"] == b"7"
    assert inference.exists(rs.reanchor_key(SYM)) == 0
    inference.xadd(rs.prediction_stream_key(SYM), {"price": "1"})  # its one write: its own predictions
    denied(lambda: inference.hset(rs.ob_key(SYM), "last_update_id", "8"))
    denied(lambda: inference.delete(rs.feat_key(SYM)))
    denied(lambda: inference.expire(rs.feat_key(SYM), 1))
    denied(lambda: inference.rename(rs.ob_key(SYM), rs.next_key(rs.ob_key(SYM))))
    denied(lambda: inference.xadd(rs.feat_history_key(SYM), {"ts": "1"}))
    denied(lambda: inference.eval("return redis.call('DEL', KEYS[1])", 1, rs.ob_key(SYM)))
    denied(lambda: inference.flushall())
    denied(lambda: inference.get("somewhere:else"))
    assert redis_client.hgetall(rs.ob_key(SYM)) == {b"last_update_id": b"7", b"book_valid": b"1"}
    assert redis_client.exists(rs.feat_key(SYM)) == 1 and redis_client.ttl(rs.feat_key(SYM)) == -1


def test_the_flink_job_writes_hot_state_and_only_hot_state(as_role, redis_client):
    hotpath = as_role("hotpath")
    redis_store.execute(
        hotpath,
        [  # the writer's real batch: versioned Lua swap, plain swap, stream entry
            RedisWrite("hash", rs.ob_key(SYM), {"last_update_id": "9", "book_valid": "1"}, version_field="last_update_id"),
            RedisWrite("hash", rs.trade_key(SYM, "1s"), {"count": "3"}, ttl_s=300),
            RedisWrite("xadd", rs.feat_history_key(SYM), {"ts": "1"}, maxlen=10),
        ],
    )
    assert redis_client.hget(rs.ob_key(SYM), "last_update_id") == b"9"
    denied(lambda: hotpath.xadd(rs.prediction_stream_key(SYM), {"price": "1"}))
    denied(lambda: hotpath.set(rs.reanchor_key(SYM), "x"))
    denied(lambda: hotpath.set("somewhere:else", "x"))
    denied(lambda: hotpath.flushall())
    denied(lambda: hotpath.keys("*"))
    denied(lambda: hotpath.config_get("*"))


def test_the_reanchor_service_holds_its_lock_reads_gaps_and_cannot_touch_the_book(as_role, redis_client):
    reanchor = as_role("reanchor")
    assert reanchor.set(rs.reanchor_key(SYM), "owner", nx=True, px=1000)
    redis_client.xadd(rs.gap_stream_key(SYM), {"expected_update_id": "5"})
    reanchor.xgroup_create(rs.gap_stream_key(SYM), "reanchor", id="0")
    ((_, entries),) = reanchor.xreadgroup("reanchor", "c1", {rs.gap_stream_key(SYM): ">"})
    assert (
        entries[0][1] == {b"expected_update_id": b"5"} and reanchor.xack(rs.gap_stream_key(SYM), "reanchor", entries[0][0]) == 1
    )
    assert reanchor.hget(rs.ob_key(SYM), "book_valid") == b"1"
    denied(lambda: reanchor.hset(rs.ob_key(SYM), "book_valid", "0"))
    denied(lambda: reanchor.delete(rs.feat_key(SYM)))


def test_the_retraining_job_reads_what_inference_published_and_nothing_else(as_role, redis_client):
    trainer = as_role("trainer")
    as_role("inference").xadd(rs.contest_stream_key(SYM), {"action": "demote"})  # the service writes its decisions
    assert [fields for _, fields in trainer.xrange(rs.contest_stream_key(SYM))] == [{b"action": b"demote"}]
    denied(lambda: trainer.xadd(rs.contest_stream_key(SYM), {"action": "promote"}))
    denied(lambda: trainer.delete(rs.contest_stream_key(SYM)))
    denied(lambda: trainer.hgetall(rs.ob_key(SYM)))
    assert trainer.xrange(rs.prediction_stream_key(SYM)) == []  # it reads the predictions too, to archive them
    denied(lambda: trainer.xadd(rs.prediction_stream_key(SYM), {"price": "1"}))
    redis_client.delete(rs.contest_stream_key(SYM))


def test_a_wrong_password_or_no_password_is_refused(settings):
    wrong = RedisConfig(
        host=settings.redis.host,
        port=settings.redis.port,
        users={"hotpath": "nope", "inference": "nope", "reanchor": "nope", "trainer": "nope"},
    )
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis_store.connect(wrong, "inference").ping()
    anonymous = redis.Redis(host=settings.redis.host, port=settings.redis.port)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.get(rs.ob_key(SYM))
    anonymous.close()
