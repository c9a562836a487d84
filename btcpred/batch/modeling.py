"""Model fitting and ONNX export: ridge on order-flow imbalance and an MLP.

Targets are 10 s log returns (~1e-4); the estimators are fitted on basis
points, and the exported graph multiplies by 1e-4 at the end, so the ONNX
output is the log return itself and serving needs no side information.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
from onnx import helper, numpy_helper
from skl2onnx import to_onnx
from sklearn.exceptions import ConvergenceWarning
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import Ridge
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from btcpred.common.model_artifact import INPUT_NAME, OUTPUT_NAME, Calibration
from btcpred.udfs.features import DEEP_OFI_FEATURES, FEATURE_NAMES, SCALE_FREE_FEATURES
from btcpred.udfs.long_context import CONTEXT_FEATURES

BP = 1e4  # fit in basis points of log return
TRADE_FEATURES = ("trade_intensity_5s", "signed_flow_1s", "signed_flow_5s")
# Book-only inputs: the hours of training data (Binance.US top-20 book) carry no trades. Scale-free
# only (udfs.features.SCALE_FREE_FEATURES): the model is served on another venue than the one
# its hours come from, and inputs in a venue's units (OFI in coins, offsets in dollars) put
# binance.com rows 50 sd outside Binance.US training.
# Inputs every row has: the multi-level OFI is absent for its first 5 s of a replay, so it competes
# in its own candidate (``train.OPTIONAL_CANDIDATES``), like the context and the streams' features.
BOOK_FEATURES = tuple(name for name in SCALE_FREE_FEATURES if name not in TRADE_FEATURES + DEEP_OFI_FEATURES)
OFI_FEATURES = ("ofi_norm_1s", "ofi_norm_2s", "ofi_norm_5s")
# The simplest baseline with skill on these data: one ridge on the top-of-book quantity imbalance.
# Every richer model has to beat it in the same run, so it competes like any candidate.
IMBALANCE_FEATURES = ("depth_imbalance_1",)
FLOW_FEATURES = ("trade_flow_5s",)  # a trades-only market's one-feature baseline (btcpred.udfs.trade_features)
# A book market's trade flow, as the job computes it: the signed volume shares (scale-free; the
# intensity is trades per second, a venue's unit) beside the top-of-book imbalance.
BOOK_FLOW_FEATURES = ("signed_flow_1s", "signed_flow_5s", "depth_imbalance_1")
TRADE_SHARE_FEATURES = ("signed_flow_1s", "signed_flow_5s", "count_imbalance_1s", "count_imbalance_5s")
# Minutes of context (``udfs.long_context``): moves, volatility and flow over 30 s and 5 min,
# beside the top-of-book imbalance and the level-1 OFI it is judged against.
CONTEXT_MODEL_FEATURES = IMBALANCE_FEATURES + OFI_FEATURES + CONTEXT_FEATURES
DEEP_OFI_MODEL_FEATURES = IMBALANCE_FEATURES + OFI_FEATURES + DEEP_OFI_FEATURES

# Small, strongly regularised nets: a few thousand rows of a regime-shifting market
# (the sign of 5 s momentum flips between the training and validation hours).
MLP_GRID = (
    {"hidden_layer_sizes": (8,), "alpha": 1.0},
    {"hidden_layer_sizes": (8,), "alpha": 3.0},
    {"hidden_layer_sizes": (16,), "alpha": 1.0},
    {"hidden_layer_sizes": (16,), "alpha": 10.0},
    {"hidden_layer_sizes": (32, 16), "alpha": 10.0},
)
RIDGE_GRID = ({"alpha": 1.0}, {"alpha": 100.0}, {"alpha": 10_000.0})


def columns(names: tuple[str, ...] | list[str]) -> list[int]:
    return [FEATURE_NAMES.index(n) for n in names]


def fit_ridge(X: np.ndarray, y: np.ndarray, alpha: float) -> Pipeline:
    """No intercept: an intercept learns the training window's mean return (the hour's drift), which
    is no forecast of the next hour. Inputs are centred, so an input at its usual level (a venue's
    book is rarely balanced on average) predicts no move and only a departure from it moves the price.
    """
    model = Pipeline([("scale", StandardScaler()), ("ridge", Ridge(alpha=alpha, fit_intercept=False))]).fit(X, y * BP)
    model.named_steps["ridge"].intercept_ = np.float64(0.0)  # skl2onnx reshapes it; sklearn leaves a bare float
    return model


def fit_mlp(X: np.ndarray, y: np.ndarray, hidden_layer_sizes: tuple[int, ...], alpha: float, seed: int = 0) -> Pipeline:
    mlp = MLPRegressor(
        hidden_layer_sizes=hidden_layer_sizes,
        alpha=alpha,
        learning_rate_init=1e-3,
        max_iter=300,
        batch_size=128,
        early_stopping=False,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # fixed epoch budget; validation decides
        return Pipeline([("scale", StandardScaler()), ("mlp", mlp)]).fit(X, y * BP)


def predict_return(model: Pipeline, X: np.ndarray) -> np.ndarray:
    """The in-memory model's log-return prediction (what the ONNX graph must reproduce)."""
    return model.predict(X).reshape(-1) / BP


GUARD_QUANTILE = 0.001  # the training range is read at the 0.1 % and 99.9 % quantiles


def input_guard(X: np.ndarray) -> tuple[list[float], list[float]]:
    """Per column, the interval serving trusts a model with: the training data's 0.1 %..99.9 %
    quantile range, widened on each side by its own width.

    Quantiles, not mean and sd: order-flow features are heavy-tailed, their sd is made by a few
    bursts, and a z-score flags ordinary rows of a calm hour as often as it misses a real change
    of units. A value outside lies further past the training's extreme tail than that tail
    spans: a change of venue, of units or a broken feed, not an unusual second. A column that
    was constant in training (width 0) trusts only that value: the model never saw another.
    """
    lo = np.quantile(X, GUARD_QUANTILE, axis=0)
    hi = np.quantile(X, 1.0 - GUARD_QUANTILE, axis=0)
    width = hi - lo
    return [float(v) for v in lo - width], [float(v) for v in hi + width]


def fit_calibration(pred: np.ndarray, y: np.ndarray, max_points: int = 64) -> Calibration:
    """Isotonic P(direction right | price moved) against |predicted return|, on held-out rows."""
    mask = (y != 0) & (pred != 0)
    if mask.sum() < 20:
        return Calibration(abs_return=[], hit_rate=[])
    x = np.abs(pred[mask])
    hit = (np.sign(pred[mask]) == np.sign(y[mask])).astype(float)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(x, hit)
    xs, ys = iso.X_thresholds_, iso.y_thresholds_
    if len(xs) > max_points:
        keep = np.unique(np.linspace(0, len(xs) - 1, max_points).round().astype(int))
        xs, ys = xs[keep], ys[keep]
    return Calibration(abs_return=[float(v) for v in xs], hit_rate=[float(v) for v in ys])


def export_onnx(model: Pipeline, n_features: int) -> bytes:
    """The fitted pipeline as ONNX: float64 in, log return out (basis points scaled back)."""
    graph_model = to_onnx(model, np.zeros((1, n_features), dtype=np.float64), target_opset=17)
    graph = graph_model.graph
    graph.input[0].name, old_input = INPUT_NAME, graph.input[0].name
    for node in graph.node:
        node.input[:] = [INPUT_NAME if name == old_input else name for name in node.input]
    bp_output = graph.output[0].name
    graph.initializer.append(numpy_helper.from_array(np.array([1.0 / BP], dtype=np.float64), "bp_to_return"))
    graph.node.append(helper.make_node("Mul", [bp_output, "bp_to_return"], [OUTPUT_NAME], name="scale_to_log_return"))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.DOUBLE, [None, 1]))
    onnx.checker.check_model(graph_model)
    return graph_model.SerializeToString()


PERSISTENCE_FEATURES = ("mid",)  # an input it ignores: the artifact contract has one input of named features


def export_persistence_onnx() -> bytes:
    """Persistence as an ONNX model (a zero log return whatever the input), so the baseline can be
    registered and served as production like any model when nothing beats it."""
    n = len(PERSISTENCE_FEATURES)
    graph = helper.make_graph(
        [helper.make_node("MatMul", [INPUT_NAME, "zero_weights"], [OUTPUT_NAME], name="no_change")],
        "persistence",
        [helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.DOUBLE, [None, n])],
        [helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.DOUBLE, [None, 1])],
        [numpy_helper.from_array(np.zeros((n, 1), dtype=np.float64), "zero_weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what ONNX Runtime and skl2onnx's graphs here use
    onnx.checker.check_model(model)
    return model.SerializeToString()
