"""Executes RedisWrite batches in one MULTI/EXEC transaction.

A hash is never cleared in place: the new version is written aside
(``<key>:next``) and RENAMEd over the live key, in one Lua script, inside the
transaction. A reader sees the old hash or the new one, never a half-written or
missing one, and a re-anchored book replaces the stale one in the same single
step. For versioned hashes (``ob:`` by update id, ``feat:`` by boundary) the script
also refuses to replace a newer version with an older one. Every key of a batch
belongs to one symbol and carries its hash tag, so on a Redis Cluster the batch is
one slot's transaction.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from btcpred.common import redis_connection
from btcpred.common.config import RedisConfig, RedisRole
from btcpred.udfs import redis_schema as rs
from btcpred.udfs.redis_writes import RedisWrite


def connect(cfg: RedisConfig, role: RedisRole | None = "hotpath") -> redis.Redis | RedisCluster:
    """The job's client: bounded timeouts, and retries that ride out a Redis restart or a cluster failover."""
    return redis_connection.connect(
        cfg,
        role,
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), 8),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


# Replace KEYS[1] by a hash built at KEYS[2], unless KEYS[1] holds a newer version.
# ARGV: version field ('' : unversioned), version, ttl seconds (0: none), then field/value pairs.
# One script for every hash: a cluster pipeline refuses RENAME, and the script is one round trip.
REPLACE_IF_NOT_OLDER = """
if ARGV[1] ~= '' then
  local current = redis.call('HGET', KEYS[1], ARGV[1])
  if current and tonumber(current) > tonumber(ARGV[2]) then return 0 end
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
redis.call('RENAME', KEYS[2], KEYS[1])
if tonumber(ARGV[3]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return 1
"""


# XADD to KEYS[1] unless KEYS[2] marks the entry as written already (kept a day).
# ARGV: maxlen, then field/value pairs.
XADD_ONCE = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', 86400) then return 0 end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 2))
return 1
"""


def execute(client: redis.Redis | RedisCluster, writes: Iterable[RedisWrite]) -> None:
    pipe = client.pipeline(transaction=True)
    for w in writes:
        if w.kind == "hash":
            fields = w.fields
            if w.receipt_time_us is not None:
                fields = {**fields, "receipt_time_us": str(w.receipt_time_us), "written_at_us": str(time.time_ns() // 1000)}
            version = ("", 0) if w.version_field is None else (w.version_field, fields[w.version_field])
            args = [*version, w.ttl_s or 0]
            for name, value in fields.items():
                args += [name, value]
            # execute_command: a cluster pipeline has no .eval(); it routes EVAL by its keys like any command
            pipe.execute_command("EVAL", REPLACE_IF_NOT_OLDER, 2, w.key, rs.next_key(w.key), *args)
        elif w.kind == "xadd" and w.once_key is not None:
            args = [w.maxlen or 1_000_000]
            for name, value in w.fields.items():
                args += [name, value]
            pipe.execute_command("EVAL", XADD_ONCE, 2, w.key, w.once_key, *args)
        elif w.kind == "xadd":
            pipe.xadd(w.key, w.fields, maxlen=w.maxlen, approximate=True)
        else:
            raise ValueError(f"unknown write kind {w.kind!r}")
    pipe.execute()
