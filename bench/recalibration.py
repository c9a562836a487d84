"""How well the served interval holds on markets the model never saw, per adaptive-conformal step.

    python -m bench.recalibration [--data SHARED_DATA]

Fits the one-feature ridge on every Binance.US hour (as the loop would, tuned on validation,
refitted), then replays it over the binance.com captures in time order per market, stating the
interval as the service does (``btcpred.common.recalibration``) for each ACI step in ``STEPS``
(step 0: the rolling window alone), beside the artifact's own interval, for the model and for
persistence (what serves there while nothing is proven). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np

from bench.harness import emit
from bench.inference_support import SHARED_DATA
from btcpred.batch.backtest import fitted_without_gate
from btcpred.batch.datasets import from_directory
from btcpred.batch.metrics import brier
from btcpred.batch.report import replay_as_served
from btcpred.common import recalibration
from btcpred.common.model_artifact import VOL_FEATURE

STEPS = (0.0, 0.01, 0.03, 0.05)
CAPTURES = (
    "spot_btcusdt_20240808_ws.gz",
    "usdm_btcusdt_20240808_ws.gz",
    "cm_btcusd_perp_20240808_ws.gz",
    "spot_btcusdt_20230405_ws.dat.gz",
    "usdm_btcusdt_20230404_ws.dat.gz",
    "usdm_btcusdt_20230405_ws.dat.gz",
)


def linked(files: list[Path], sources: Path) -> tempfile.TemporaryDirectory:
    """A directory holding just ``files`` (and their provenance), for ``from_directory``."""
    tmp = tempfile.TemporaryDirectory()
    for f in [*files, sources]:
        (Path(tmp.name) / f.name).symlink_to(f)
    return tmp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    us_dir, com_dir = args.data / "raw" / "binance_us", args.data / "raw" / "hftbacktest"
    with (
        linked(sorted(us_dir.glob("*.parquet")), us_dir / "SOURCES.tsv") as us_tmp,
        linked([com_dir / c for c in CAPTURES if (com_dir / c).exists()], com_dir / "SOURCES.tsv") as com_tmp,
    ):
        us, com = from_directory(Path(us_tmp)), from_directory(Path(com_tmp))
    served = fitted_without_gate(us, int(us.ts_ms.max()) + 1)
    spec = served.interval
    inside = served.guard.trusted_rows(com.columns(served.candidate.features))
    scale = np.maximum(com.columns((VOL_FEATURE,))[:, 0], 0.0) + spec.vol_floor
    result: dict = {"model": f"{served.kind} fitted on {len(us)} Binance.US rows", "nominal": spec.coverage, "markets": {}}
    for who, pred, trusted in (
        ("model", served.predict(com), inside),
        ("persistence", np.zeros(len(com)), np.zeros(len(com), dtype=bool)),  # persistence's quantile on every row
    ):
        quantile = np.where(trusted, spec.model_quantile, spec.persistence_quantile)
        for step in STEPS:
            hits, confidence = replay_as_served(
                spec, com, pred, trusted, make=lambda c, s=step: recalibration.Recalibration(c, step=s)
            )
            for venue in sorted(set(com.venue)):
                idx = np.flatnonzero(com.venue == venue)
                row = result["markets"].setdefault(venue, {"n": len(idx)}).setdefault(who, {})
                row["artifact"] = round(float(np.mean(np.abs(com.y[idx] - pred[idx]) <= quantile[idx] * scale[idx])), 4)
                row[f"step_{step}"] = round(float(hits[idx].mean()), 4)
                moved = (com.y[idx] != 0) & (pred[idx] != 0)
                if who == "model" and step == recalibration.ACI_STEP and moved.any():
                    right = (np.sign(pred[idx][moved]) == np.sign(com.y[idx][moved])).astype(float)
                    row["brier_skill_served"] = round(brier(confidence[idx][moved], right)[1], 4)
    emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
