"""Real models and hot state for serving tests, registered as training does (shared with the benchmarks)."""

from __future__ import annotations

import time

from bench.inference_support import fit_mlp_artifact, real_rows, write_hot_state
from btcpred.adapters import artifact_store, registry
from btcpred.adapters.lake import Lake
from btcpred.batch.feature_builder import FeatureRow

__all__ = ["real_rows", "register_model", "write_features"]


def register_model(
    engine, lake: Lake, rows: list[FeatureRow], name: str, seed: int = 0, feature_names: list[str] | None = None
) -> str:
    """Fit, export, upload and register one MLP; ``feature_names`` can lie about its inputs (refusal tests)."""
    onnx_bytes, meta = fit_mlp_artifact(rows, name, seed, feature_names)
    registry.register(engine, meta, artifact_store.upload(lake, onnx_bytes, meta), None)
    return name


def write_features(client, row: FeatureRow, age_s: float = 0.1) -> None:
    """``feat:``, ``ob:`` and ``tr:`` as the Flink job writes them, from one real feature row, ``age_s`` old."""
    write_hot_state(client, row, emitted_at_us=int((time.time() - age_s) * 1e6))
