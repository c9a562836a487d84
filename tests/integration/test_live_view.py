"""The live web view in a real browser (headless Chromium): what it draws is what /predictions says."""

import json
import random
import shutil
import subprocess
import threading
import time
import urllib.request
from html.parser import HTMLParser

import pytest

from tests.conftest import REPO
from tests.integration.inference_process import InferenceProcess

pytestmark = pytest.mark.integration

SCREENSHOT = REPO / ".local" / "screenshots" / "live_view.png"


class Attributes(HTMLParser):
    """The attributes of the chart, the body and the latest-predictions rows in a dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.chart: dict = {}
        self.body: dict = {}
        self.rows: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg" and a.get("id") == "chart":
            self.chart = a
        elif tag == "body":
            self.body = a
        elif tag == "tr" and "data-boundary" in a:
            self.rows.append(a)


def chromium(*args: str, timeout: float = 90) -> str:
    binary = shutil.which("chromium")
    assert binary, "chromium missing: scripts/setup.sh installs it (Debian package chromium)"
    cmd = [
        binary,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--virtual-time-budget=5000",  # until the page's fetches are answered and drawn (virtual time waits for them)
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True).stdout


def market(redis_client, stop: threading.Event) -> None:
    """Hot state that moves (a test writer, not market data): a feature vector every 500 ms of data time."""
    ts_us, mid = 1_723_161_255_500_000, 61_837.635
    while not stop.is_set():
        mid += random.choice((-0.5, 0.0, 0.5))
        redis_client.hset(
            "ob:{BTCUSDT}",
            mapping={"best_bid": f"{mid - 0.005:.3f}", "best_ask": f"{mid + 0.005:.3f}", "last_update_id": str(ts_us)},
        )
        redis_client.hset(
            "feat:{BTCUSDT}",
            mapping={
                "mid": f"{mid:.3f}",
                "book_valid": "1.0",
                "ts": str(ts_us),
                "book_update_id": "7",
                "emitted_at_us": str(int(time.time() * 1e6)),
            },
        )
        ts_us += 500_000
        time.sleep(0.25)


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def test_the_page_draws_what_the_api_serves_and_a_screenshot_is_kept(redis_client, tmp_path):
    stop = threading.Event()
    writer = threading.Thread(target=market, args=(redis_client, stop), daemon=True)
    writer.start()
    try:
        inference = InferenceProcess(tmp_path, cadence_ms=250, max_feature_age_ms=1000)
        with inference:
            base = inference.base
            time.sleep(6)  # ~24 cycles on moving features
            stop.set()
            writer.join(5)
            time.sleep(2)  # the features go stale: the flagged fallback, shaded on the chart
            preds = get_json(f"{base}/predictions?limit=600")
            served = [p for p in preds if p["source"] == "redis"]
            distinct = {p["feature_time_ms"] for p in served}
            assert len(distinct) >= 8 and any(p["source"] == "fallback" for p in preds)

            dom = Attributes()
            # ?stream=0: the page draws from /predictions once and opens no stream, which would keep the page loading
            # forever; the stream's events go through the same draw()
            dom.feed(chromium("--dump-dom", f"{base}/?stream=0"))
            assert dom.body.get("data-rendered") == "1"
            # nothing new is served once the features are stale: the page and the API see the same rows
            assert int(dom.chart["data-realized"]) == int(dom.chart["data-predicted"]) == len(distinct)
            newest = max(served, key=lambda p: (p["target_time_ms"], -p["timestamp"]))
            first = min((p for p in served if p["target_time_ms"] == newest["target_time_ms"]), key=lambda p: p["timestamp"])
            assert float(dom.chart["data-last-predicted"]) == pytest.approx(first["predicted_price_10s"])
            assert int(dom.chart["data-last-target"]) == newest["target_time_ms"]
            assert int(dom.chart["data-fallbacks"]) >= 1
            assert dom.rows and int(dom.rows[0]["data-boundary"]) >= preds[-1]["timestamp"]  # the newest row first

            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            SCREENSHOT.unlink(missing_ok=True)
            chromium(f"--screenshot={SCREENSHOT}", "--window-size=1180,820", f"{base}/?stream=0")
            assert SCREENSHOT.stat().st_size > 10_000  # a drawn page, not a blank one
    finally:
        stop.set()
