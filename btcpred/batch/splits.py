"""Time-ordered train / validation / test splits with a purge at each boundary.

A 10 s label at ``t`` covers ``(t, t + 10 s]``, so the last 10 s of one part
have labels that reach into the next: those rows are purged from the earlier
part. Features look back up to 5 s, so the first 5 s of the later part are
embargoed too. Nothing is shuffled across time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from btcpred.udfs.features import HORIZON_US

HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class Split:
    train: np.ndarray  # row indices
    val: np.ndarray
    test: np.ndarray
    val_start_ms: int
    test_start_ms: int

    def ranges(self, ts_ms: np.ndarray) -> dict[str, list[int]]:
        return {
            name: [int(ts_ms[idx].min()), int(ts_ms[idx].max())] if len(idx) else []
            for name, idx in (("train", self.train), ("val", self.val), ("test", self.test))
        }


def purged_split(
    ts_ms: np.ndarray, val_start_ms: int, test_start_ms: int, purge_ms: int = HORIZON_US // 1000, embargo_ms: int = 5_000
) -> Split:
    """Rows before ``val_start_ms`` train, before ``test_start_ms`` validate, the rest test."""
    if not val_start_ms < test_start_ms:
        raise ValueError("validation must start before test")
    ts = np.asarray(ts_ms)

    def part(lo: int | None, hi: int | None) -> np.ndarray:
        keep = np.ones(len(ts), dtype=bool)
        if lo is not None:
            keep &= ts >= lo + embargo_ms
        if hi is not None:
            keep &= ts + purge_ms < hi  # the label window (t, t + purge] ends before the next part starts
        return np.flatnonzero(keep)

    return Split(
        part(None, val_start_ms), part(val_start_ms, test_start_ms), part(test_start_ms, None), val_start_ms, test_start_ms
    )


def hour_boundaries(ts_ms: np.ndarray, val_fraction: float = 0.2, test_fraction: float = 0.2) -> tuple[int, int]:
    """The latest whole-hour starts that leave at least the given shares of rows for test and validation."""
    ts = np.sort(np.asarray(ts_ms))
    n = len(ts)
    hours = np.unique(ts // HOUR_MS * HOUR_MS)[::-1]  # candidate starts, latest first

    def latest(before: int, share: float) -> int:
        for h in hours:
            if h < before and np.count_nonzero((ts >= h) & (ts < before)) >= share * n:
                return int(h)
        raise ValueError(f"not enough whole hours for a {share:.0%} part ({n} rows)")

    test_start = latest(int(ts[-1]) + 1, test_fraction)
    return latest(test_start, val_fraction), test_start
