"""Progress of a long job as log lines: done of total, the rate, and the time left.

Archive builds, backtests, training grids and backfills run for minutes to hours, in a terminal
and in containers whose output is a log stream. A bar redrawn in place is unreadable in the
second and lost in the first once scrolled; one line per step (at most one every
``every_s``, and always the last) reads the same in both, goes through the process's one logging
set-up (``--log-level``, ``--json-logs``), and keeps the estimate an operator asks for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class Progress:
    """``step()`` after each unit of ``total``; logs ``what: done/total (pct), rate, ~left``."""

    def __init__(
        self,
        what: str,
        total: int,
        log: logging.Logger,
        every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what, self.total, self.log, self.every_s, self.clock = what, total, log, every_s, clock
        self.done = 0
        self.started = clock()
        self.last_logged: float | None = None

    def step(self, detail: str = "") -> None:
        self.done += 1
        now = self.clock()
        if self.done < self.total and self.last_logged is not None and now - self.last_logged < self.every_s:
            return
        self.last_logged = now
        self.log.info("%s", self.line(now, detail))

    def line(self, now: float, detail: str = "") -> str:
        elapsed = now - self.started
        share = self.done / self.total if self.total else 1.0
        text = f"{self.what}: {self.done}/{self.total} ({share:.0%}) in {_duration(elapsed)}"
        if 0 < self.done < self.total and elapsed > 0:
            text += f", ~{_duration(elapsed / self.done * (self.total - self.done))} left"
        return text + (f" - {detail}" if detail else "")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
