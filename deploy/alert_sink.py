"""The default alert receiver: Alertmanager's webhook notifications, appended to a file.

    python -m deploy.alert_sink --port 9095 --log .local/logs/alerts.jsonl   (the local stack, compose)

On a developer's machine alerts must reach someone too: Alertmanager notifies this webhook, which
appends every alert of every notification as one JSON line (``tail -f .local/logs/alerts.jsonl``)
and answers ``GET /alerts`` with the ones received so far. In a deployment the same Alertmanager
route points at the team's receiver (PagerDuty, Slack, ...) instead (deploy/alertmanager).
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import datetime, timezone
from pathlib import Path

from aiohttp import web

log = logging.getLogger("alert_sink")
KEPT = 1_000  # alerts GET /alerts answers with, newest last

RECEIVED = web.AppKey("received", list)


def app(log_path: Path) -> web.Application:
    application = web.Application()
    application[RECEIVED] = []

    async def notify(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            received_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
            alerts = [
                {
                    "status": a["status"],
                    "labels": a["labels"],
                    "annotations": a.get("annotations", {}),
                    "startsAt": a.get("startsAt"),
                    "receivedAt": received_at,
                }
                for a in body["alerts"]
            ]
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": f"not an Alertmanager notification: {exc}"}, status=400)
        with log_path.open("a") as fh:
            for alert in alerts:
                fh.write(json.dumps(alert) + "\n")
        received = request.app[RECEIVED]
        received.extend(alerts)
        del received[:-KEPT]
        log.info("received %s", ", ".join(f"{a['labels'].get('alertname')} ({a['status']})" for a in alerts))
        return web.json_response({"received": len(alerts)})

    async def alerts(request: web.Request) -> web.Response:
        return web.json_response(request.app[RECEIVED])

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    application.add_routes(
        [web.post("/alerts", notify), web.get("/alerts", alerts), web.get("/health", health), web.get("/ready", health)]
    )
    return application


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Alertmanager webhook receiver that logs alerts")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args.log.parent.mkdir(parents=True, exist_ok=True)
    web.run_app(app(args.log), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
