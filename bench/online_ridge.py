"""The online ridge replayed as the service runs it, on every market in the shared data.

    python -m bench.online_ridge [--data SHARED_DATA]

Per market in time order: each row is predicted from the weights learnt so far, and its label
is learnt once 10 s of data time have passed (``btcpred.inference.online_model``'s features
and forgetting). Scored against persistence with the project's test (R²_OS, its 95 % interval
and p, 5-minute blocks). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections import deque
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench.harness import emit
from bench.inference_support import SHARED_DATA
from btcpred.batch.datasets import from_directory
from btcpred.batch.metrics import evaluate
from btcpred.common.forecast_skill import json_figure
from btcpred.common.online_ridge import OnlineRidge
from btcpred.common.sequential_test import BlockedDifferential
from btcpred.inference.online_model import ONLINE_FEATURES
from btcpred.udfs.features import HORIZON_US


def replay(ts_ms: np.ndarray, X: np.ndarray, y: np.ndarray, forgetting: float) -> np.ndarray:
    model = OnlineRidge(ONLINE_FEATURES, forgetting=forgetting)
    pred = np.zeros(len(y))
    pending: deque[int] = deque()
    for i in range(len(y)):
        while pending and ts_ms[pending[0]] + HORIZON_US // 1000 <= ts_ms[i]:
            j = pending.popleft()
            model.update(X[j], y[j])
        pred[i] = model.predict(X[i])
        pending.append(i)
    return pred


def contest(ts_ms: np.ndarray, y: np.ndarray, pred: np.ndarray) -> dict:
    """The service's always-valid test of this challenger against persistence, row by row as it runs."""
    test = BlockedDifferential()
    for t, realized, p in zip(ts_ms, y, pred):
        test.add(int(t), realized**2 - (realized - p) ** 2)  # persistence's loss minus the challenger's
        if test.test.rejected:
            return {"promoted_at": _iso(int(t)), **test.figures()}
    return {"promoted_at": None, **test.figures()}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="seconds")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--forgetting", type=float, default=0.999)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        for sub in ("binance_us", "hftbacktest"):
            for f in (args.data / "raw" / sub).iterdir():
                if f.suffix in (".parquet", ".gz"):
                    (Path(tmp) / f.name).symlink_to(f)
        data = from_directory(Path(tmp))
    result: dict = {"features": list(ONLINE_FEATURES), "forgetting": args.forgetting, "markets": {}}
    for venue in sorted(set(data.venue)):
        idx = np.flatnonzero(data.venue == venue)
        idx = idx[np.argsort(data.ts_ms[idx], kind="stable")]
        X = data.columns(ONLINE_FEATURES)[idx]
        ok = np.isfinite(X).all(axis=1)
        idx, X = idx[ok], X[ok]
        pred = replay(data.ts_ms[idx], X, data.y[idx], args.forgetting)
        e = evaluate(data.y[idx], pred, data.mid[idx], data.ts_ms[idx], data.venue[idx])
        result["markets"][venue] = {
            "n": e.n,
            "blocks": e.blocks,
            "r2_os": json_figure(e.r2),
            "r2_os_ci95": [json_figure(c) for c in e.r2_ci],
            "pvalue": json_figure(e.dm_pvalue),
            "rmse_ratio": json_figure(e.rmse_ratio),
            "direction": json_figure(e.direction_accuracy),
            "online_contest_vs_persistence": contest(data.ts_ms[idx], data.y[idx], pred),
        }
    emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
