"""Readers of recorded market data; each format is one module yielding CapturedEvent."""

from btcpred.adapters.loaders.base import CapturedEvent, CaptureLoader, parse_units
from btcpred.adapters.loaders.hftbacktest_ws import HftbacktestWsLoader

__all__ = ["CapturedEvent", "CaptureLoader", "HftbacktestWsLoader", "parse_units", "load_capture"]


def load_capture(path: str) -> CaptureLoader:
    """Pick the loader for a capture file (one format so far)."""
    return HftbacktestWsLoader(path)
