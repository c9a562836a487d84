"""What the learning loop would have served, hour after hour, on data no model it chose had seen.

    python -m btcpred.batch.backtest --data DIR [--venue binance.us] [--window-hours H] [--out reports/backtest]
    python -m btcpred.batch.backtest --trades --data DIR --venue binance.com-coinm-trades [--placebo-hours 6]

``--trades`` reads a trades-only market (data.binance.vision aggTrades: the tape's features,
the last trade's price as the market's price, ``btcpred.batch.trade_rows``); ``--placebo-hours``
moves every label that many hours on, so the same loop runs on noise and must promote (almost) nothing.

At each whole hour H of the data (once the rows before it can be split into train, validation
and test hours), the loop runs as ``btcpred.batch.retrain`` runs it at H, on the rows before H only:
every candidate is fitted on the train part and tuned on the validation part, one of them or
persistence is picked by validation loss, and the gate (``btcpred.batch.gate``) promotes the pick only if
it beats the model in service and persistence on the newest unseen part (the block bootstrap test
of ``btcpred.common.forecast_skill``, p < 0.05). The model in service after that decision answers
hour H, with the input guard serving applies (persistence answers a row outside the model's trusted
range). Before the first decision, and whenever the gate kept it, persistence answers.

The answers of every hour are then scored together against the realised mid 10 s later, beside
persistence: a test that spans every hour after the first decision, each answer from a model
fitted and chosen strictly before its data (the 10 s purge and 5 s embargo of ``btcpred.batch.splits``
included), in time order. No registry, no feature store, no artifact is written: it reads the
recordings under DIR through the same feature code and replays the loop's decisions in memory.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from btcpred.batch import trade_rows
from btcpred.batch.datasets import FeatureSet, from_directory
from btcpred.batch.gate import PERSISTENCE, decide
from btcpred.batch.metrics import evaluate
from btcpred.batch.modeling import FLOW_FEATURES, IMBALANCE_FEATURES, RIDGE_GRID, input_guard, predict_return
from btcpred.batch.report import Scored, by_volatility_regime, replay_as_served, summary
from btcpred.batch.selection import pick_on_validation
from btcpred.batch.splits import HOUR_MS, hour_boundaries, purged_split
from btcpred.batch.train import INTERVAL_COVERAGE, MIN_ROWS, Candidate, candidates_for, refit, search, validation_interval
from btcpred.common import entry_point
from btcpred.common.config import load_settings
from btcpred.common.forecast_skill import loss_test, time_blocks
from btcpred.common.model_artifact import InputGuard, PredictionInterval
from btcpred.common.progress import Progress
from btcpred.udfs.trade_features import TRADE_FEATURE_NAMES

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Served:
    """The model in service: fitted before ``since_ms`` (None model: persistence)."""

    version: str
    kind: str
    candidate: Candidate | None
    guard: InputGuard | None
    fitted_until_ms: int  # the newest row its fit, tuning or gate read
    interval: PredictionInterval | None = None  # sized on the validation rows, as btcpred.batch.train sizes it

    def interval_hits(self, data: FeatureSet, pred: np.ndarray) -> np.ndarray | None:
        """Per row, whether the realized return fell inside the interval the artifact states."""
        if self.interval is None or self.candidate is None:
            return None
        inside = self.guard.trusted_rows(data.columns(self.candidate.features))
        return self.interval.hits(data.y, pred, data.columns((self.interval.scale_feature,))[:, 0], inside)

    def served_interval_hits(self, data: FeatureSet, pred: np.ndarray) -> np.ndarray | None:
        """The same, for the interval serving states: recalibrated on this model's realized rows as it serves
        (a window per served model, as the service starts one when its champion changes)."""
        if self.interval is None or self.candidate is None:
            return None
        inside = self.guard.trusted_rows(data.columns(self.candidate.features))
        hits, _ = replay_as_served(self.interval, data, pred, inside)
        return hits

    def predict(self, data: FeatureSet) -> np.ndarray:
        """Its answers as serving gives them: a row outside the trusted range gets persistence's."""
        if self.candidate is None or len(data) == 0:
            return np.zeros(len(data))
        X = data.columns(self.candidate.features)
        return np.where(self.guard.trusted_rows(X), predict_return(self.candidate.model, X), 0.0)


PERSISTENCE_SERVED = Served(PERSISTENCE, PERSISTENCE, None, None, 0)


@dataclass(frozen=True, slots=True)
class HourStep:
    hour_ms: int
    decision: str  # what the loop decided at the start of the hour
    served: Served  # what answered the hour
    n: int  # rows of the hour scored


def loop_decision(history: FeatureSet, serving: Served, hour_ms: int, candidates: tuple | None = None) -> tuple[Served, str]:
    """The retraining cycle at ``hour_ms`` on ``history`` (rows before it): who serves the hour, and why."""
    data, available = candidates_for(history)
    candidates = available if candidates is None else candidates
    if len(data) < MIN_ROWS:
        return serving, f"not enough data ({len(data)} rows)"
    try:
        val_start, test_start = hour_boundaries(data.ts_ms)
    except ValueError as exc:
        return serving, f"not enough whole hours ({exc})"
    split = purged_split(data.ts_ms, val_start, test_start)
    if min(len(split.train), len(split.val), len(split.test)) == 0:
        return serving, "an empty train, validation or test part"
    stamp = datetime.fromtimestamp(hour_ms / 1000, timezone.utc).strftime("%Y%m%dT%H")
    fitted = {kind: search(kind, features, grid, data, split, None, stamp, {}) for kind, features, grid in candidates}
    chosen_on_validation = pick_on_validation(fitted, data.take(split.val))
    pick = chosen_on_validation.kind
    test = data.take(split.test)
    champion = (serving.version, serving.predict(test)) if serving is not PERSISTENCE_SERVED else None
    until = int(data.ts_ms.max())
    if pick == PERSISTENCE:
        challenger = Served(f"{PERSISTENCE}@{stamp}", PERSISTENCE, None, None, until)
        verdict = decide(
            challenger.version,
            np.zeros(len(test)),
            test.y,
            test.mid,
            test.ts_ms,
            champion,
            challenger_is_persistence=True,
            segment=test.venue,
        )
    else:
        c = fitted[pick]
        low, high = input_guard(data.take(split.train).columns(c.features))
        challenger = Served(f"{pick}@{stamp}", pick, c, InputGuard.of_range(c.features, low, high), until)
        verdict = decide(challenger.version, challenger.predict(test), test.y, test.mid, test.ts_ms, champion, segment=test.venue)
    why = f"picked {pick} on validation{f' ({chosen_on_validation.reason})' if chosen_on_validation.reason else ''}; "
    why += f"{'promoted' if verdict.promote else 'kept ' + serving.version}: {verdict.reason}"
    chosen = challenger if verdict.promote else serving
    if chosen.candidate is None:
        return PERSISTENCE_SERVED, why
    if chosen is serving and serving.kind in fitted:  # the kept specification, its hyperparameters tuned again
        chosen = Served(serving.version, serving.kind, fitted[serving.kind], None, 0)
    return refitted(chosen, data, split, stamp), why + "; refitted on every row before the hour"


def refitted(served: Served, data: FeatureSet, split, stamp: str) -> Served:
    """The served specification (features, hyperparameters) fitted again on every row up to the hour, as
    ``btcpred.batch.train`` does before serving: the gate's evidence is for the specification."""
    c = served.candidate
    again, rows = refit(c, data, split)
    low, high = input_guard(data.take(rows).columns(c.features))
    val = data.take(split.val)
    interval = validation_interval(val, predict_return(c.model, val.columns(c.features)))  # the gated fit's errors
    return Served(
        f"{served.kind}@{stamp}",
        served.kind,
        again,
        InputGuard.of_range(c.features, low, high),
        int(data.ts_ms[rows].max()),
        interval,
    )


IMBALANCE_RIDGE = ("ridge_imbalance", IMBALANCE_FEATURES, RIDGE_GRID)
FLOW_RIDGE = ("ridge_flow", FLOW_FEATURES, RIDGE_GRID)


def baseline_candidate(data: FeatureSet) -> tuple:
    """The simplest model the loop must beat: the one-feature ridge on the top-of-book imbalance, or on
    a trades-only market the 5 s signed trade flow."""
    return FLOW_RIDGE if data.names == TRADE_FEATURE_NAMES else IMBALANCE_RIDGE


def fitted_without_gate(history: FeatureSet, hour_ms: int, candidate: tuple = IMBALANCE_RIDGE) -> Served:
    """``candidate`` fitted and tuned on ``history`` as the loop would at ``hour_ms``, and served with no
    gate at all (persistence while the history is too short to split): the bar the loop must clear."""
    data, _ = candidates_for(history)
    if len(data) < MIN_ROWS:
        return PERSISTENCE_SERVED
    try:
        split = purged_split(data.ts_ms, *hour_boundaries(data.ts_ms))
    except ValueError:
        return PERSISTENCE_SERVED
    if min(len(split.train), len(split.val), len(split.test)) == 0:
        return PERSISTENCE_SERVED
    kind, features, grid = candidate
    c = search(kind, features, grid, data, split, None, "", {})  # tuned on validation, as the loop tunes
    return refitted(Served(kind, kind, c, None, 0), data, split, str(hour_ms))  # and refitted, as the loop serves


def baseline_predictions(data: FeatureSet, steps: list[HourStep]) -> np.ndarray:
    """The one-feature ridge's answers on the rows ``served_predictions`` returns, in the same order
    (refitted every hour on the rows before it, served without a gate)."""
    preds = []
    for step in steps:
        idx = hour_rows(data, step.hour_ms)
        served = fitted_without_gate(data.take(np.flatnonzero(data.ts_ms < step.hour_ms)), step.hour_ms, baseline_candidate(data))
        preds.append(served.predict(data.take(idx)))
    return np.concatenate(preds) if preds else np.array([])


def backtest(data: FeatureSet, window_hours: float | None = None, candidates: tuple | None = None) -> list[HourStep]:
    """The loop over every whole hour of ``data`` (one venue), oldest first."""
    order = np.argsort(data.ts_ms, kind="stable")
    data = data.take(order)
    hours = np.unique(data.ts_ms // HOUR_MS * HOUR_MS)
    serving = PERSISTENCE_SERVED
    steps: list[HourStep] = []
    progress = Progress("backtest hours", len(hours) - 1, log)
    for hour in hours[1:]:
        hour = int(hour)
        before = data.ts_ms < hour
        if window_hours is not None:
            before &= data.ts_ms >= hour - window_hours * HOUR_MS
        serving, why = loop_decision(data.take(np.flatnonzero(before)), serving, hour, candidates)
        assert serving.fitted_until_ms < hour, "a model answered data it was chosen on"
        in_hour = np.flatnonzero((data.ts_ms >= hour) & (data.ts_ms < hour + HOUR_MS))
        steps.append(HourStep(hour, why, serving, len(in_hour)))
        log.debug("%s: %s serves %d rows (%s)", _iso(hour), serving.version, len(in_hour), why)
        progress.step(f"{_iso(hour)}: {serving.version} serves {len(in_hour)} rows")
    return steps


def hour_rows(data: FeatureSet, hour_ms: int) -> np.ndarray:
    """The rows of the hour starting at ``hour_ms``, in time order."""
    idx = np.flatnonzero((data.ts_ms >= hour_ms) & (data.ts_ms < hour_ms + HOUR_MS))
    return idx[np.argsort(data.ts_ms[idx], kind="stable")]


def served_predictions(data: FeatureSet, steps: list[HourStep]) -> tuple[FeatureSet, np.ndarray]:
    """The rows of the backtest's hours and what answered each, in time order."""
    rows, preds = [], []
    for step in steps:
        idx = hour_rows(data, step.hour_ms)
        rows.append(idx)
        preds.append(step.served.predict(data.take(idx)))
    idx = np.concatenate(rows) if rows else np.array([], dtype=int)
    return data.take(idx), (np.concatenate(preds) if preds else np.array([]))


def _hour(data: FeatureSet, step: HourStep) -> tuple[FeatureSet, np.ndarray]:
    hour = data.take(hour_rows(data, step.hour_ms))
    return hour, step.served.predict(hour)


def report(data: FeatureSet, steps: list[HourStep], out: Path) -> dict:
    scored, pred = served_predictions(data, steps)
    first_model = next((i for i, s in enumerate(steps) if s.served.candidate is not None), None)
    baseline = baseline_predictions(data, steps)
    hits = [h for h in (step.served.interval_hits(*_hour(data, step)) for step in steps) if h is not None]
    served_hits = [h for h in (step.served.served_interval_hits(*_hour(data, step)) for step in steps) if h is not None]
    versus = loss_test(np.square(scored.y - pred) - np.square(scored.y - baseline), time_blocks(scored.ts_ms, scored.venue))
    gated = [s for s in steps if "promoted" in s.decision or "kept" in s.decision]
    result = {
        "hours": len(steps),
        "n": len(scored),
        "served": summary_of(scored, pred),
        "baseline": baseline_candidate(data)[0],
        "baseline_ridge_without_gate": summary_of(scored, baseline),
        "gate_decisions": {"n": len(gated), "models_promoted": sum(promoted_a_model(s) for s in gated)},
        "by_volatility_regime": by_volatility_regime(scored, pred),
        "interval_coverage_where_a_model_served": (
            {
                "coverage": float(np.mean(np.concatenate(hits))),
                "n": int(sum(len(h) for h in hits)),
                "nominal": INTERVAL_COVERAGE,
                "as_served_recalibrated": float(np.mean(np.concatenate(served_hits))),
            }
            if hits
            else None
        ),
        "served_vs_baseline_ridge": {
            "mean_loss_diff": versus.mean_diff,
            "ci95": list(versus.ci),
            "pvalue": versus.pvalue,
            "blocks": versus.blocks,
        },
        "since_first_model": (summary_of(*served_predictions(data, steps[first_model:])) if first_model is not None else None),
        "decisions": [{"hour": _iso(s.hour_ms), "served": s.served.version, "n": s.n, "why": s.decision} for s in steps],
    }
    lines = [
        "# Walk-forward backtest of the learning loop",
        "",
        "Each hour answered by the model the loop had in service at its start, chosen on earlier rows only.",
        "",
        "| hour (UTC) | rows | served by | decision at the hour's start |",
        "|---|---|---|---|",
    ]
    lines += [f"| {_iso(s.hour_ms)} | {s.n} | {s.served.version} | {s.decision} |" for s in steps]
    for title, block in (
        ("All backtest hours", result["served"]),
        ("From the first model served", result["since_first_model"]),
        (
            f"The one-feature ridge ({result['baseline']}), refitted every hour and served without a gate",
            result["baseline_ridge_without_gate"],
        ),
        ("Gate decisions (hours where the gate judged a pick)", result["gate_decisions"]),
        (
            "By volatility regime (terciles of the interval's volatility feature over the scored rows)",
            result["by_volatility_regime"],
        ),
        ("Interval coverage where a model served", result["interval_coverage_where_a_model_served"]),
        (
            "What the loop served minus the one-feature ridge (squared log-return error; negative: the loop better)",
            result["served_vs_baseline_ridge"],
        ),
    ):
        if block:
            lines += ["", f"## {title}", "", "```", json.dumps(block, indent=1), "```"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return result


def promoted_a_model(step: HourStep) -> bool:
    """The gate put a model (not persistence) in service at this hour."""
    return "promoted" in step.decision and not step.decision.startswith(f"picked {PERSISTENCE} ")


def placebo(data: FeatureSet, hours: float) -> FeatureSet:
    """The same rows with every label moved ``hours`` on (circularly, within each market): a loop that
    promotes on these promotes on noise."""
    y = data.y.copy()
    for venue in dict.fromkeys(data.venue):
        idx = np.flatnonzero(data.venue == venue)
        idx = idx[np.argsort(data.ts_ms[idx], kind="stable")]
        step = float(np.median(np.diff(data.ts_ms[idx]))) if len(idx) > 1 else 1.0
        y[idx] = np.roll(data.y[idx], int(round(hours * HOUR_MS / step)))
    return FeatureSet(data.venue, data.ts_ms, data.X, y, data.mid, data.names)


def summary_of(data: FeatureSet, pred: np.ndarray) -> dict | None:
    if len(data) == 0:
        return None
    return summary(Scored("served", pred, evaluate(data.y, pred, data.mid, data.ts_ms, data.venue)))


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Replay the learning loop hour by hour and score what it served")
    parser.add_argument("--data", required=True, type=Path, help="directory of recordings (the shared/data formats)")
    parser.add_argument("--venue", default="binance.us")
    parser.add_argument("--window-hours", type=float, default=None, help="train on the newest H hours only (default: all before)")
    parser.add_argument("--out", type=Path, default=None, help="default: <reports_dir>/backtest")
    parser.add_argument(
        "--trades",
        action="store_true",
        help="a trades-only market: the data.binance.vision aggTrades files under DIR (venue e.g. binance.com-coinm-trades)",
    )
    parser.add_argument(
        "--placebo-hours", type=float, default=None, help="move every label this many hours on (circularly): the loop on noise"
    )
    entry_point.add_config(parser)
    args = parser.parse_args(argv)
    entry_point.setup_logging()
    data = trade_rows.from_directory(args.data) if args.trades else from_directory(args.data)
    data = data.take(np.flatnonzero(data.venue == args.venue))
    if args.placebo_hours:
        data = placebo(data, args.placebo_hours)
    if len(data) == 0:
        log.error("no full-quality rows of %s in %s", args.venue, args.data)
        return 1
    out = entry_point.reports_dir(args.out, load_settings(args.config), "backtest")
    result = report(data, backtest(data, args.window_hours), out)
    log.info("report written to %s", out / "report.md")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
