"""What every long-running asyncio process shares: /health, /ready and /metrics, and its main()."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception_type, stop_never, wait_exponential

from btcpred.common import entry_point
from btcpred.common.config import Settings, load_settings

T = TypeVar("T")


def health_app(
    is_ready: Callable[[], tuple[bool, str]], is_healthy: Callable[[], tuple[bool, str]] | None = None
) -> web.Application:
    """``/health``: 503 while ``is_healthy`` says a supervised task of the process is failing
    (the process is up but not doing its job); ``/ready``: whether it can serve yet."""

    async def health(_: web.Request) -> web.Response:
        ok, reason = is_healthy() if is_healthy else (True, "ok")
        return web.json_response({"status": "ok" if ok else "failing", "reason": reason}, status=200 if ok else 503)

    async def ready(_: web.Request) -> web.Response:
        ok, reason = is_ready()
        return web.json_response({"ready": ok, "reason": reason}, status=200 if ok else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.add_routes([web.get("/health", health), web.get("/ready", ready), web.get("/metrics", metrics)])
    return app


@contextlib.asynccontextmanager
async def serving_health(
    port: int,
    is_ready: Callable[[], tuple[bool, str]],
    is_healthy: Callable[[], tuple[bool, str]] | None = None,
    host: str = "127.0.0.1",
) -> AsyncIterator[None]:
    """The health and metrics endpoints on ``host:port`` (``Settings.metrics_host``) for as long as the block runs."""
    runner = web.AppRunner(health_app(is_ready, is_healthy))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    try:
        yield
    finally:
        await runner.cleanup()


def serve_health_in_thread(
    port: int,
    is_ready: Callable[[], tuple[bool, str]],
    is_healthy: Callable[[], tuple[bool, str]] | None = None,
    host: str = "127.0.0.1",
) -> threading.Thread:
    """``serving_health`` for a process whose work runs in threads (the SBE archiver): the endpoints
    run in a daemon thread of their own, with their own event loop, for as long as the process."""

    async def serve() -> None:
        async with serving_health(port, is_ready, is_healthy, host):
            await asyncio.Event().wait()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), name="health", daemon=True)
    thread.start()
    return thread


def record_failure(failures, failing: dict[str, str], task: str, exc: BaseException, context: str = "") -> None:
    """What every supervised loop does with an exception it survives: count it in
    ``failures.labels(task)`` (a ``*_task_failures_total`` counter) and show it on /health
    (``failing``, read by ``failing_health``) until the task succeeds again."""
    failures.labels(task).inc()
    failing[task] = describe_failure(exc, context)


def describe_failure(exc: BaseException, context: str = "") -> str:
    """How /health shows a task's last exception (``failing_health``): type and message, bounded."""
    return f"{context}{type(exc).__name__}: {exc}"[:300]


def _restart_policy(name: str, failures, failing: dict[str, str], first_backoff_s: float, max_backoff_s: float) -> dict:
    """What a supervised task's restarts share (tenacity, like every retry of the project): any
    Exception restarts it after a back-off doubling from ``first_backoff_s`` up to ``max_backoff_s``;
    while it waits, the failure is counted and shown on /health; a restart starts green."""

    def report(state: RetryCallState) -> None:
        exc = state.outcome.exception()
        record_failure(failures, failing, name, exc)
        logging.getLogger(__name__).error("task %s failed; restarting in %.1f s", name, state.upcoming_sleep, exc_info=exc)

    return {
        "retry": retry_if_exception_type(Exception),
        "before": lambda _: failing.pop(name, None),
        "before_sleep": report,
        "wait": wait_exponential(multiplier=first_backoff_s, max=max_backoff_s),
    }


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    failures,
    failing: dict[str, str],
    max_backoff_s: float = 30.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Run ``run()`` until it returns, restarting it whenever it raises (``_restart_policy``: back-off
    from 0.5 s). A long-running loop must never end silently; cancellation (a BaseException) ends it."""
    async for attempt in AsyncRetrying(
        stop=stop_never, sleep=sleep, **_restart_policy(name, failures, failing, 0.5, max_backoff_s)
    ):
        with attempt:
            await run()


def supervise_blocking(
    name: str,
    run: Callable[[], T],
    failures,
    failing: dict[str, str],
    stopping: Callable[[], bool],
    first_backoff_s: float = 1.0,
    max_backoff_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T | None:
    """``supervise`` for a thread: ``run()``'s result, or None once ``stopping()`` says the process is
    shutting down (then a failure is not restarted)."""
    retrying = Retrying(
        stop=lambda _: stopping(),
        sleep=sleep,
        reraise=True,
        **_restart_policy(name, failures, failing, first_backoff_s, max_backoff_s),
    )
    try:
        for attempt in retrying:
            with attempt:
                return run()
    except Exception as exc:  # noqa: BLE001 - only reached when stopping: counted, not restarted
        if not stopping():
            raise
        record_failure(failures, failing, name, exc)
        logging.getLogger(__name__).warning("task %s failed while stopping: %s", name, exc)
    return None


def failing_health(failing: dict[str, str]) -> Callable[[], tuple[bool, str]]:
    """An ``is_healthy`` for ``serving_health``: red while any supervised task is failing."""

    def is_healthy() -> tuple[bool, str]:
        if failing:
            return False, "; ".join(f"{task}: {why}" for task, why in sorted(failing.items()))
        return True, "ok"

    return is_healthy


def run_service(description: str, entry: Callable[[Settings], Awaitable[None]], argv: list[str] | None = None) -> None:
    """``--config``, logging, then ``entry(settings)`` until it ends or is interrupted."""
    parser = argparse.ArgumentParser(description=description)
    entry_point.add_config(parser)
    args = parser.parse_args(argv)
    entry_point.setup_logging()
    asyncio.run(entry(load_settings(args.config)))
