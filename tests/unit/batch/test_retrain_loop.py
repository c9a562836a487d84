"""The retraining loop is supervised: a cycle that raises is counted and reported, and the next tick runs."""

import asyncio
import json
import urllib.request

from btcpred.batch import retrain
from btcpred.common.config import load_settings
from rig.pipeline import free_port


def _get(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_failing_cycle_is_counted_turns_ready_red_and_the_loop_goes_on(monkeypatch):
    calls: list[int] = []
    seen: list[tuple[int, dict]] = []

    def flaky_cycle(settings, **kwargs):
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("feature store unreachable")
        return {"outcome": "kept"}

    monkeypatch.setattr(retrain, "cycle", flaky_cycle)
    port = free_port()
    failures_before = retrain.FAILURES._value.get()

    async def scenario() -> None:
        loop = asyncio.create_task(retrain.every(load_settings("local", environ={}), 0.3, port))
        while len(calls) < 1:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        seen.append(await asyncio.to_thread(_get, port, "/ready"))
        while len(calls) < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        seen.append(await asyncio.to_thread(_get, port, "/ready"))
        loop.cancel()

    asyncio.run(scenario())
    assert retrain.FAILURES._value.get() == failures_before + 1
    (code_failed, body_failed), (code_ok, body_ok) = seen
    assert code_failed == 503 and "feature store unreachable" in body_failed["reason"]
    assert code_ok == 200 and body_ok["reason"] == "last cycle: kept"
