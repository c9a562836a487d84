"""What every long-running asyncio process shares: /health, /ready and /metrics, and its main()."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from common.config import Settings, load_settings


def health_app(is_ready: Callable[[], tuple[bool, str]]) -> web.Application:
    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(_: web.Request) -> web.Response:
        ok, reason = is_ready()
        return web.json_response({"ready": ok, "reason": reason}, status=200 if ok else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.add_routes([web.get("/health", health), web.get("/ready", ready), web.get("/metrics", metrics)])
    return app


@contextlib.asynccontextmanager
async def serving_health(port: int, is_ready: Callable[[], tuple[bool, str]]) -> AsyncIterator[None]:
    """The health and metrics endpoints on loopback ``port`` for as long as the block runs."""
    runner = web.AppRunner(health_app(is_ready))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


def run_service(description: str, entry: Callable[[Settings], Awaitable[None]], argv: list[str] | None = None) -> None:
    """``--config``, logging, then ``entry(settings)`` until it ends or is interrupted."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default=None, help="config file (default config/$BTCPRED_ENV.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(entry(load_settings(args.config)))
