"""Executes RedisWrite batches in one MULTI/EXEC transaction.

A hash is never cleared in place: the new version is written aside
(``<key>:next``) and RENAMEd over the live key, inside the transaction. A reader
sees the old hash or the new one, never a half-written or missing one, and a
re-anchored book replaces the stale one in the same single step.
"""
from __future__ import annotations

from collections.abc import Iterable

import time

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from flink_jobs.hot_path_state import RedisWrite
from udfs import redis_schema as rs


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
            aside = rs.next_key(w.key)
            pipe.delete(aside)
            pipe.hset(aside, mapping=fields)
            pipe.rename(aside, w.key)
            if w.ttl_s:
                pipe.expire(w.key, w.ttl_s)
        elif w.kind == "xadd":
            pipe.xadd(w.key, w.fields, maxlen=w.maxlen, approximate=True)
        else:
            raise ValueError(f"unknown write kind {w.kind!r}")
    pipe.execute()
