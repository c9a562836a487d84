"""The model artifact contract shared by training (writer) and serving (reader).

An artifact is two files: ``model.onnx`` (float64 input ``features`` of shape
(n, len(feature_names)), output ``log_return_10s`` of shape (n, 1)) and
``metadata.json``. The metadata carries the feature names in input order, the
sha256 of the ONNX bytes, and the confidence calibration.

``confidence``: the probability that the predicted direction is right when the
price moves, as a function of the predicted move's size, fitted (isotonic) on
validation data the model was not trained on: ``interp(|predicted return|,
calibration.abs_return, calibration.hit_rate)``.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from btcpred.udfs.features import HORIZON_US

ONNX_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
INPUT_NAME = "features"
OUTPUT_NAME = "log_return_10s"


class ArtifactError(ValueError):
    """An artifact that must not be served: bad checksum, bad metadata, wrong shape."""


class Calibration(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    abs_return: list[float]  # increasing breakpoints of |predicted log return|
    hit_rate: list[float]  # P(direction right | price moved) at each breakpoint

    def confidence(self, predicted: float) -> float:
        if not self.abs_return:
            return 0.5
        return float(np.interp(abs(predicted), self.abs_return, self.hit_rate))


class PredictionInterval(BaseModel):
    """A split-conformal interval for the 10 s log return, scaled by the recent volatility.

    On validation rows the model never trained on, the absolute error divided by the scale
    ``realized_vol_5s + vol_floor`` has its conformal quantile at ``coverage`` (the
    ceil((n + 1) * coverage)-th smallest of n): ``model_quantile`` for the model's errors,
    ``persistence_quantile`` for persistence's (|return|), so persistence serving in its place
    states an interval too. Scaling by volatility keeps coverage in calm and wild minutes alike,
    where one width for all would be too wide in the first and too narrow in the second.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    coverage: float = Field(gt=0.0, lt=1.0)
    vol_floor: float = Field(gt=0.0, allow_inf_nan=False)  # added to realized_vol_5s: a quiet second still has risk
    model_quantile: float = Field(ge=0.0, allow_inf_nan=False)  # finite: an infinite bound is no JSON number
    persistence_quantile: float = Field(ge=0.0, allow_inf_nan=False)
    n: int = Field(gt=0)  # validation rows the quantiles were taken on
    scale_feature: str = "realized_vol_5s"  # the volatility the quantiles are in units of (a trades-only market: its tape's)

    def scale(self, realized_vol_5s: float) -> float:
        """The unit the quantiles are in, for one row (log return)."""
        return max(realized_vol_5s, 0.0) + self.vol_floor

    def half_width(self, realized_vol_5s: float, persistence: bool = False) -> float:
        """Half-width in log return for one row; ``persistence``: the interval around no change."""
        return (self.persistence_quantile if persistence else self.model_quantile) * self.scale(realized_vol_5s)

    def hits(self, y: np.ndarray, pred: np.ndarray, realized_vol: np.ndarray, model_answered: np.ndarray) -> np.ndarray:
        """Per row, whether the realized log return ``y`` fell inside the interval serving states around
        ``pred``: the model's where it answered, persistence's where the input guard made persistence answer."""
        scale = np.maximum(realized_vol, 0.0) + self.vol_floor
        return np.abs(y - pred) <= scale * np.where(model_answered, self.model_quantile, self.persistence_quantile)


VOL_FEATURE = "realized_vol_5s"  # the interval's scale: every feature vector carries it
INTERVAL_COVERAGE = 0.8  # the prediction interval's nominal coverage (price_low_10s .. price_high_10s)


def conformal_quantile(scores: np.ndarray, coverage: float) -> float:
    """The ceil((n + 1) * coverage)-th smallest score: the split-conformal quantile (inf if n is too small)."""
    n = len(scores)
    k = math.ceil((n + 1) * coverage)
    return float(np.sort(scores)[k - 1]) if 0 < k <= n else math.inf


FLOOR_QUANTILES = (0.05, 0.1, 0.25, 0.5)  # candidate floors: these quantiles of the held-out volatility


def fit_interval(y: np.ndarray, pred: np.ndarray, realized_vol: np.ndarray, coverage: float) -> PredictionInterval | None:
    """The interval from held-out rows in time order (``y`` realized, ``pred`` predicted log returns).

    The floor is chosen on the first half (the narrowest mean width at ``coverage``), the quantiles
    are taken on the second half: a scale chosen on the rows that size the interval would break the
    conformal guarantee. None with fewer than 100 usable rows.
    """
    ok = np.isfinite(y) & np.isfinite(pred) & np.isfinite(realized_vol)
    if ok.sum() < 100:
        return None
    y, pred, vol = y[ok], pred[ok], np.maximum(realized_vol[ok], 0.0)
    half = len(y) // 2
    fallback = float(np.std(y[:half])) or 1e-6

    def mean_width(floor: float) -> float:
        scale = vol[:half] + floor
        return conformal_quantile(np.abs(y[:half] - pred[:half]) / scale, coverage) * float(np.mean(scale))

    floors = [f for f in (float(np.quantile(vol[:half], q)) for q in FLOOR_QUANTILES) if f > 0] or [fallback]
    floor = min(floors, key=mean_width)
    scale = vol[half:] + floor
    model_q = conformal_quantile(np.abs(y[half:] - pred[half:]) / scale, coverage)
    persistence_q = conformal_quantile(np.abs(y[half:]) / scale, coverage)
    if not (math.isfinite(model_q) and math.isfinite(persistence_q)):
        return None  # too few rows for this coverage: no finite bound to state
    return PredictionInterval(
        coverage=coverage, vol_floor=floor, n=len(y) - half, model_quantile=model_q, persistence_quantile=persistence_q
    )


class ModelMetadata(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_version: str
    model_kind: str  # "mlp" | "ridge_ofi" | "ridge_quotes" | "persistence"
    feature_names: list[str]
    horizon_s: int = HORIZON_US // 1_000_000  # what the model predicts; serving refuses any other
    output: str = OUTPUT_NAME
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    calibration: Calibration
    scaler_mean: list[float]  # the StandardScaler inside the graph, for reference
    scaler_scale: list[float]
    # Per feature, the inputs serving trusts the model with (batch.modeling.input_guard):
    # outside them a cycle falls back. Empty in artifacts from before the guard existed,
    # which are guarded by the scaler's mean and sd instead.
    guard_low: list[float] = []
    guard_high: list[float] = []
    interval: PredictionInterval | None = None  # artifacts from before it state no interval
    venue: str
    # Markets (venue ids as in the recordings: "binance.us", "binance.com-spot", ...) on which the
    # model has gate evidence. Empty: its own ``venue``, whose held-out window the gate judged it on.
    proven_markets: list[str] = []
    data_ranges: dict[str, list[int]]  # train/val/test [first ts, last ts] in ms
    hyperparameters: dict
    validation_metrics: dict
    created_at: str

    def proven_on(self, market: str) -> bool:
        """A model serves a market only on evidence from that market; persistence needs none."""
        return self.model_kind == "persistence" or market in (self.proven_markets or [self.venue])


class InputGuard:
    """Which inputs an artifact trusts its model with: the one rule serving (``btcpred.inference.models``)
    and evaluation (``btcpred.batch.report``) both apply, so a report scores the answers serving gives.

    Outside it a serving cycle falls back to persistence: a non-finite input (a NaN passes every
    comparison), one outside ``[guard_low, guard_high]``, or, for artifacts from before the guard,
    one more than ``max_abs_z`` scaler sds from the training mean.
    """

    def __init__(self, meta: ModelMetadata, max_abs_z: float = 10.0) -> None:
        n = len(meta.feature_names)
        self.names = tuple(meta.feature_names)
        self.low = self.high = self.mean = self.scale = None
        if len(meta.guard_low) == n == len(meta.guard_high):
            self.low, self.high = np.array(meta.guard_low), np.array(meta.guard_high)
        elif len(meta.scaler_mean) == n == len(meta.scaler_scale):
            self.mean = np.array(meta.scaler_mean)
            self.scale = np.where(np.array(meta.scaler_scale) > 0, np.array(meta.scaler_scale), 1.0)
        self.max_abs_z = max_abs_z

    @classmethod
    def of_range(cls, names: list[str] | tuple[str, ...], low, high) -> InputGuard:
        """The guard of a model not packaged yet (``btcpred.batch.backtest``): its trusted range alone."""
        guard = cls.__new__(cls)
        guard.names, guard.mean, guard.scale, guard.max_abs_z = tuple(names), None, None, 0.0
        guard.low, guard.high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
        return guard

    def outside(self, X: np.ndarray) -> np.ndarray:
        """Per cell of ``X`` (rows x features in the artifact's order): True where the input is not trusted."""
        bad = ~np.isfinite(X)
        with np.errstate(invalid="ignore"):
            if self.low is not None:
                bad |= (X < self.low) | (X > self.high)
            elif self.mean is not None:
                bad |= np.abs((X - self.mean) / self.scale) > self.max_abs_z
        return bad

    def trusted_rows(self, X: np.ndarray) -> np.ndarray:
        return ~self.outside(X).any(axis=1)

    def why(self, row: np.ndarray) -> str | None:
        """Why one row is not trusted (its first untrusted input), or None."""
        bad = np.flatnonzero(self.outside(row.reshape(1, -1))[0])
        if not bad.size:
            return None
        i, value = int(bad[0]), float(row.reshape(-1)[bad[0]])
        if not math.isfinite(value):
            return f"{self.names[i]} is {value}"
        if self.low is not None:
            return (
                f"{self.names[i]} ({value:.4g} outside the trusted range "
                f"[{self.low[i]:.4g}, {self.high[i]:.4g}] of the training data)"
            )
        return f"{self.names[i]} ({abs(value - self.mean[i]) / self.scale[i]:.0f} sd from training)"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify(onnx_bytes: bytes, metadata_json: bytes | str) -> ModelMetadata:
    """Parse the metadata and check the ONNX bytes against its checksum; ArtifactError otherwise."""
    try:
        meta = ModelMetadata.model_validate_json(metadata_json)
    except ValueError as exc:
        raise ArtifactError(f"metadata.json invalid: {exc}") from None
    actual = sha256_hex(onnx_bytes)
    if actual != meta.sha256:
        raise ArtifactError(f"checksum mismatch for {meta.model_version}: metadata {meta.sha256[:12]}, file {actual[:12]}")
    return meta


def write_local(directory: Path, onnx_bytes: bytes, meta: ModelMetadata) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ONNX_FILE).write_bytes(onnx_bytes)
    (directory / METADATA_FILE).write_text(json.dumps(meta.model_dump(), indent=2))


def read_local(directory: Path) -> tuple[bytes, ModelMetadata]:
    onnx_bytes = (directory / ONNX_FILE).read_bytes()
    return onnx_bytes, verify(onnx_bytes, (directory / METADATA_FILE).read_bytes())


class OnnxModel:
    """A verified artifact in an ONNX Runtime session (one thread: the cycle is latency-, not throughput-bound)."""

    def __init__(self, onnx_bytes: bytes, meta: ModelMetadata) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types for bad graphs
            raise ArtifactError(f"{meta.model_version}: ONNX Runtime refused the graph: {exc}") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME or inputs[0].shape[-1] != len(meta.feature_names):
            raise ArtifactError(f"{meta.model_version}: graph input does not match {len(meta.feature_names)} features")
        self.meta = meta

    @property
    def version(self) -> str:
        return self.meta.model_version

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted 10 s log returns, one per row of ``X`` (columns in ``feature_names`` order)."""
        out = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(X, dtype=np.float64)})[0]
        return out.reshape(-1)

    def confidence(self, predicted: np.ndarray) -> np.ndarray:
        cal = self.meta.calibration
        if not cal.abs_return:
            return np.full(len(predicted), 0.5)
        return np.interp(np.abs(predicted), cal.abs_return, cal.hit_rate)
