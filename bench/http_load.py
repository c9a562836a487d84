"""Open-loop HTTP load on loopback: requests start on a fixed schedule, whatever the server's pace.

A closed loop (next request after the previous answer) would hide server
stalls; here a slow answer does not delay the next request, so queueing shows up
in the latency figures.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from bench.harness import percentile


async def open_loop(url: str, rate_per_s: float, seconds: float) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    connector = aiohttp.TCPConnector(limit=64)
    timeout = aiohttp.ClientTimeout(total=2)

    async def one(session: aiohttp.ClientSession) -> None:
        t0 = time.perf_counter()
        try:
            async with session.get(url) as resp:
                await resp.read()
                if resp.status != 200:
                    errors[str(resp.status)] = errors.get(str(resp.status), 0) + 1
                    return
        except Exception as exc:  # noqa: BLE001 - every failure is counted by kind
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            return
        latencies.append((time.perf_counter() - t0) * 1000)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = []
        interval = 1.0 / rate_per_s
        started = time.perf_counter()
        n = 0
        while True:
            due = started + n * interval
            if due - started >= seconds:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session)))
            n += 1
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    return {
        "requests": n,
        "ok": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50), 3),
        "p99_ms": round(percentile(latencies, 99), 3),
        "max_ms": round(max(latencies), 3) if latencies else None,
    }
