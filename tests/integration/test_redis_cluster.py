"""The hot-path writer against a real local Redis Cluster (3 masters, 3 replicas): the
re-anchor swap stays one slot's transaction, readers never see a mixed or missing book,
and the writes ride out the SIGKILL of the master serving the book's slot."""

import time

import pytest
import redis
from redis.cluster import RedisCluster

from btcpred.adapters import redis as redis_store
from btcpred.common.config import RedisConfig
from btcpred.udfs import redis_schema as rs
from btcpred.udfs.redis_writes import RedisWrite
from rig.redis_cluster import LocalRedisCluster
from tests.integration.swap_workload import SwapWorkload

pytestmark = pytest.mark.integration

SYMBOL = "BTCUSDT"


@pytest.fixture()
def cluster(tmp_path):
    local = LocalRedisCluster(directory=tmp_path / "redis-cluster", base_port=7100)
    local.start()
    yield local
    local.stop()


def cluster_config(cluster: LocalRedisCluster) -> RedisConfig:
    return RedisConfig(host="127.0.0.1", port=cluster.base_port, cluster=True)


def plain_client_factory(cfg: RedisConfig):
    """redis-py's cluster client with its own retries only and 1 s timeouts: readers, and the failover's writer."""
    return lambda: RedisCluster(host=cfg.host, port=cfg.port, socket_timeout=1, socket_connect_timeout=1)


def test_every_key_of_a_symbol_shares_one_slot_and_other_symbols_are_refused(cluster):
    cfg = cluster_config(cluster)
    client = redis_store.connect_writer(cfg, "hotpath")
    keys = [
        rs.ob_key(SYMBOL),
        rs.next_key(rs.ob_key(SYMBOL)),
        rs.trade_key(SYMBOL, "1s"),
        rs.feat_key(SYMBOL),
        rs.feat_history_key(SYMBOL),
        rs.gap_stream_key(SYMBOL),
        rs.reanchor_key(SYMBOL),
        rs.prediction_stream_key(SYMBOL),
    ]
    assert len({client.keyslot(k) for k in keys}) == 1
    with pytest.raises(redis.exceptions.RedisClusterException):  # no silent cross-slot batch
        redis_store.execute(
            client,
            [
                RedisWrite("hash", rs.ob_key(SYMBOL), {"last_update_id": "1"}, version_field="last_update_id"),
                RedisWrite("hash", rs.ob_key("ETHUSDT"), {"last_update_id": "1"}, version_field="last_update_id"),
            ],
        )
    client.close()


def test_reanchors_on_a_cluster_keep_readers_on_whole_books(cluster, spot_events):
    cfg = cluster_config(cluster)
    workload = SwapWorkload(SYMBOL, lambda: redis_store.connect_writer(cfg, "hotpath"), plain_client_factory(cfg))
    try:
        assert workload.run(spot_events, reanchors=80) == 80
        final = workload.final_book()
    finally:
        workload.close()
    assert workload.reads > 500 and workload.problems == [] and workload.read_errors == 0 and workload.write_retries == 0
    assert final == workload.last_written


def test_reanchors_ride_out_the_failover_of_the_books_master(cluster, spot_events):
    cfg = cluster_config(cluster)
    victim = cluster.master_of(rs.ob_key(SYMBOL))
    assert victim != cfg.port, "the entry node stands for ElastiCache's configuration endpoint: it must survive"
    workload = SwapWorkload(SYMBOL, plain_client_factory(cfg), plain_client_factory(cfg))

    def kill_master(done: int) -> None:
        if done == 30:
            cluster.kill(victim)

    started = time.monotonic()
    try:
        assert workload.run(spot_events, reanchors=100, on_reanchor=kill_master) == 100
        final = workload.final_book()
    finally:
        workload.close()
    promoted = cluster.master_of(rs.ob_key(SYMBOL))
    assert promoted != victim and cluster.roles()[promoted] == "master"
    # the kill interrupted the writes: one batch waited out the ~2 s without a master (redis-py retried it,
    # re-reading the slot map), and none failed for good
    assert workload.longest_write_s > 1.0, workload.longest_write_s
    # every read that succeeded was a whole written book; failed reads were refused, not wrong
    assert workload.problems == [] and workload.reads > 500
    assert final == workload.last_written
    print(
        f"failover: longest write {workload.longest_write_s:.1f} s, {workload.write_retries} batches retried by us, "
        f"{workload.read_errors} failed reads, "
        f"{time.monotonic() - started:.1f} s for 100 re-anchors"
    )
