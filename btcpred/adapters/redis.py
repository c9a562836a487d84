"""Redis, the hot state's one store: clients for a service role, and the transactional writer.

Clients (``connect``, ``connect_async``) run against a single node or a Redis Cluster alike: every
multi-key step touches the keys of one symbol only, and those keys share the ``{symbol}`` hash tag
(``btcpred/udfs/redis_schema.py``, with the keys and the stream bounds), so a MULTI/EXEC or a Lua
script stays in one slot: the same code runs locally and on a cluster (prod).

The writer (``execute``) applies a batch of ``RedisWrite`` in one MULTI/EXEC transaction. A hash
is never cleared in place: the new version is written aside (``<key>:next``) and RENAMEd over the
live key, in one Lua script, inside the transaction. A reader sees the old hash or the new one,
never a half-written or missing one, and a re-anchored book replaces the stale one in the same
single step. For versioned hashes (``ob:`` by update id, ``feat:`` by boundary) the script also
refuses to replace a newer version with an older one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from btcpred.common.config import RedisConfig, RedisRole
from btcpred.udfs import redis_schema as rs
from btcpred.udfs.redis_writes import RedisWrite


def _options(cfg: RedisConfig, role: RedisRole | None, options: dict[str, Any]) -> dict[str, Any]:
    username, password = cfg.credentials(role)
    out: dict[str, Any] = {"host": cfg.host, "port": cfg.port, "username": username, "password": password, **options}
    if cfg.tls:
        out["ssl"] = True
    return out


def connect(cfg: RedisConfig, role: RedisRole | None, **options: Any) -> redis.Redis | RedisCluster:
    """A blocking client as ``role`` (None: the admin). ``options`` go to redis-py (timeouts, retry)."""
    if cfg.cluster:
        options.pop("health_check_interval", None)  # per-node connections of a cluster client take no such option
        return RedisCluster(**_options(cfg, role, options))
    return redis.Redis(**_options(cfg, role, options))


def connect_async(cfg: RedisConfig, role: RedisRole | None, **options: Any) -> aioredis.Redis | AsyncRedisCluster:
    if cfg.cluster:
        return AsyncRedisCluster(**_options(cfg, role, options))
    return aioredis.Redis(**_options(cfg, role, options))


def connect_writer(cfg: RedisConfig, role: RedisRole | None = "hotpath") -> redis.Redis | RedisCluster:
    """The writer's client (the job's sinks, the backfill): bounded timeouts, and retries that ride out a
    Redis restart or a cluster failover."""
    return connect(
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
