"""Predicted against realised price over any archived period, drawn to a PNG with its score.

    python -m btcpred.batch.draw_predictions --from 2026-12-06T22:00 --to 2026-12-06T23:00 [--symbol BTCUSDT] [--out FILE]

Reads ``predictions`` (``btcpred.batch.prediction_archive``) as the reporting role. The realised
price at a data time is the features' mid the service started from then (``base_price``); each
prediction is drawn at the time it is for (``target_time_ms``) and scored against the realised
price there, beside persistence, with the project's test (``btcpred.common.forecast_skill``:
R²_OS, its 95 % interval and p over 5-minute blocks of data time). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from btcpred.adapters.db.schema import engine_for, predictions
from btcpred.common import entry_point
from btcpred.common.forecast_skill import skill_figures


def realised(rows: list[dict]) -> dict[int, float]:
    """Data time -> the price the service started from then (the first cycle on those features)."""
    out: dict[int, float] = {}
    for r in sorted(rows, key=lambda r: r["boundary_ms"]):
        if r["role"] == "champion" and r["source"] == "redis" and r["feature_time_ms"] is not None and r["base_price"]:
            out.setdefault(r["feature_time_ms"], r["base_price"])
    return out


def score(rows: list[dict], version_rows: list[dict] | None = None) -> dict:
    """The champion's (or ``version_rows``') predictions against the realised price at their target time."""
    prices = realised(rows)
    judged = version_rows if version_rows is not None else [r for r in rows if r["role"] == "champion" and r["source"] == "redis"]
    first: dict[int, dict] = {}
    for r in sorted(judged, key=lambda r: r["boundary_ms"]):
        if r["feature_time_ms"] is not None and r["predicted_price"] and r["base_price"]:
            first.setdefault(r["feature_time_ms"], r)
    times, y, pred = [], [], []
    for t, r in sorted(first.items()):
        later = prices.get(r["target_time_ms"])
        if later is None:
            continue
        times.append(t)
        y.append(math.log(later / r["base_price"]))
        pred.append(math.log(r["predicted_price"] / r["base_price"]))
    return skill_figures(np.array(times), np.array(y), np.array(pred))


def load(engine: sa.Engine, symbol: str, start_ms: int, end_ms: int, by: str = "feature_time_ms") -> list[dict]:
    """The rows whose ``by`` lies in [start_ms, end_ms]: data time (``feature_time_ms``, any period of the
    market), or the cycles' wall-clock boundary (``boundary_ms``: one run of a replay, whatever it replayed)."""
    t = predictions.c
    column = getattr(t, by)
    with engine.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(
                sa.select(predictions).where(t.symbol == symbol, column >= start_ms, column <= end_ms).order_by(t.boundary_ms)
            ).mappings()
        ]


def draw(rows: list[dict], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prices = sorted(realised(rows).items())
    fig, ax = plt.subplots(figsize=(11, 4.5))
    if prices:
        ax.plot(
            [datetime.fromtimestamp(t / 1000, timezone.utc) for t, _ in prices],
            [p for _, p in prices],
            color="#1d2330",
            lw=1.4,
            label="realised (features' mid)",
        )
    by_version: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if r["source"] == "redis" and r["predicted_price"] and r["target_time_ms"]:
            by_version.setdefault((r["role"], r["model_version"]), []).append(r)
    for (role, version), vrows in sorted(by_version.items()):
        vrows = sorted(vrows, key=lambda r: r["target_time_ms"])
        when = [datetime.fromtimestamp(r["target_time_ms"] / 1000, timezone.utc) for r in vrows]
        champion = role == "champion"
        ax.plot(
            when,
            [r["predicted_price"] for r in vrows],
            lw=1.2 if champion else 0.8,
            ls="-" if champion else "--",
            label=f"{version} ({role}, at +10 s)",
        )
        if champion and any(r["price_low"] for r in vrows):
            band = [r for r in vrows if r["price_low"] and r["price_high"]]
            ax.fill_between(
                [datetime.fromtimestamp(r["target_time_ms"] / 1000, timezone.utc) for r in band],
                [r["price_low"] for r in band],
                [r["price_high"] for r in band],
                alpha=0.12,
                lw=0,
            )
    ax.set(title=title, xlabel="data time (UTC)", ylabel="price")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--from", dest="start_us", type=entry_point.iso_time_us, required=True, help="data time, ISO 8601 (UTC without an offset)"
    )
    parser.add_argument("--to", dest="end_us", type=entry_point.iso_time_us, required=True)
    parser.add_argument("--symbol", default=None)
    parser.add_argument("--out", type=Path, default=Path(".local/reports/predictions.png"))
    entry_point.add_config(parser)
    args = parser.parse_args(argv)
    from btcpred.common.config import load_settings

    settings = load_settings(args.config)
    symbol = args.symbol or settings.exchange.symbol
    engine = engine_for(settings.postgres, "reporting")
    try:
        rows = load(engine, symbol, args.start_us // 1000, args.end_us // 1000)
    finally:
        engine.dispose()
    start, end = (
        datetime.fromtimestamp(us / 1e6, timezone.utc).isoformat(timespec="seconds") for us in (args.start_us, args.end_us)
    )
    result = {"symbol": symbol, "from": start, "to": end, "rows": len(rows), "champion": score(rows), "challengers": {}}
    for version in sorted({r["model_version"] for r in rows if r["role"] == "challenger"}):
        result["challengers"][version] = score(
            rows, [r for r in rows if r["model_version"] == version and r["role"] == "challenger"]
        )
    c = result["champion"]
    title = (
        f"{symbol}: predicted vs realised, {start} .. {end}; champion R²_OS {c.get('r2_os')} "
        f"(95 % {c.get('r2_os_ci')}), p {c.get('pvalue')}, n {c.get('n')}"
    )
    draw(rows, args.out, title)
    result["png"] = str(args.out)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
