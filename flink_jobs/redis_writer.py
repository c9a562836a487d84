"""Executes RedisWrite batches: each hash is replaced atomically (MULTI/EXEC).

A reader never sees a half-updated ``ob:`` or ``feat:``: the old hash is
deleted and the new one written inside one transaction.
"""
from __future__ import annotations

from collections.abc import Iterable

import time

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from flink_jobs.hot_path_state import RedisWrite


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), 8),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


def execute(client: redis.Redis, writes: Iterable[RedisWrite]) -> None:
    pipe = client.pipeline(transaction=True)
    for w in writes:
        if w.kind == "hash":
            fields = w.fields
            if w.receipt_time_us is not None:
                fields = {**fields, "receipt_time_us": str(w.receipt_time_us), "written_at_us": str(time.time_ns() // 1000)}
            pipe.delete(w.key)
            pipe.hset(w.key, mapping=fields)
            if w.ttl_s:
                pipe.expire(w.key, w.ttl_s)
        elif w.kind == "xadd":
            pipe.xadd(w.key, w.fields, maxlen=w.maxlen, approximate=True)
        else:
            raise ValueError(f"unknown write kind {w.kind!r}")
    pipe.execute()
