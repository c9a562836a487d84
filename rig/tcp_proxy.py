"""A TCP proxy in front of a local emulator that can take the endpoint down on request.

    python -m rig.tcp_proxy --listen 4567 --target 4568 --control 4569

The local stack puts it in front of kinesalite, so the fault suite can cut the
Kinesis endpoint for a few seconds (``POST /outage {"seconds": 3}`` on the
control port: open connections are reset and new ones refused) without
restarting the in-memory emulator, which would lose its streams. Clients see
what they see when a real endpoint is unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

from aiohttp import web


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.down_until = 0.0
        self.writers: set[asyncio.StreamWriter] = set()
        self.connections = 0
        self.refused = 0

    @property
    def down(self) -> bool:
        return time.monotonic() < self.down_until

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while not reader.at_eof():
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.down:
            self.refused += 1
            client_writer.transport.abort()  # a reset, as from a host that is not there
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.transport.abort()
            return
        self.connections += 1
        self.writers.update((client_writer, upstream_writer))
        try:
            await asyncio.gather(self._pipe(client_reader, upstream_writer), self._pipe(upstream_reader, client_writer))
        finally:
            self.writers.discard(client_writer)
            self.writers.discard(upstream_writer)

    def outage(self, seconds: float) -> None:
        self.down_until = time.monotonic() + seconds
        for writer in list(self.writers):
            writer.transport.abort()


def control_app(proxy: Proxy) -> web.Application:
    async def outage(request: web.Request) -> web.Response:
        body = await request.json()
        seconds = float(body.get("seconds", 0))
        if not 0 <= seconds <= 600:
            raise web.HTTPBadRequest(text="seconds must be within 0..600")
        proxy.outage(seconds)
        return web.json_response({"down_for_s": seconds})

    async def status(_: web.Request) -> web.Response:
        return web.json_response({"down": proxy.down, "connections": proxy.connections, "refused": proxy.refused})

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.add_routes([web.post("/outage", outage), web.get("/status", status), web.get("/health", health)])
    return app


async def serve(listen: int, target: int, control: int) -> None:
    proxy = Proxy(target)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", listen)
    runner = web.AppRunner(control_app(proxy))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", control).start()
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--target", type=int, required=True)
    parser.add_argument("--control", type=int, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.listen, args.target, args.control))


if __name__ == "__main__":
    main()
