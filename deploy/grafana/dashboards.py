"""Grafana dashboards as code (grafanalib): hot path, reliability, business.

    python -m deploy.grafana.dashboards            # writes deploy/grafana/dashboards/*.json
    python -m deploy.grafana.dashboards --check    # exits 1 if the committed JSON is stale

docker-compose provisions the JSON files (deploy/grafana/provisioning/dashboards).
tests/e2e/test_observability.py checks that every series a panel queries exists in a
live stack's Prometheus, so no panel points at a metric nobody exports.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafanalib._gen import DashboardEncoder
from grafanalib.core import Dashboard, GridPos, RowPanel, Stat, Target, Template, Templating, Threshold, TimeSeries

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # provisioning/datasources/prometheus.yml
FLINK_JOB = 'job_name=~"$flink_job"'


def q(expr: str, legend: str = "") -> Target:
    return Target(expr=expr, legendFormat=legend, datasource=DATASOURCE)


def quantiles(metric: str, by: str = "", window: str = "1m") -> list[Target]:
    group = f"le{', ' + by if by else ''}"
    label = f" {{{{{by}}}}}" if by else ""
    return [
        q(f"histogram_quantile({p}, sum by ({group}) (rate({metric}_bucket[{window}])))", f"p{int(p * 100)}{label}")
        for p in (0.5, 0.95, 0.99)
    ]


class Layout:
    """Places panels left to right, two per row, 12 wide; a row header starts a new line."""

    def __init__(self) -> None:
        self.panels: list = []
        self.x = self.y = 0

    def row(self, title: str) -> None:
        if self.x:
            self.x, self.y = 0, self.y + 8
        self.panels.append(RowPanel(title=title, gridPos=GridPos(h=1, w=24, x=0, y=self.y)))
        self.y += 1

    def add(self, panel_type, title: str, targets: list[Target], unit: str = "", width: int = 12, **kw) -> None:
        if self.x + width > 24:
            self.x, self.y = 0, self.y + 8
        unit_field = {"format": unit} if panel_type is Stat else {"unit": unit}  # grafanalib names it per panel type
        self.panels.append(
            panel_type(
                title=title,
                targets=targets,
                dataSource=DATASOURCE,
                gridPos=GridPos(h=8, w=width, x=self.x, y=self.y),
                **unit_field,
                **kw,
            )
        )
        self.x += width


def dashboard(uid: str, title: str, layout: Layout, flink: bool = False) -> Dashboard:
    templating = (
        Templating(
            list=[
                Template(
                    name="flink_job",
                    label="Flink job",
                    dataSource="prometheus",
                    query="label_values(flink_jobmanager_job_uptime, job_name)",
                    includeAll=True,
                    multi=True,
                    default="All",
                )
            ]
        )
        if flink
        else Templating()
    )
    return Dashboard(
        uid=uid, title=title, tags=["btcpred"], panels=layout.panels, refresh="10s", timezone="utc", templating=templating
    ).auto_panel_ids()


def hot_path() -> Dashboard:
    d = Layout()
    d.row("Inference latency and cadence")
    d.add(
        TimeSeries,
        "Boundary to published prediction (P50/P95/P99)",
        quantiles("inference_cycle_latency_seconds"),
        "s",
        thresholds=[Threshold("green", 0, 0.0), Threshold("red", 1, 0.1)],
    )
    d.add(TimeSeries, "HTTP request latency by route", quantiles("inference_http_request_duration_seconds", by="route"), "s")
    d.add(TimeSeries, "Wake-up delay after the 2 s boundary", quantiles("inference_cadence_jitter_seconds"), "s")
    d.add(
        TimeSeries,
        "Predictions per second by source, missed cycles",
        [
            q("sum by (source) (rate(inference_predictions_total[1m]))", "{{source}}"),
            q("increase(inference_missed_cycles_total[1m])", "missed / min"),
        ],
        "ops",
    )
    d.row("Freshness and Redis")
    d.add(
        TimeSeries,
        "Feature age at prediction time",
        [q("inference_feature_age_seconds", "age")],
        "s",
        thresholds=[Threshold("green", 0, 0.0), Threshold("orange", 1, 2.0), Threshold("red", 2, 5.0)],
    )
    d.add(
        TimeSeries,
        "Job: boundary event time to feature write (incl. replay offset)",
        [q(f"max by (job_name) (flink_taskmanager_job_task_operator_featureEmitLagMs{{{FLINK_JOB}}}) / 1000", "{{job_name}}")],
        "s",
    )
    d.add(
        Stat,
        "Redis hit rate (cycles served from fresh hot state)",
        [q('sum(rate(inference_predictions_total{source="redis"}[5m])) / sum(rate(inference_predictions_total[5m]))')],
        "percentunit",
        width=6,
    )
    d.add(
        TimeSeries,
        "Redis read failures and fallbacks by reason",
        [
            q("rate(inference_cycle_errors_total[1m])", "read failures"),
            q("sum by (reason) (rate(inference_fallback_total[1m]))", "{{reason}}"),
        ],
        "ops",
        width=6,
    )
    d.add(
        TimeSeries,
        "Job: Redis write latency (per batch)",
        [q(f"max by (quantile) (flink_taskmanager_job_task_operator_redisWriteLatencyUs{{{FLINK_JOB}}}) / 1e6", "q{{quantile}}")],
        "s",
    )
    d.row("Stream health")
    d.add(
        TimeSeries,
        "Frames from the exchange by template",
        [q("sum by (template) (rate(ingest_frames_received_total[1m]))", "{{template}}")],
        "ops",
    )
    d.add(
        TimeSeries,
        "Events into the job by type",
        [
            q(
                f"sum by (eventType) (rate(flink_taskmanager_job_task_operator_eventType_eventsIn{{{FLINK_JOB}}}[1m]))",
                "{{eventType}}",
            )
        ],
        "ops",
    )
    d.add(
        TimeSeries,
        "Kinesis: job and archiver behind the tip",
        [
            q(
                f"max by (shardId) (flink_taskmanager_job_task_operator_KinesisConsumer_stream_shardId_millisBehindLatest{{{FLINK_JOB}}})",
                "job {{shardId}}",
            ),
            q("max by (shard) (sbe_archiver_millis_behind_latest)", "archiver {{shard}}"),
        ],
        "ms",
    )
    d.add(
        TimeSeries,
        "Ingestor: records put, queue, retries, dead-lettered",
        [
            q("rate(ingest_kinesis_records_put_total[1m])", "put/s"),
            q("ingest_queue_depth", "queued"),
            q("sum(rate(ingest_kinesis_records_retried_total[1m]))", "retried/s"),
            q("rate(ingest_kinesis_records_failed_total[1m])", "dead-lettered/s"),
            q("sum by (reason) (increase(ingest_ws_reconnects_total[5m]))", "reconnects {{reason}}"),
        ],
        "short",
    )
    d.add(
        TimeSeries,
        "Flink back-pressure by task",
        [q(f"max by (task_name) (flink_taskmanager_job_task_backPressuredTimeMsPerSecond{{{FLINK_JOB}}})", "{{task_name}}")],
        "ms",
    )
    return dashboard("btcpred-hot-path", "BTCUSDT predictor: hot path", d, flink=True)


def reliability() -> Dashboard:
    d = Layout()
    d.row("Sequence gaps and bad input")
    d.add(
        TimeSeries,
        "Gaps, late events, dead letters per minute",
        [
            q(f"sum(rate(flink_taskmanager_job_task_operator_sequenceGaps{{{FLINK_JOB}}}[5m])) * 60", "gaps"),
            q(f"sum(rate(flink_taskmanager_job_task_operator_lateEvents{{{FLINK_JOB}}}[5m])) * 60", "late events"),
            q(f"sum(rate(flink_taskmanager_job_task_operator_deadLetters{{{FLINK_JOB}}}[5m])) * 60", "dead letters"),
            q("sum by (kind) (rate(ingest_frames_invalid_total[5m])) * 60", "ingestor invalid {{kind}}"),
        ],
        "short",
    )
    d.add(
        TimeSeries,
        "Book: levels, stale diffs, drift at the last check",
        [
            q(f"max(flink_taskmanager_job_task_operator_bookLevels{{{FLINK_JOB}}})", "levels"),
            q(f"max(flink_taskmanager_job_task_operator_staleDiffs{{{FLINK_JOB}}})", "stale diffs"),
            q(f"max(flink_taskmanager_job_task_operator_bookDriftLevels{{{FLINK_JOB}}})", "drifted levels"),
        ],
        "short",
    )
    d.row("Re-anchors")
    d.add(
        TimeSeries,
        "Re-anchors by reason and outcome",
        [q("sum by (reason, outcome) (increase(reanchors_total[10m]))", "{{reason}} {{outcome}}")],
        "short",
    )
    d.add(TimeSeries, "Re-anchor duration (lock to valid book)", quantiles("reanchor_duration_seconds", window="10m"), "s")
    d.add(
        TimeSeries,
        "Re-anchor in progress, gap records consumed",
        [
            q("max by (symbol) (reanchor_in_progress)", "in progress {{symbol}}"),
            q("sum by (handling) (increase(reanchor_gaps_read_total[10m]))", "gaps {{handling}}"),
            q("sum by (result) (increase(ingest_snapshots_injected_total[10m]))", "snapshots in band {{result}}"),
        ],
        "short",
    )
    d.add(
        TimeSeries,
        "Binance REST calls by outcome",
        [q("sum by (endpoint, outcome) (rate(rest_requests_total[5m])) * 60", "{{endpoint}} {{outcome}}")],
        "short",
    )
    d.row("REST poller and archive")
    d.add(
        TimeSeries,
        "Poller: polls by outcome, rows archived",
        [
            q("sum by (data_type, outcome) (increase(rest_poller_polls_total[5m]))", "polls {{data_type}} {{outcome}}"),
            q("sum by (data_type) (increase(rest_poller_rows_total[5m]))", "rows {{data_type}}"),
        ],
        "short",
    )
    d.add(
        TimeSeries,
        "Poller: time since the last archived poll",
        [q("time() - rest_poller_last_success_timestamp_seconds", "{{data_type}}")],
        "s",
        thresholds=[Threshold("green", 0, 0.0), Threshold("red", 1, 180.0)],
    )
    d.add(
        TimeSeries,
        "Archiver: frames and objects written, read errors",
        [
            q("sum by (kind) (rate(sbe_archiver_frames_total[1m]))", "frames {{kind}}"),
            q("rate(sbe_archiver_objects_total[5m]) * 60", "objects / min"),
            q("rate(sbe_archiver_read_errors_total[5m]) * 60", "read errors / min"),
        ],
        "short",
    )
    d.add(
        TimeSeries,
        "Archiver: time since it was at the stream's tip",
        [q("time() - sbe_archiver_caught_up_timestamp_seconds", "{{shard}}")],
        "s",
        thresholds=[Threshold("green", 0, 0.0), Threshold("red", 1, 300.0)],
    )
    d.row("Flink job")
    d.add(
        TimeSeries,
        "Checkpoints: failed, restarts, last duration",
        [
            q(f"increase(flink_jobmanager_job_numberOfFailedCheckpoints{{{FLINK_JOB}}}[10m])", "failed {{job_name}}"),
            q(f"increase(flink_jobmanager_job_numRestarts{{{FLINK_JOB}}}[10m])", "restarts {{job_name}}"),
            q(f"flink_jobmanager_job_lastCheckpointDuration{{{FLINK_JOB}}} / 1000", "last duration s {{job_name}}"),
        ],
        "short",
    )
    d.add(TimeSeries, "Scrape targets up", [q("up", "{{job}} {{instance}}")], "short")
    return dashboard("btcpred-reliability", "BTCUSDT predictor: reliability", d, flink=True)


def business() -> Dashboard:
    d = Layout()
    d.row("Online accuracy, data-time scored at 10 s (rolling 1000 predictions)")
    d.add(TimeSeries, "MAE: model vs persistence", [q('inference_online_accuracy{measure="mae"}', "{{model}}")], "currencyUSD")
    d.add(TimeSeries, "RMSE: model vs persistence", [q('inference_online_accuracy{measure="rmse"}', "{{model}}")], "currencyUSD")
    d.add(
        Stat,
        "Model MAE / persistence MAE (< 1: the model beats persistence)",
        [
            q(
                'inference_online_accuracy{model="model", measure="mae"} / ignoring(model) inference_online_accuracy{model="persistence", measure="mae"}'
            )
        ],
        "none",
        width=6,
    )
    d.add(
        Stat,
        "Directional accuracy (non-zero moves)",
        [q('inference_online_accuracy{measure="directional_accuracy"}')],
        "percentunit",
        width=6,
    )
    d.row("Calibration and serving mix")
    d.add(
        TimeSeries,
        "Calibration: bias (USD) and slope of realized on predicted move (1 = calibrated)",
        [
            q('inference_online_accuracy{measure="bias"}', "bias"),
            q('inference_online_accuracy{measure="calibration_slope"}', "slope"),
        ],
        "short",
    )
    d.add(
        TimeSeries,
        "Share of cycles on the fallback, by reason",
        [
            q(
                "sum by (reason) (rate(inference_fallback_total[5m])) / scalar(sum(rate(inference_predictions_total[5m])))",
                "{{reason}}",
            )
        ],
        "percentunit",
    )
    d.add(
        TimeSeries,
        "Model loads by outcome (a refused artifact keeps the serving model)",
        [q("sum by (outcome) (increase(inference_model_loads_total[1h]))", "{{outcome}}")],
        "short",
    )
    return dashboard("btcpred-business", "BTCUSDT predictor: business", d)


DASHBOARDS = {"hot-path": hot_path, "reliability": reliability, "business": business}


def render(build) -> str:
    return json.dumps(build().to_json_data(), cls=DashboardEncoder, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON differs from the code")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path = OUT / f"{name}.json"
        text = render(build)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            OUT.mkdir(exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"stale: {', '.join(stale)}; run python -m deploy.grafana.dashboards", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
