import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BTCPRED_SHARED_DATA", REPO.parent / "shared" / "data"))
SPOT_CAPTURE = SHARED_DATA / "raw" / "hftbacktest" / "spot_btcusdt_20240808_ws.gz"


@pytest.fixture(scope="session")
def spot_events():
    """The 2024-08-08 binance.com spot capture (real data), loaded once."""
    from ingest.loaders import load_capture

    return list(load_capture(SPOT_CAPTURE).events())
