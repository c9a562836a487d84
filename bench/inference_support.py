"""What the inference benchmarks share: a real model artifact, real hot state, a service process."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.harness import REPO
from btcpred.batch.feature_builder import FeatureRow, build_rows, replay
from btcpred.batch.modeling import BOOK_FEATURES, export_onnx, fit_calibration, fit_mlp, predict_return
from btcpred.batch.recordings import depth20_events
from btcpred.common.model_artifact import ModelMetadata, sha256_hex, write_local
from rig.pipeline import free_port, wait_http

SHARED_DATA = Path(os.environ.get("SHARED_DATA_DIR", REPO.parent / "shared" / "data"))
BOOK_FILE = SHARED_DATA / "raw" / "binance_us" / "btcusdt_depth20_1hz_20260502_part1.parquet"


BOOK_MARKET = "binance.us"  # BOOK_FILE's venue: the market the benches' model is proven on and serves


def real_rows(events: int = 3000) -> list[FeatureRow]:
    stream = (e for e, _ in zip(depth20_events(BOOK_FILE, "BTCUSDT"), range(events)))
    return [r for r in build_rows(replay(stream, "BTCUSDT")) if r.trainable]


def fit_mlp_artifact(
    rows: list[FeatureRow], version: str, seed: int = 0, feature_names: list[str] | None = None
) -> tuple[bytes, ModelMetadata]:
    """An MLP fitted on real rows, as the artifact training produces (same size of net).

    ``feature_names`` can lie about the graph's inputs, for refusal tests.
    """
    X = np.array([[r.features[n] for n in BOOK_FEATURES] for r in rows])
    y = np.array([r.label_return for r in rows])
    model = fit_mlp(X, y, (8,), 1.0, seed=seed)
    onnx_bytes = export_onnx(model, len(BOOK_FEATURES))
    meta = ModelMetadata(
        model_version=version,
        model_kind="mlp",
        feature_names=feature_names or list(BOOK_FEATURES),
        sha256=sha256_hex(onnx_bytes),
        calibration=fit_calibration(predict_return(model, X), y),
        scaler_mean=[],
        scaler_scale=[],
        venue=BOOK_MARKET,
        data_ranges={},
        hyperparameters={"seed": seed},
        validation_metrics={},
        created_at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
    )
    return onnx_bytes, meta


def write_model(directory: Path, rows: list[FeatureRow]) -> ModelMetadata:
    onnx_bytes, meta = fit_mlp_artifact(rows, "bench-mlp")
    write_local(directory, onnx_bytes, meta)
    return meta


def write_hot_state(client, row: FeatureRow, emitted_at_us: int | None = None) -> None:
    half = row.features["spread_bp"] * row.mid / 2e4
    client.hset(
        "ob:{BTCUSDT}",
        mapping={"best_bid": repr(row.mid - half), "best_ask": repr(row.mid + half), "last_update_id": str(row.book_update_id)},
    )
    features = {k: repr(v) for k, v in row.features.items() if v is not None}  # the job omits what a recording lacks
    client.hset(
        "feat:{BTCUSDT}",
        mapping={
            **features,
            "mid": repr(row.mid),
            "book_valid": "1.0",
            "ts": str(row.ts_ms * 1000),
            "book_update_id": str(row.book_update_id),
            "emitted_at_us": str(emitted_at_us or time.time_ns() // 1000),
        },
    )
    client.hset(
        "tr:{BTCUSDT}:1s", mapping={"count": "0", "vol": "0.0", "signed_vol": "0.0", "vwap_minus_mid": "0.0", "last_ts_us": "0"}
    )


class ServiceProcess:
    """``python -m btcpred.inference.service`` on a free port, serving ``model_dir``; stopped on exit."""

    def __init__(self, model_dir: Path, cadence_ms: int = 2000) -> None:
        self.port = free_port()
        self.log = Path(tempfile.mkdtemp(prefix="bench-inference-")) / "inference.log"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "BTCPRED_INFERENCE__PORT": str(self.port),
            "BTCPRED_INFERENCE__METRICS_PORT": str(free_port()),
            "BTCPRED_INFERENCE__MODEL_SOURCE": "file",
            "BTCPRED_INFERENCE__MODEL_PATH": str(model_dir),
            "BTCPRED_INFERENCE__CADENCE_MS": str(cadence_ms),
            "BTCPRED_EXCHANGE__MARKET": BOOK_MARKET,
        }  # the hot state and the model are that book's

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServiceProcess:
        with self.log.open("wb") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "btcpred.inference.service"], cwd=REPO, env=self.env, stdout=fh, stderr=subprocess.STDOUT
            )
        wait_http(f"{self.url}/health", 30, self.proc, self.log)
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


FAR_FUTURE_US = 3_600_000_000  # feat: stamped an hour ahead stays "fresh" for the whole run


@contextlib.contextmanager
def model_and_hot_state(redis_url: str):
    """A real model artifact in a temp dir and real hot state in Redis; both removed afterwards.

    Yields (artifact directory, Redis client).
    """
    import redis

    keys = ("ob:{BTCUSDT}", "feat:{BTCUSDT}", "tr:{BTCUSDT}:1s", "pred:{BTCUSDT}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = real_rows()
        write_model(Path(tmp), rows)
        client = redis.Redis.from_url(redis_url)
        client.delete(*keys)
        write_hot_state(client, rows[-1], emitted_at_us=time.time_ns() // 1000 + FAR_FUTURE_US)
        try:
            yield Path(tmp), client
        finally:
            client.delete(*keys)
            client.close()
