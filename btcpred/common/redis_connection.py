"""Redis clients for one service role, against a single node or a Redis Cluster alike.

Every multi-key step touches the keys of one symbol only, and those keys share the
``{symbol}`` hash tag (btcpred/udfs/redis_schema.py), so a MULTI/EXEC or a Lua script stays
in one slot: the same code runs on a single node (local) and on a cluster (prod).
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from btcpred.common.config import RedisConfig, RedisRole


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
