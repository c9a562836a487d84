"""A supervised task is restarted after each failure with a doubling back-off, shows on /health while down,
and ends only when it returns or is cancelled."""

import asyncio

import pytest
from prometheus_client import CollectorRegistry, Counter

from btcpred.common.service import supervise


def test_a_failing_task_is_restarted_with_doubling_back_off_and_reported_while_down():
    failures = Counter("t_task_failures_total", "test", ["task"], registry=CollectorRegistry())
    failing: dict[str, str] = {}
    runs, seen_during_sleep, slept = [], [], []

    async def run() -> None:
        runs.append(dict(failing))  # what /health showed when this run started
        if len(runs) <= 4:
            raise ConnectionError(f"down {len(runs)}")

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        seen_during_sleep.append(dict(failing))

    asyncio.run(supervise("poll", run, failures, failing, max_backoff_s=2.0, sleep=sleep))
    assert slept == [0.5, 1.0, 2.0, 2.0]  # doubling from 0.5 s, capped
    assert seen_during_sleep == [{"poll": f"ConnectionError: down {n}"} for n in (1, 2, 3, 4)]
    assert runs == [{}] * 5 and failing == {}  # each restart starts green; the fifth run returned
    assert failures.labels("poll")._value.get() == 4


def test_cancellation_ends_the_supervised_task():
    failing: dict[str, str] = {}

    async def run() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(supervise("poll", run, Counter("t2_total", "t", ["task"], registry=CollectorRegistry()), failing))
    assert failing == {}


def test_a_thread_task_restarts_until_it_returns_and_a_failure_while_stopping_is_not_restarted():
    from btcpred.common.service import supervise_blocking

    failures = Counter("t3_task_failures_total", "test", ["task"], registry=CollectorRegistry())
    failing: dict[str, str] = {}
    slept: list[float] = []
    calls = iter([OSError("reset"), OSError("reset"), 42])

    def run() -> int:
        outcome = next(calls)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert supervise_blocking("shard-0", run, failures, failing, lambda: False, sleep=slept.append) == 42
    assert slept == [1.0, 2.0] and failing == {} and failures.labels("shard-0")._value.get() == 2

    stopping = []

    def fails_then_stops() -> int:
        stopping.append(True)  # the process began to shut down while this run was failing
        raise OSError("closed")

    assert supervise_blocking("shard-1", fails_then_stops, failures, failing, lambda: bool(stopping), sleep=slept.append) is None
    assert len(stopping) == 1 and failures.labels("shard-1")._value.get() == 1  # counted, not restarted
