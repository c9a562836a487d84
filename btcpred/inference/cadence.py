"""Wall-clock aligned ticks: every cycle is scheduled from absolute time, so no drift accumulates."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


def next_boundary_ms(now_ms: float, cadence_ms: int) -> int:
    return (int(now_ms) // cadence_ms + 1) * cadence_ms


async def run_aligned(
    cadence_ms: int,
    cycle: Callable[[int, float], Awaitable[None]],
    on_missed: Callable[[int], None],
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Call ``cycle(boundary_ms, jitter_ms)`` on every boundary; report boundaries that were skipped."""
    last: int | None = None
    while True:
        boundary = next_boundary_ms(clock() * 1000, cadence_ms)
        if last is not None and boundary - last > cadence_ms:
            on_missed((boundary - last) // cadence_ms - 1)
        delay = boundary / 1000 - clock()
        if delay > 0.002:
            await sleep(delay - 0.001)
        while clock() * 1000 < boundary:  # last millisecond: yield, do not oversleep
            await sleep(0)
        await cycle(boundary, clock() * 1000 - boundary)
        last = boundary
