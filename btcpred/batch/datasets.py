"""Labelled feature matrices, from the feature store or straight from recordings."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from btcpred.batch.feature_builder import build_rows, replay
from btcpred.batch.recordings import discover
from btcpred.udfs.features import FEATURE_NAMES

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FeatureSet:
    """Trainable rows (quality 1, label present), ordered by venue then time."""

    venue: np.ndarray  # str per row
    ts_ms: np.ndarray
    X: np.ndarray  # (n, len(names)), columns in ``names`` order
    y: np.ndarray  # 10 s log return of the market's price (the mid; the last trade's on a trades-only market)
    mid: np.ndarray  # the price the return starts from, what persistence predicts
    names: tuple[str, ...] = FEATURE_NAMES  # the book's features, or a trades-only market's

    def __len__(self) -> int:
        return len(self.ts_ms)

    def take(self, idx: np.ndarray) -> FeatureSet:
        return FeatureSet(self.venue[idx], self.ts_ms[idx], self.X[idx], self.y[idx], self.mid[idx], self.names)

    def has(self, names: tuple[str, ...] | list[str]) -> bool:
        return all(n in self.names for n in names)

    def columns(self, names: list[str] | tuple[str, ...]) -> np.ndarray:
        """Model inputs in ``names`` order; ``mid`` (the persistence model's input) is a column too."""
        if "mid" not in names:
            return self.X[:, [self.names.index(n) for n in names]]
        return np.column_stack([self.mid if n == "mid" else self.X[:, self.names.index(n)] for n in names])


def from_rows(venue: list[str], rows: list[tuple]) -> FeatureSet:
    """``rows``: (ts_ms, *features, mid, label_return)."""
    arr = np.array(rows, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES) + 3)
    return FeatureSet(np.array(venue, dtype=object), arr[:, 0].astype(np.int64), arr[:, 1:-2], arr[:, -1], arr[:, -2])


def from_directory(data_dir: Path) -> FeatureSet:
    """Every recording under ``data_dir`` through the batch feature builder (same code as the hot path)."""
    venues: list[str] = []
    rows: list[tuple] = []
    for rec in discover(data_dir):
        kept = 0
        for row in build_rows(replay(rec.events(), rec.symbol)):
            if row.trainable:
                venues.append(rec.venue)
                rows.append((row.ts_ms, *(row.features[n] for n in FEATURE_NAMES), row.mid, row.label_return))
                kept += 1
        log.info("%s: %d labelled rows of full quality", rec.name, kept)
    return from_rows(venues, rows)
