"""Fault switches for fault-injection tests; synthetic damage applied to real frames."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(slots=True)
class FaultPlan:
    """Counters consumed as frames go out; all zero means a clean replay."""

    drop_diffs: int = 0  # drop the next N depth diff frames
    duplicate_next: int = 0  # send the next N frames twice
    reorder_next: int = 0  # swap the next N pairs of consecutive frames (of ``reorder_stream`` if set)
    reorder_stream: str = ""  # e.g. "btcusdt@depth": hold one of its frames until its next one
    corrupt_next: int = 0  # damage the next N frames (of ``corrupt_stream`` if set)
    corrupt_stream: str = ""  # e.g. "btcusdt@bestBidAsk"; empty = any stream
    disconnect_next: bool = False  # close every client connection once
    mute_trades_ms: int = 0  # suppress trade frames for the next N ms of data time
    rest_throttle_next: int = 0  # answer the next N REST requests 429 (Retry-After: rest_retry_after_s)
    rest_ban_next: int = 0  # answer the next N REST requests 418 (IP ban, Retry-After: rest_retry_after_s)
    rest_retry_after_s: float = 1.0  # float: "inf" is a header value to test too
    rest_delay_ms: int = 0  # delay every REST answer (a slow exchange)
    rest_down_s: float = 0.0  # answer every REST request 503 for this long from when it is set (an outage)
    rest_down_until: float = 0.0  # monotonic time the outage ends (set from rest_down_s)

    def update(self, **changes: int | bool) -> None:
        for name, value in changes.items():
            if not hasattr(self, name):
                raise KeyError(f"unknown fault {name!r}")
            setattr(self, name, type(getattr(self, name))(value))
            if name == "rest_down_s":
                self.rest_down_until = time.monotonic() + float(value)


def corrupt(frame: bytes) -> bytes:
    """Damage the header so a decoder must reject the frame (schema id becomes 0xFFFF)."""
    damaged = bytearray(frame)
    if len(damaged) >= 6:
        damaged[4:6] = b"\xff\xff"
    return bytes(damaged[: max(1, len(damaged) // 2)])
