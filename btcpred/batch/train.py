"""Training run: feature store -> purged time split -> ridge (OFI), MLP (and ridge on quotes) -> ONNX -> gate -> registry.

    python -m btcpred.batch.train [--data DIR] [--venue binance.us] [--promote]

``--data`` first archives the recordings under DIR to bronze, rebuilds silver
and loads the feature store (idempotent), so a fresh machine trains from
``shared/data`` alone. Hyperparameters are chosen on the validation hour,
confidence is calibrated there, and the test hour is touched once, for the
report. Every candidate is logged to ``ml_experiments``; the fitted models are registered as
``staging``. Where the data has the best bid/ask stream (binance.com captures, the system's own
archive), a ridge on OFI and the quote features competes too. One of persistence and the models is picked by
validation loss; the gate (``btcpred/batch/gate.py``) then compares the pick with the production
model and with persistence on the test window, and logs its decision; ``--promote``
carries it out (persistence becomes production when nothing beats it and there is none).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from botocore.exceptions import ClientError

from btcpred.adapters import artifact_store, registry
from btcpred.adapters.db import migrate
from btcpred.adapters.db.schema import engine_for
from btcpred.adapters.lake import Lake
from btcpred.batch.datasets import FeatureSet
from btcpred.batch.feature_store import StaleSilver, load_features, read_training_data
from btcpred.batch.gate import PERSISTENCE, GateDecision, decide
from btcpred.batch.metrics import evaluate
from btcpred.batch.modeling import (
    BOOK_FEATURES,
    BOOK_FLOW_FEATURES,
    CONTEXT_MODEL_FEATURES,
    DEEP_OFI_MODEL_FEATURES,
    FLOW_FEATURES,
    IMBALANCE_FEATURES,
    MLP_GRID,
    OFI_FEATURES,
    PERSISTENCE_FEATURES,
    RIDGE_GRID,
    TRADE_SHARE_FEATURES,
    export_onnx,
    export_persistence_onnx,
    fit_calibration,
    fit_mlp,
    fit_ridge,
    input_guard,
    predict_return,
)
from btcpred.batch.report import Scored, persistence, score, summary, write_report
from btcpred.batch.selection import pick_on_validation
from btcpred.batch.silver import archive_to_bronze, bronze_to_silver
from btcpred.batch.splits import Split, hour_boundaries, purged_split
from btcpred.common import entry_point
from btcpred.common.config import S3Config, Settings, load_settings
from btcpred.common.model_artifact import (
    INTERVAL_COVERAGE,
    VOL_FEATURE,
    ArtifactError,
    Calibration,
    ModelMetadata,
    OnnxModel,
    PredictionInterval,
    fit_interval,
    sha256_hex,
)
from btcpred.common.progress import Progress
from btcpred.udfs.features import DEEP_OFI_FEATURES, PERP_FEATURES, QUOTE_FEATURES
from btcpred.udfs.lake_layout import SILVER_FEATURES
from btcpred.udfs.long_context import CONTEXT_FEATURES
from btcpred.udfs.trade_features import TRADE_FEATURE_NAMES, TRADE_VOL_FEATURE

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Candidate:
    kind: str
    features: tuple[str, ...]
    params: dict
    model: object
    val_mse: float


def _mse(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean((y - pred) ** 2))


def refresh_feature_store(s3: S3Config, engine: sa.Engine, data_dir: Path) -> None:
    lake = Lake(s3)
    lake.ensure_bucket()
    keys = archive_to_bronze(lake, data_dir)
    log.info("bronze: %d files archived", len(keys))
    for key, written in bronze_to_silver(lake).items():
        log.info("silver from %s: %s", key, written)
    for key in lake.keys(SILVER_FEATURES):
        try:
            result = load_features(engine, lake.get_table(key))
        except StaleSilver as exc:  # an archive hour from before a feature existed: batch.archive rebuilds it
            log.warning("%s not loaded: %s (python -m btcpred.batch.archive rebuilds it)", key, exc)
            continue
        log.info("feature store: %s, %d rows at %.0f rows/s", key, result.rows, result.rows_per_s)


def search(
    kind: str,
    features: tuple[str, ...],
    grid: tuple[dict, ...],
    data: FeatureSet,
    split: Split,
    engine: sa.Engine | None,
    run_id: str,
    ranges: dict,
) -> Candidate:
    """Fit every grid point on train, keep the best validation MSE; log each one as an experiment
    (``engine`` None: not logged, as in ``btcpred.batch.backtest``'s replays of the loop)."""
    X_train, y_train = data.take(split.train).columns(features), data.y[split.train]
    val = data.take(split.val)
    best: Candidate | None = None
    for i, params in enumerate(grid):
        started = time.perf_counter()
        model = fit_kind(kind, X_train, y_train, params)
        pred = predict_return(model, val.columns(features))
        e = evaluate(val.y, pred, val.mid, val.ts_ms, val.venue)
        metrics = {
            "val_mse": _mse(val.y, pred),
            "val_r2": e.r2,
            "val_rmse_ratio": e.rmse_ratio,
            "val_direction": e.direction_accuracy,
            "fit_seconds": time.perf_counter() - started,
        }
        if engine is not None:
            registry.log_experiment(
                engine, f"{run_id}-{kind}-{i}", kind, None, _jsonable(params), list(features), ranges, metrics
            )
        log.info("%s %s: val R2 %.4f, RMSE ratio %.4f", kind, params, e.r2, e.rmse_ratio)
        if best is None or metrics["val_mse"] < best.val_mse:
            best = Candidate(kind, features, params, model, metrics["val_mse"])
    assert best is not None
    return best


def fit_kind(kind: str, X: np.ndarray, y: np.ndarray, params: dict):
    """A candidate of ``kind`` (a ridge or the MLP) fitted with ``params``."""
    return fit_ridge(X, y, **params) if kind.startswith("ridge") else fit_mlp(X, y, **params)


def refit(chosen: Candidate, data: FeatureSet, split: Split) -> tuple[Candidate, np.ndarray]:
    """``chosen``'s specification (features, hyperparameters) fitted again on every row of the split
    (train, validation and test), and those rows: what serves after a run, in training and backtest alike."""
    rows = np.concatenate([split.train, split.val, split.test])
    model = fit_kind(chosen.kind, data.take(rows).columns(chosen.features), data.y[rows], chosen.params)
    return Candidate(chosen.kind, chosen.features, chosen.params, model, chosen.val_mse), rows


def _jsonable(params: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


def validation_interval(val: FeatureSet, val_pred: np.ndarray) -> PredictionInterval | None:
    scale = VOL_FEATURE if val.has((VOL_FEATURE,)) else TRADE_VOL_FEATURE  # a trades-only market: its tape's
    spec = fit_interval(val.y, val_pred, val.columns((scale,))[:, 0], INTERVAL_COVERAGE)
    return spec.model_copy(update={"scale_feature": scale}) if spec is not None else None


def package(
    c: Candidate,
    data: FeatureSet,
    split: Split,
    version: str,
    venue: str,
    ranges: dict,
    fitted_on: np.ndarray | None = None,
    calibration: Calibration | None = None,
    interval: PredictionInterval | None = None,
) -> tuple[bytes, ModelMetadata]:
    """The artifact of a fitted candidate: validation figures, confidence calibration and prediction
    interval from the validation rows, the trusted input range from the rows it was fitted on
    (``fitted_on``: train). A refit passes the calibration and interval of the fit the gate judged."""
    val = data.take(split.val)
    val_pred = predict_return(c.model, val.columns(c.features))
    onnx_bytes = export_onnx(c.model, len(c.features))
    scaler = c.model.named_steps["scale"]
    e = evaluate(val.y, val_pred, val.mid, val.ts_ms, val.venue)
    guard_low, guard_high = input_guard(data.take(split.train if fitted_on is None else fitted_on).columns(c.features))
    meta = ModelMetadata(
        model_version=version,
        model_kind=c.kind,
        feature_names=list(c.features),
        sha256=sha256_hex(onnx_bytes),
        calibration=calibration or fit_calibration(val_pred, val.y),
        scaler_mean=list(map(float, scaler.mean_)),
        interval=interval or validation_interval(val, val_pred),
        scaler_scale=list(map(float, scaler.scale_)),
        guard_low=guard_low,
        guard_high=guard_high,
        venue=venue,
        proven_markets=[venue],
        data_ranges=ranges,
        hyperparameters=_jsonable(c.params),
        validation_metrics={"r2": e.r2, "rmse_ratio": e.rmse_ratio, "direction_accuracy": e.direction_accuracy},
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    return onnx_bytes, meta


MIN_ROWS = 500
CANDIDATES = (
    ("ridge_imbalance", IMBALANCE_FEATURES, RIDGE_GRID),
    ("ridge_ofi", OFI_FEATURES, RIDGE_GRID),
    ("mlp", BOOK_FEATURES, MLP_GRID),
)
# Candidates on features not every row has, each with the features it needs and the share of rows
# that must have them before it competes: the multi-level OFI and the minutes of context (absent
# for their look-back after a replay's start: 5 s, 5 min), the best bid/ask stream's, and with a
# perpetual configured beside spot, the cross-market ones too (absent on recordings without them).
OPTIONAL_CANDIDATES = (
    (DEEP_OFI_FEATURES, 0.99, ("ridge_depth_ofi", DEEP_OFI_MODEL_FEATURES, RIDGE_GRID)),
    (CONTEXT_FEATURES, 0.99, ("ridge_context", CONTEXT_MODEL_FEATURES, RIDGE_GRID)),
    (QUOTE_FEATURES, 0.99, ("ridge_quotes", OFI_FEATURES + QUOTE_FEATURES, RIDGE_GRID)),
    (QUOTE_FEATURES + PERP_FEATURES, 0.99, ("ridge_perp", OFI_FEATURES + QUOTE_FEATURES + PERP_FEATURES, RIDGE_GRID)),
)


# A trades-only market (btcpred/batch/trade_rows.py): the one-feature flow ridge is its simplest
# baseline; the ridge over the whole tape, its shrinkage chosen on validation, the richer one.
TRADE_CANDIDATES = (("ridge_flow", FLOW_FEATURES, RIDGE_GRID), ("ridge_tape", TRADE_FEATURE_NAMES, RIDGE_GRID))


MIN_FLOW_SHARE = 0.5  # rows with a trade in the last 5 s needed before the flow candidates compete
FLOW_CANDIDATES = (
    ("ridge_flow_book", BOOK_FLOW_FEATURES, RIDGE_GRID),
    ("ridge_all", BOOK_FEATURES + TRADE_SHARE_FEATURES, RIDGE_GRID),
)


def candidates_for(data: FeatureSet) -> tuple[FeatureSet, tuple]:
    """The candidates this data can train, and the rows they train on.

    Some features are absent from some rows (``OPTIONAL_CANDIDATES``): the quote and perpetual
    features wherever the recording lacks those streams, the multi-level OFI and the context for
    their look-back after a replay's start. When enough rows have a candidate's features, the rows
    without them are left out, so every candidate is judged on the same rows, and that candidate
    competes; otherwise (the 1 Hz Binance.US book has neither stream) it does not.
    """
    if data.names == TRADE_FEATURE_NAMES:
        return data, TRADE_CANDIDATES
    candidates = CANDIDATES
    # trade flow competes where there are trades (the 1 Hz Binance.US book has none: its flow is 0)
    if len(data) and np.mean(data.columns(("signed_flow_5s",))[:, 0] != 0) >= MIN_FLOW_SHARE:
        candidates = candidates + FLOW_CANDIDATES
    for needed, share, candidate in OPTIONAL_CANDIDATES:
        has = np.isfinite(data.columns(needed)).all(axis=1)
        if len(data) and has.mean() >= share:
            data, candidates = data.take(np.flatnonzero(has)), candidates + (candidate,)
    return data, candidates


class NotEnoughData(RuntimeError):
    """Too few trainable rows to split into train, validation and test hours."""


def run(
    settings: Settings,
    venue: str,
    symbol: str,
    report_dir: Path,
    data_dir: Path | None = None,
    promote: bool = False,
    window_hours: float | None = None,
) -> dict:
    if settings.postgres.apply_migrations:
        migrate.upgrade(settings.postgres)  # as the owner: the one step with DDL
    engine = engine_for(settings.postgres, "trainer")
    try:
        return _run(settings, engine, venue, symbol, report_dir, data_dir, promote, window_hours)
    finally:
        engine.dispose()


def _run(
    settings: Settings,
    engine: sa.Engine,
    venue: str,
    symbol: str,
    report_dir: Path,
    data_dir: Path | None,
    promote: bool,
    window_hours: float | None = None,
) -> dict:
    if data_dir is not None:
        loader = engine_for(settings.postgres, "loader")  # the trainer may read features, never write them
        try:
            refresh_feature_store(settings.s3, loader, data_dir)
        finally:
            loader.dispose()
    data = read_training_data(engine, venue, symbol)
    if window_hours is not None and len(data):  # walk forward: the newest hours only
        data = data.take(np.flatnonzero(data.ts_ms >= data.ts_ms.max() - window_hours * 3_600_000))
    data, candidates = candidates_for(data)
    if len(data) < MIN_ROWS:
        raise NotEnoughData(f"only {len(data)} trainable rows for {venue} {symbol}: load data first (--data DIR)")
    val_start, test_start = hour_boundaries(data.ts_ms)
    split = purged_split(data.ts_ms, val_start, test_start)
    ranges = split.ranges(data.ts_ms)
    log.info("split: train %d, val %d, test %d rows (%s)", len(split.train), len(split.val), len(split.test), ranges)

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    lake = Lake(settings.s3)
    lake.ensure_bucket()
    test = data.take(split.test)
    scored: dict[str, Scored] = {}
    fitted: dict[str, Candidate] = {}
    versions: dict[str, str] = {}
    val_mse: dict[str, float] = {}
    progress = Progress("candidates trained", len(candidates), log, every_s=0.0)
    for kind, features, grid in candidates:
        best = search(kind, features, grid, data, split, engine, stamp, ranges)
        progress.step(f"{kind}: validation MSE {best.val_mse:.4g}")
        onnx_bytes, meta = package(best, data, split, f"{kind}-{stamp}", venue, ranges)
        meta = meta.model_copy(update={"model_version": f"{kind}-{stamp}-{meta.sha256[:8]}"})
        uri = artifact_store.upload(lake, onnx_bytes, meta)
        scored[kind] = score(OnnxModel(onnx_bytes, meta), test)  # as served: the input guard applied
        experiment_id = f"{stamp}-{kind}-final"
        registry.log_experiment(
            engine,
            experiment_id,
            kind,
            meta.model_version,
            _jsonable(best.params),
            list(features),
            ranges,
            {"test": summary(scored[kind], test), "validation": meta.validation_metrics},
        )
        registry.register(engine, meta, uri, experiment_id)
        versions[kind] = meta.model_version
        val_mse[kind] = best.val_mse
        fitted[kind] = best
        log.info("registered %s at %s", meta.model_version, uri)
    base = persistence(test)
    val_mse[PERSISTENCE] = _mse(data.y[split.val], np.zeros(len(split.val)))
    registry.log_experiment(
        engine,
        f"{stamp}-persistence",
        "persistence",
        None,
        {},
        [],
        ranges,
        {"test": summary(base), "validation": {"val_mse": val_mse[PERSISTENCE]}},
    )
    pick = pick_on_validation(fitted, data.take(split.val))
    if pick.reason:
        log.info("picked %s on validation: %s", pick.kind, pick.reason)
    decisions = gate_run(engine, lake, data, split, test, scored, versions, val_mse, pick.kind, stamp, venue, ranges, promote)
    refit_version = None
    serving_kind = serving_specification(engine, lake, decisions[-1], versions, venue) if promote else None
    if serving_kind is not None:
        refit_version = refit_and_promote(
            engine, lake, fitted[serving_kind], data, split, stamp, venue, ranges, versions[serving_kind]
        )
    subject = next((kind for kind, v in versions.items() if v == decisions[-1].challenger), None)
    # the subject: what the gate judged last (a fitted pick, or persistence under its registered version)
    subject_scored = scored[subject] if subject else Scored(decisions[-1].challenger, base.pred, base.evaluation)
    result = write_report(
        report_dir,
        f"Training report {stamp}: the gate's window ({venue}), subject {subject_scored.name}",
        test,
        subject_scored,
        [s for s in ((base,) if subject else ()) + tuple(scored.values()) if s is not subject_scored],
        [
            "**These rows decided the promotion, so the promoted model's figures on them are biased "
            "upward (it passed because it did well here). Accuracy on data nothing was chosen on: "
            "`python -m btcpred.batch.report` on later data, or the walk-forward "
            "(`python -m btcpred.batch.backtest`).**",
            f"train {ranges['train']}, validation {ranges['val']}, test {ranges['test']} (ms, purge 10 s, embargo 5 s)",
            "models: " + ", ".join(f"{versions[kind]} ({kind} on {', '.join(features)})" for kind, features, _ in candidates),
            *(f"gate: {d.challenger} {'promoted' if d.promote else 'not promoted'}: {d.reason}" for d in decisions),
            *(
                [
                    f"served: {refit_version}, the serving specification ({serving_kind}, hyperparameters "
                    f"tuned in this run) refitted on every row up to {ranges['test'][1]} (ms)"
                ]
                if refit_version
                else []
            ),
        ],
    )
    production = registry.production(engine)
    return {
        **result,
        "versions": versions,
        "gate": [d.as_metrics() for d in decisions],
        "production": production.model_version if production else None,
        "report": str(report_dir / "report.md"),
    }


def gate_run(
    engine: sa.Engine,
    lake: Lake,
    data: FeatureSet,
    split: Split,
    test: FeatureSet,
    scored: dict[str, Scored],
    versions: dict[str, str],
    val_mse: dict[str, float],
    pick: str,
    stamp: str,
    venue: str,
    ranges: dict,
    promote: bool,
) -> list[GateDecision]:
    """Let the gate judge the validation's ``pick`` (``btcpred/batch/selection.py``) on the test window
    (``btcpred/batch/gate.py``).

    Each decision is logged to ``ml_experiments`` (kind ``gate``) with its figures, promoted or
    not. With ``promote``, a decision to promote is carried out; when the pick loses and there is
    no production model at all, persistence is registered and promoted in its place.
    """
    champion = champion_predictions(engine, lake, test)
    decisions: list[GateDecision] = []

    def judge(version: str, pred: np.ndarray, is_persistence: bool) -> GateDecision:
        decision = decide(
            version, pred, test.y, test.mid, test.ts_ms, champion, challenger_is_persistence=is_persistence, segment=test.venue
        )
        params = {"picked_by": "validation mse, one-standard-error rule", "val_mse": val_mse, "promote_requested": promote}
        registry.log_experiment(
            engine, f"{stamp}-gate-{len(decisions)}", "gate", version, params, [], ranges, decision.as_metrics()
        )
        decisions.append(decision)
        log.info("gate: %s %s: %s", version, "promote" if decision.promote else "keep production", decision.reason)
        if promote and decision.promote:
            log.info("promoted %s to production (replaced %s)", version, registry.promote(engine, version))
        return decision

    def persistence_model() -> str:
        val = data.take(split.val)
        return register_persistence(
            engine, lake, stamp, venue, ranges, val_mse[PERSISTENCE], validation_interval(val, np.zeros(len(val)))
        )

    zeros = np.zeros(len(test))
    if pick == PERSISTENCE:
        judge(persistence_model(), zeros, True)
    elif not judge(versions[pick], scored[pick].pred, False).promote and promote and champion is None:
        judge(persistence_model(), zeros, True)  # nothing in production and the pick lost: the baseline serves
    return decisions


def serving_specification(
    engine: sa.Engine, lake: Lake, decision: GateDecision, versions: dict[str, str], venue: str
) -> str | None:
    """The candidate kind that serves after this run, if it is a fitted one: the pick the gate just promoted,
    or else the kind of the production model kept (its specification is refitted every run: the gate's
    evidence is for the specification, and its last fit ends where the previous run's data ended)."""
    if decision.promote:
        return next((kind for kind, v in versions.items() if v == decision.challenger), None)
    current = registry.production(engine)
    if current is None:
        return None
    try:
        _, meta = artifact_store.fetch(lake, current.artifact_uri, current.checksum_sha256)
    except (ClientError, ArtifactError, ValueError) as exc:  # production stays as it is, unrefitted
        log.warning(
            "production model %s not readable (%s): its specification is not refitted this run", current.model_version, exc
        )
        return None
    return meta.model_kind if meta.model_kind in versions and meta.venue == venue else None


def refit_and_promote(
    engine: sa.Engine,
    lake: Lake,
    chosen: Candidate,
    data: FeatureSet,
    split: Split,
    stamp: str,
    venue: str,
    ranges: dict,
    gated_version: str,
) -> str:
    """The serving specification (features, hyperparameters tuned in this run) fitted again on every row
    up to now, and promoted in place of ``gated_version`` (this run's fit of it, whose rows end an hour
    or two before it would serve).

    The gate's evidence is for the specification on this venue; the refit keeps the calibration of
    ``gated_version`` (fitted on validation rows the refit now trains on, so not re-estimated).
    """
    refitted, rows = refit(chosen, data, split)
    gated = registry.get(engine, gated_version)
    _, gated_meta = artifact_store.fetch(lake, gated.artifact_uri, gated.checksum_sha256)
    refit_ranges = {**ranges, "refit": [int(data.ts_ms[rows].min()), int(data.ts_ms[rows].max())]}
    onnx_bytes, meta = package(
        refitted,
        data,
        split,
        f"{chosen.kind}-{stamp}-refit",
        venue,
        refit_ranges,
        fitted_on=rows,
        calibration=gated_meta.calibration,
        interval=gated_meta.interval,
    )
    meta = meta.model_copy(update={"model_version": f"{chosen.kind}-{stamp}-refit-{meta.sha256[:8]}"})
    experiment_id = f"{stamp}-{chosen.kind}-refit"
    registry.log_experiment(
        engine,
        experiment_id,
        "refit",
        meta.model_version,
        _jsonable(chosen.params),
        list(chosen.features),
        refit_ranges,
        {"refit_of": gated_version, "rows": int(len(rows))},
    )
    registry.register(engine, meta, artifact_store.upload(lake, onnx_bytes, meta), experiment_id)
    log.info(
        "promoted %s, the refit of %s (replaced %s)",
        meta.model_version,
        gated_version,
        registry.promote(engine, meta.model_version),
    )
    return meta.model_version


def champion_predictions(engine: sa.Engine, lake: Lake, test: FeatureSet) -> tuple[str, np.ndarray] | None:
    """The production model's predictions on the test window; None if there is none, or if its
    artifact cannot be read (then inference cannot serve it either, and the gate judges the pick
    against persistence alone, with a warning in the log)."""
    current = registry.production(engine)
    if current is None:
        return None
    try:
        onnx_bytes, meta = artifact_store.fetch(lake, current.artifact_uri, current.checksum_sha256)
        return current.model_version, OnnxModel(onnx_bytes, meta).predict(test.columns(meta.feature_names))
    except (ClientError, ArtifactError, ValueError) as exc:
        log.warning(
            "production model %s is not servable (%s): the gate judges against persistence only", current.model_version, exc
        )
        return None


def register_persistence(
    engine: sa.Engine,
    lake: Lake,
    stamp: str,
    venue: str,
    ranges: dict,
    val_mse: float,
    interval: PredictionInterval | None = None,
) -> str:
    """Persistence as a registered artifact (staging), servable like any model."""
    onnx_bytes = export_persistence_onnx()
    meta = ModelMetadata(
        model_version=f"persistence-{stamp}-{sha256_hex(onnx_bytes)[:8]}",
        model_kind=PERSISTENCE,
        feature_names=list(PERSISTENCE_FEATURES),
        sha256=sha256_hex(onnx_bytes),
        calibration=Calibration(abs_return=[], hit_rate=[]),
        scaler_mean=[],
        scaler_scale=[],
        venue=venue,
        interval=interval,
        data_ranges=ranges,
        hyperparameters={},
        validation_metrics={"val_mse": val_mse},
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    registry.register(engine, meta, artifact_store.upload(lake, onnx_bytes, meta), f"{stamp}-persistence")
    return meta.model_version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train, export and register the 10 s return models")
    parser.add_argument("--data", type=Path, help="archive and load the recordings under DIR first")
    entry_point.add_market(parser)  # the Binance.US hours on hand: --venue binance.us
    parser.add_argument("--report-dir", type=Path, default=None, help="default: <reports_dir>/training")
    parser.add_argument(
        "--promote",
        action="store_true",
        help="carry out the gate's decision: the validation pick becomes production only if it beats "
        "the production model and persistence on the test window (btcpred/batch/gate.py)",
    )
    entry_point.add_config(parser)
    args = parser.parse_args(argv)
    entry_point.setup_logging()
    settings = load_settings(args.config)
    venue, symbol = entry_point.market_of(args, settings)
    try:
        result = run(
            settings, venue, symbol, entry_point.reports_dir(args.report_dir, settings, "training"), args.data, args.promote
        )
    except NotEnoughData as exc:
        log.error("%s", exc)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
