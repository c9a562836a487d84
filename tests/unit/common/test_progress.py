"""Progress lines: throttled, the last one always, the time left from the rate so far."""

import logging

from btcpred.common.progress import Progress


def test_lines_are_throttled_the_last_always_logged_and_the_estimate_follows_the_rate(caplog):
    now = [100.0]
    progress = Progress("hours", 4, logging.getLogger("t"), every_s=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="t"):
        for advance, detail in ((30, "first"), (4, "second"), (4, "third"), (80, "fourth")):
            now[0] += advance
            progress.step(detail)
    lines = [r.getMessage() for r in caplog.records]
    # the first step logs; the second and third come within 10 s of it; the last is always logged
    assert lines == [
        "hours: 1/4 (25%) in 30 s, ~1 min 30 s left - first",
        "hours: 4/4 (100%) in 1 min 58 s - fourth",
    ]


def test_long_durations_read_in_hours():
    progress = Progress("hours", 10, logging.getLogger("t"), clock=lambda: 0.0)
    progress.done = 1
    assert progress.line(3600.0) == "hours: 1/10 (10%) in 1 h 00 min, ~9 h 00 min left"
