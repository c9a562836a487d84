"""Accuracy report on held-out data: Markdown tables, PNG plots, one JSON line.

Usage (the evaluation contract)::

    python -m btcpred.batch.report --data DIR --model VERSION|PATH [--baseline VERSION|PATH] [--out DIR]

``DIR`` holds files in the formats of ``shared/data`` (any such directory);
features are computed by the same code as the Flink job. Rows of the model's
own venue up to the end of the last window it was fitted, tuned or gated on (plus the 10 s purge) are
excluded, so only data the model never saw is scored; by default only the
model's own venue is scored (book features are in venue units). The last line printed
is a JSON object with ``r2``, ``rmse_ratio_vs_persistence``,
``direction_accuracy``, ``dm_pvalue`` and ``n``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from btcpred.batch.datasets import FeatureSet, from_directory
from btcpred.batch.metrics import Evaluation, brier, calibration_table, evaluate, expected_calibration_error
from btcpred.common import entry_point, recalibration
from btcpred.common.config import Settings, load_settings
from btcpred.common.model_artifact import VOL_FEATURE, InputGuard, OnnxModel, PredictionInterval
from btcpred.udfs.features import HORIZON_US
from btcpred.udfs.trade_features import TRADE_VOL_FEATURE

log = logging.getLogger(__name__)

PURGE_MS = HORIZON_US // 1000  # a label reaches one horizon past its row
LEAKAGE_R2 = 0.08  # above this a 10 s return model is more likely leaking than skilled


@dataclass(frozen=True, slots=True)
class Scored:
    name: str
    pred: np.ndarray
    evaluation: Evaluation
    confidence: np.ndarray | None = None
    interval_hit: np.ndarray | None = None  # per row: the realized return inside the stated interval
    interval_coverage: float | None = None  # the interval's nominal coverage
    # as served: the interval and the confidence recalibrated on each market's realized rows, in time order
    served_interval_hit: np.ndarray | None = None
    served_confidence: np.ndarray | None = None


def interval_hits(model: OnnxModel, data: FeatureSet, pred: np.ndarray, inside: np.ndarray) -> np.ndarray | None:
    """Whether each row's realized return fell in the interval serving states (persistence's where the
    guard made persistence answer); None for an artifact without one."""
    spec = model.meta.interval
    return spec.hits(data.y, pred, data.columns((spec.scale_feature,))[:, 0], inside) if spec else None


def unseen(data: FeatureSet, model: OnnxModel) -> FeatureSet:
    """Drop rows of the model's venue up to the last one anything about it was decided on (with the purge):
    fitted, tuned, gated (the test window chose it too) or refitted."""
    ends = [r[1] for r in model.meta.data_ranges.values() if r]
    if not ends:
        return data
    seen_until = max(ends)
    keep = ~((data.venue == model.meta.venue) & (data.ts_ms <= seen_until + PURGE_MS))
    return data.take(np.flatnonzero(keep))


def score(model: OnnxModel, data: FeatureSet) -> Scored:
    """The model as served: where an input is outside its trusted range, the answer is persistence's."""
    X = data.columns(model.meta.feature_names)
    inside = InputGuard(model.meta).trusted_rows(X)
    pred = np.zeros(len(data))  # persistence where serving falls back; the model is not even asked there
    if inside.any():
        pred[inside] = model.predict(X[inside])
    if not inside.all():
        log.info(
            "%s: %d of %d rows outside the trusted input range, scored as the served fallback (persistence)",
            model.version,
            int((~inside).sum()),
            len(data),
        )
    spec = model.meta.interval
    confidence = model.confidence(pred)
    served_hit, served_confidence = None, confidence
    if spec is not None:
        served_hit, served_confidence = replay_as_served(spec, data, pred, inside, confidence)
    return Scored(
        model.version,
        pred,
        evaluate(data.y, pred, data.mid, data.ts_ms, data.venue),
        confidence,
        interval_hits(model, data, pred, inside),
        spec.coverage if spec else None,
        served_hit,
        served_confidence,
    )


def replay_as_served(
    spec: PredictionInterval,
    data: FeatureSet,
    pred: np.ndarray,
    inside: np.ndarray,
    confidence: np.ndarray | None = None,
    make: Callable[[float], recalibration.Recalibration] = recalibration.Recalibration,
) -> tuple[np.ndarray, np.ndarray]:
    """The interval and confidence serving states on ``data``, recalibrated row by row in time order
    (``recalibration.replay``) from the artifact's own: its volatility scale, and its quantile for a
    row the model answers or persistence's for one outside the trusted range (``inside`` False).
    Per row: whether the realized return fell inside, and the confidence stated."""
    scale = np.maximum(data.columns((spec.scale_feature,))[:, 0], 0.0) + spec.vol_floor
    fallback_q = np.where(inside, spec.model_quantile, spec.persistence_quantile)
    fallback_c = confidence if confidence is not None else np.full(len(data), 0.5)
    return recalibration.replay(
        data.ts_ms, data.venue, data.y, pred, scale, fallback_q, fallback_c, spec.coverage, HORIZON_US // 1000, make=make
    )


def persistence(data: FeatureSet) -> Scored:
    pred = np.zeros(len(data))
    return Scored("persistence", pred, evaluate(data.y, pred, data.mid, data.ts_ms, data.venue))


REGIMES = ("calm", "middle", "wild")


def _fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _ci(ci: tuple[float, float]) -> str:
    return f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"


def results_table(scored: list[Scored]) -> list[str]:
    lines = [
        "| model | n | blocks | R²_OS | R²_OS 95 % CI | RMSE (USD) | RMSE ratio | MAE (USD) | MAE ratio | "
        "direction (moves) | t | p | Clark-West p |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in scored:
        e = s.evaluation
        lines.append(
            f"| {s.name} | {e.n} | {e.blocks} | {_fmt(e.r2)} | {_ci(e.r2_ci)} | {_fmt(e.rmse, 3)} | "
            f"{_fmt(e.rmse_ratio)} | {_fmt(e.mae, 3)} | {_fmt(e.mae_ratio)} | "
            f"{_fmt(e.direction_accuracy * 100 if e.direction_n else float('nan'), 1)} % of {e.direction_n} | "
            f"{_fmt(e.dm_stat, 2)} | {_fmt(e.dm_pvalue)} | {_fmt(e.cw_pvalue)} |"
        )
    return lines


def per_market(data: FeatureSet, s: Scored) -> list[str]:
    """One row per venue (market), on the same definitions as the headline."""
    nominal = f"{s.interval_coverage:.0%} interval" if s.interval_coverage else "interval"
    lines = [
        f"| market | n | blocks | R²_OS | R²_OS 95 % CI | RMSE ratio | direction (moves) | p | {nominal}: artifact's "
        "coverage | as served (recalibrated) | Brier skill: artifact's | as served |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for venue in sorted(set(data.venue)):
        idx = np.flatnonzero(data.venue == venue)
        e = evaluate(data.y[idx], s.pred[idx], data.mid[idx], data.ts_ms[idx], data.venue[idx])
        stated = _share(s.interval_hit, idx)
        served = _share(s.served_interval_hit, idx)
        lines.append(
            f"| {venue} | {e.n} | {e.blocks} | {_fmt(e.r2)} | {_ci(e.r2_ci)} | {_fmt(e.rmse_ratio)} | "
            f"{_fmt(e.direction_accuracy * 100 if e.direction_n else float('nan'), 1)} % of {e.direction_n} | "
            f"{_fmt(e.dm_pvalue)} | {_fmt(stated * 100, 1)} % | {_fmt(served * 100, 1)} % | "
            f"{_fmt(brier_skill_on(data, s, s.confidence, idx), 3)} | {_fmt(brier_skill_on(data, s, s.served_confidence, idx), 3)} |"
        )
    return lines


def _share(hits: np.ndarray | None, idx: np.ndarray) -> float:
    return float(np.mean(hits[idx])) if hits is not None and len(idx) else float("nan")


def brier_skill_on(data: FeatureSet, s: Scored, confidence: np.ndarray | None, idx: np.ndarray) -> float:
    """Brier skill against the best constant of ``confidence`` on the rows ``idx`` where the price moved
    and the model took a side; nan where there is nothing to judge."""
    if confidence is None:
        return float("nan")
    mask, correct = hit_mask(data.take(idx), Scored(s.name, s.pred[idx], s.evaluation))
    return brier(confidence[idx][mask], correct)[1] if mask.any() else float("nan")


def hit_mask(data: FeatureSet, s: Scored) -> tuple[np.ndarray, np.ndarray]:
    """Rows where the price moved and the model took a side, and whether it took the right one."""
    mask = (data.y != 0) & (s.pred != 0)
    return mask, (np.sign(s.pred[mask]) == np.sign(data.y[mask])).astype(float)


def per_hour(data: FeatureSet, s: Scored) -> list[str]:
    lines = [
        "| hour (UTC) | venue | n | R²_OS | R²_OS 95 % CI | RMSE ratio | direction | p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    hours = data.ts_ms // 3_600_000
    for venue in sorted(set(data.venue)):
        for hour in sorted(set(hours[data.venue == venue])):
            idx = np.flatnonzero((hours == hour) & (data.venue == venue))
            if len(idx) < 30:
                continue
            e = evaluate(data.y[idx], s.pred[idx], data.mid[idx], data.ts_ms[idx], data.venue[idx])
            stamp = datetime.fromtimestamp(hour * 3600, tz=timezone.utc).strftime("%Y-%m-%d %H:00")
            lines.append(
                f"| {stamp} | {venue} | {e.n} | {_fmt(e.r2)} | {_ci(e.r2_ci)} | {_fmt(e.rmse_ratio)} | "
                f"{_fmt(e.direction_accuracy * 100, 1)} % | {_fmt(e.dm_pvalue)} |"
            )
    return lines


def plots(out: Path, data: FeatureSet, s: Scored) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files: list[str] = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        files.append(name)

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(data.y * 1e4, s.pred * 1e4, s=4, alpha=0.4)
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set(xlabel="realized 10 s return (bp)", ylabel="predicted (bp)", title="predicted vs realized (held out)")
    save(fig, "pred_vs_realized.png")

    realized = data.mid * np.exp(data.y)
    fig, ax = plt.subplots(figsize=(6, 4))
    err_model = data.mid * np.exp(s.pred) - realized
    err_base = data.mid - realized
    lim = np.percentile(np.abs(np.concatenate([err_model, err_base])), 99)
    bins = np.linspace(-lim, lim, 60)
    ax.hist(err_base, bins=bins, alpha=0.5, label="persistence")
    ax.hist(err_model, bins=bins, alpha=0.5, label=s.name)
    ax.set(xlabel="price error 10 s ahead (USD)", ylabel="count", title="error distribution")
    ax.legend()
    save(fig, "error_distribution.png")

    if s.confidence is not None:
        mask = (data.y != 0) & (s.pred != 0)
        table = calibration_table(s.confidence[mask], (np.sign(s.pred[mask]) == np.sign(data.y[mask])).astype(float), bins=8)
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot([0.3, 1], [0.3, 1], color="grey", lw=0.8, label="perfect")
        ax.plot([r["mean_confidence"] for r in table], [r["hit_rate"] for r in table], "o-", label=s.name)
        ax.set(xlabel="stated confidence", ylabel="observed hit rate (price moved)", title="confidence calibration")
        ax.legend()
        save(fig, "calibration.png")
    return files


def write_report(out: Path, title: str, data: FeatureSet, model: Scored, others: list[Scored], notes: list[str]) -> dict:
    """Markdown + PNGs into ``out``; returns the headline figures of ``model``."""
    out.mkdir(parents=True, exist_ok=True)
    e = model.evaluation
    lines = (
        [f"# {title}", ""]
        + [f"- {n}" for n in notes]
        + [
            f"- rows scored: {len(data)} (full-quality 2 s vectors with a 10 s label), venues: {', '.join(sorted(set(data.venue)))}",
            f"- period: {_iso(data.ts_ms.min())} .. {_iso(data.ts_ms.max())}" if len(data) else "- period: none",
            "",
            "## Held-out accuracy",
            "",
            "Errors are on the price 10 s ahead (USD); ratios are against persistence (price unchanged).",
            "R²_OS = 1 - SSE / sum of squared realised returns (log returns): skill against persistence.",
            "t and p: the mean squared-error differential against persistence over its block-robust standard error,",
            "5-minute blocks of data time (never across a market or a gap), p from a wild block bootstrap (each block's",
            "sum flips sign, the null imposed); the R²_OS interval is the set of values that test keeps, so it excludes",
            "0 exactly when p < 0.05 (btcpred/common/forecast_skill.py). Clark-West p (one-sided):",
            "whether the model carries information at all. Direction counts rows where the price moved and the model",
            "took a side.",
            "",
            *results_table([*others, model]),
            "",
        ]
    )
    if e.r2 > LEAKAGE_R2:
        lines += [f"**R² {e.r2:.3f} is above {LEAKAGE_R2:.0%}: audit for leakage before quoting it.**", ""]
    if model.confidence is not None:
        mask, correct = hit_mask(data, model)
        ece = expected_calibration_error(model.confidence[mask], correct)
        brier_score, brier_skill = brier(model.confidence[mask], correct)
        verdict = (
            "it tells rows apart"
            if brier_skill > 0
            else "**the confidence is flat: it tells rows apart no better than one constant**"
        )
        lines += [
            "## Confidence calibration",
            "",
            "confidence = P(direction right | price moved), fitted on validation data. "
            f"Expected calibration error (row-weighted |confidence - hit rate| over these bins): "
            f"{_fmt(ece, 3)}. Brier score {_fmt(brier_score)}, skill against the best constant "
            f"(the observed hit rate) {_fmt(brier_skill)}: {verdict}.",
            "",
            "| n | mean confidence | observed hit rate |",
            "|---|---|---|",
        ]
        lines += [
            f"| {r['n']} | {r['mean_confidence']:.3f} | {r['hit_rate']:.3f} |"
            for r in calibration_table(model.confidence[mask], correct)
        ]
        if model.served_confidence is not None:
            served_skill = brier(model.served_confidence[mask], correct)[1]
            lines += [
                "",
                f"As served, the confidence is recalibrated on each market's last {recalibration.ROLLING_ROWS} "
                f"realized rows once it has {recalibration.MIN_ROWS} (hit rate by the predicted move relative to "
                f"the volatility; btcpred/common/recalibration.py): Brier skill {_fmt(served_skill)}"
                + ("." if served_skill > 0 else ": **flat as well**."),
            ]
        lines.append("")
    lines += ["## Per market", "", *per_market(data, model), "", "## Per hour", "", *per_hour(data, model), ""]
    lines += ["## By volatility regime", "", *regime_table(by_volatility_regime(data, model.pred)), "", "## Plots", ""]
    lines += [f"![{f}]({f})" for f in plots(out, data, model)] if len(data) else []
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return summary(model, data)


def by_volatility_regime(data: FeatureSet, pred: np.ndarray) -> dict | None:
    """The answers' skill in calm, middle and wild thirds of the rows by recent volatility, so a user
    sees where the skill lives (each third on the headline's definitions, its blocks its own)."""
    feature = VOL_FEATURE if data.has((VOL_FEATURE,)) else TRADE_VOL_FEATURE
    if len(data) < 30:
        return None
    vol = data.columns((feature,))[:, 0]
    edges = np.quantile(vol, [1 / 3, 2 / 3])
    third = np.searchsorted(edges, vol, side="right")
    out: dict = {"feature": feature, "edges": [float(e) for e in edges]}
    for i, name in enumerate(REGIMES):
        idx = np.flatnonzero(third == i)
        part = data.take(idx)
        s = (
            summary(Scored("served", pred[idx], evaluate(part.y, pred[idx], part.mid, part.ts_ms, part.venue)))
            if len(idx)
            else None
        )
        out[name] = (
            {k: s[k] for k in ("n", "r2", "r2_ci95", "dm_pvalue", "direction_accuracy", "rmse_ratio_vs_persistence")}
            if s
            else None
        )
    return out


def regime_table(block: dict | None) -> list[str]:
    """``by_volatility_regime`` as a markdown table."""
    if block is None:
        return ["Too few rows to split by volatility."]
    edges = block["edges"]
    bounds = {"calm": f"< {edges[0]:.3g}", "middle": f"{edges[0]:.3g} .. {edges[1]:.3g}", "wild": f">= {edges[1]:.3g}"}
    lines = [
        f"Thirds of the rows by `{block['feature']}`; R²_OS, its interval and p against persistence within each.",
        "",
        "| regime | volatility | n | R²_OS | 95 % CI | p | direction | RMSE ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in REGIMES:
        s = block[name]
        if s is None:
            lines.append(f"| {name} | {bounds[name]} | 0 | | | | | |")
            continue
        direction = s["direction_accuracy"]
        lines.append(
            f"| {name} | {bounds[name]} | {s['n']} | {_fmt(s['r2'])} | {_ci(tuple(s['r2_ci95']))} | {_fmt(s['dm_pvalue'], 3)} | "
            f"{_fmt(direction * 100 if direction is not None else None, 1)} % | {_fmt(s['rmse_ratio_vs_persistence'])} |"
        )
    return lines


def summary(s: Scored, data: FeatureSet | None = None) -> dict:
    e = s.evaluation
    clean = lambda x: None if x is None or math.isnan(x) else round(x, 6)  # noqa: E731 (JSON has no NaN)
    ece = brier_score = brier_skill = None
    if data is not None and s.confidence is not None:
        mask, correct = hit_mask(data, s)
        ece = expected_calibration_error(s.confidence[mask], correct)
        brier_score, brier_skill = brier(s.confidence[mask], correct)
    everything = np.arange(len(s.pred))
    coverage = _share(s.interval_hit, everything) if s.interval_hit is not None else None
    served_coverage = _share(s.served_interval_hit, everything) if s.served_interval_hit is not None else None
    served_skill = brier_skill_on(data, s, s.served_confidence, everything) if data is not None else None
    return {
        "ece": clean(ece),
        "brier": clean(brier_score),
        "brier_skill": clean(brier_skill),
        "brier_skill_served": clean(served_skill),
        "interval_coverage": clean(coverage),
        "interval_coverage_served": clean(served_coverage),
        "interval_nominal": s.interval_coverage,
        "model_version": s.name,
        "n": e.n,
        "r2": clean(e.r2),
        "r2_ci95": [clean(e.r2_ci[0]), clean(e.r2_ci[1])],
        "rmse_ratio_vs_persistence": clean(e.rmse_ratio),
        "mae_ratio_vs_persistence": clean(e.mae_ratio),
        "direction_accuracy": clean(e.direction_accuracy),
        "direction_n": e.direction_n,
        "dm_stat": clean(e.dm_stat),
        "dm_pvalue": clean(e.dm_pvalue),
    }


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(int(ts_ms) / 1000, tz=timezone.utc).isoformat(timespec="seconds")


def _load_model(reference: str, settings: Settings) -> OnnxModel:
    from btcpred.adapters.artifact_store import load_any

    if Path(reference).is_dir():
        return OnnxModel(*load_any(reference))
    from btcpred.adapters.db.schema import engine_for
    from btcpred.adapters.lake import Lake

    return OnnxModel(*load_any(reference, Lake(settings.s3), engine_for(settings.postgres, "reporting")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score a model on data it never saw, beside persistence")
    parser.add_argument("--data", required=True, type=Path, help="directory of files in the shared/data formats")
    parser.add_argument("--model", required=True, help="registered model version, s3:// URI or local artifact directory")
    parser.add_argument("--baseline", action="append", default=[], help="another model to show beside it (e.g. the ridge)")
    parser.add_argument("--out", type=Path, default=None, help="default: <reports_dir>/latest")
    parser.add_argument(
        "--venue",
        help="venue to score ('all': every market in DIR, each in the per-market table; "
        "default: all for a model with a trusted input range, else the model's own)",
    )
    entry_point.add_config(parser)
    args = parser.parse_args(argv)
    entry_point.setup_logging()

    settings = load_settings(args.config)  # once: dev and prod resolve secrets from Secrets Manager
    out = entry_point.reports_dir(args.out, settings, "latest")
    model = _load_model(args.model, settings)
    data = unseen(from_directory(args.data), model)
    venue = args.venue or ("all" if model.meta.guard_low else model.meta.venue)
    if venue != "all":
        # an older model's inputs are in its venue's units (sizes, spreads): it is scored where it was trained
        skipped = {v: int(np.sum(data.venue == v)) for v in set(data.venue) if v != venue}
        if skipped:
            log.info("not scoring rows of other venues: %s (use --venue all to pool them)", skipped)
        data = data.take(np.flatnonzero(data.venue == venue))
    if len(data) == 0:
        log.error("no unseen full-quality rows in %s", args.data)
        print(json.dumps({"n": 0, "r2": None, "rmse_ratio_vs_persistence": None, "direction_accuracy": None, "dm_pvalue": None}))
        return 1
    others = [persistence(data)] + [score(_load_model(ref, settings), data) for ref in args.baseline]
    result = write_report(
        out,
        f"Accuracy report: {model.version}",
        data,
        score(model, data),
        others,
        [
            f"data: {args.data}",
            f"model: {model.version} ({model.meta.model_kind}), features: {', '.join(model.meta.feature_names)}",
        ],
    )
    log.info("report written to %s", out / "report.md")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
