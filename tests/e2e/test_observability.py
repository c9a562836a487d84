"""Three minutes of the live pipeline: Prometheus scrapes every process, every series an alert rule
or a dashboard panel reads exists (no panel points at a metric nobody exports), and a healthy run
fires no alert at all (a fresh demo run used to send FlinkCheckpointFailures and RetrainStale)."""

import json
import re
import subprocess
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest

from btcpred.flink_jobs.state_storage import flink_home
from deploy import observability, services
from rig.pipeline import Pipeline

pytestmark = pytest.mark.e2e

SERVICES = set(services.scrape_jobs()) - {services.FLINK_SCRAPE_JOB}
HEALTHY_RUN_S = 180  # past the job's first checkpoints and every rule's ``for``


def caused_before(base: str, expr: str, started: float) -> bool:
    """Whether the rule's expression holds only thanks to samples from before ``started``: its range
    windows cut to this run alone, it no longer returns anything. The ports are fixed, so a process of
    an earlier test (the fault suite's failed re-anchors) and this run's share their series, and an
    ``increase(...[10m])`` that reaches back over both fires again once the new process appears."""
    elapsed = max(1, int(time.time() - started))
    own = re.sub(
        r"\[(\d+)([smh])\]", lambda m: f"[{min(elapsed, int(m.group(1)) * {'s': 1, 'm': 60, 'h': 3600}[m.group(2)])}s]", expr
    )
    return own != expr and not observability.prometheus_get(base, "/api/v1/query", query=own)["result"]


def alerts_since(settings, started: float) -> list[str]:
    """Alerts Prometheus holds firing, or the sink received, that became active after ``started`` and
    that this run's own samples raise."""
    base = f"http://127.0.0.1:{settings.prometheus.port}"
    since = datetime.fromtimestamp(started, timezone.utc)
    exprs = {
        r["name"]: r["query"]
        for g in observability.prometheus_get(base, "/api/v1/rules")["groups"]
        for r in g["rules"]
        if r["type"] == "alerting"
    }
    earlier = {name for name, expr in exprs.items() if caused_before(base, expr, started)}
    firing = [
        f"{a['labels']['alertname']} (Prometheus): {a['annotations'].get('summary')}"
        for a in observability.prometheus_get(base, "/api/v1/alerts")["alerts"]
        if a["state"] == "firing"
        and datetime.fromisoformat(a["activeAt"].replace("Z", "+00:00")) >= since
        and a["labels"]["alertname"] not in earlier
    ]
    with urllib.request.urlopen(f"http://127.0.0.1:{settings.prometheus.alert_sink_port}/alerts", timeout=5) as resp:
        received = json.loads(resp.read())
    firing += [
        f"{a['labels'].get('alertname')} (sink): {a['annotations'].get('summary')}"
        for a in received
        if a["startsAt"]
        and datetime.fromisoformat(a["startsAt"].replace("Z", "+00:00")) >= since
        and a["labels"].get("alertname") not in earlier
    ]
    return firing


def test_every_series_used_by_alerts_and_dashboards_is_exported(local_stack, redis_client, tmp_path):
    base = f"http://127.0.0.1:{local_stack.prometheus.port}"
    used = observability.series_used()
    assert len(used) > 40 and "inference_cycle_latency_seconds_bucket" in used  # the extraction itself works
    # the retraining loop runs as the demo runs it; its first cycle is an hour away, its metrics are not
    # laps=0: the capture replayed lap after lap, so the exchange never falls silent (that would alert, rightly)
    pipeline = Pipeline(speed=3.0, laps=0, mini_cluster=True, log_dir=tmp_path, retrain_every_s=3600.0)
    run_started = time.time()
    try:
        pipeline.start(wait_for_job=True)
        deadline = time.monotonic() + 90
        missing, up = sorted(used), set()
        while time.monotonic() < deadline and (missing or not SERVICES <= up):
            time.sleep(5)
            pipeline.check_alive()
            targets = observability.prometheus_get(base, "/api/v1/targets")["activeTargets"]
            up = {t["labels"]["job"] for t in targets if t["health"] == "up"}
            missing = observability.missing_series(base, sorted(used))
        assert set(services.scrape_jobs()) <= up, f"targets not up: {sorted(set(services.scrape_jobs()) - up)}"
        assert missing == [], {name: sorted(used[name]) for name in missing}
        # the job's own metrics carry its name: the dashboards' job filter finds them
        # (series of this run only: Prometheus keeps those of earlier jobs, e.g. the savepoint test's v2)
        gaps = observability.prometheus_get(
            base, "/api/v1/series", start=str(run_started), **{"match[]": "flink_taskmanager_job_task_operator_sequenceGaps"}
        )
        assert {s["job_name"] for s in gaps} == {"btcusdt_hot_path"}  # the reporter turns "-" into "_"
        # Prometheus loaded the alert rules it evaluates
        rules = observability.prometheus_get(base, "/api/v1/rules")["groups"]
        alerts = {r["name"] for g in rules for r in g["rules"] if r["type"] == "alerting"}
        assert {"InferenceMissedCycle", "FeatureAgeDegraded", "KinesisIteratorAgeHigh", "FlinkCheckpointFailures"} <= alerts
        while time.time() < run_started + HEALTHY_RUN_S:
            time.sleep(5)
            pipeline.check_alive()
        fired = alerts_since(local_stack, run_started)
        assert fired == [], "\n".join(fired)
    finally:
        pipeline.stop()
    assert_no_secret_leaked(local_stack, [tmp_path])


REPO = Path(__file__).resolve().parents[2]


def configured_secrets(settings) -> dict[str, str]:
    found = {
        "redis.password": settings.redis.password.get_secret_value(),
        "postgres.password": settings.postgres.password.get_secret_value(),
    }
    found |= {f"redis.users.{r}": pw.get_secret_value() for r, pw in settings.redis.users.items()}
    found |= {f"postgres.roles.{r}": pw.get_secret_value() for r, pw in settings.postgres.roles.items()}
    return {k: v for k, v in found.items() if v}


def assert_no_secret_leaked(settings, log_dirs: list[Path]) -> None:
    """No configured password in any log of the run (services, Flink, the stack) or in a tracked file."""
    secrets = configured_secrets(settings)
    assert len(secrets) >= 8, sorted(secrets)  # admin + 3 Redis users, owner + 3 Postgres roles
    logs = [p for d in [*log_dirs, REPO / ".local", flink_home() / "log"] for p in d.rglob("*.log")]
    assert any("inference" in p.name for p in logs) and any("flink" in p.name for p in logs), logs
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    files = logs + [REPO / f.decode() for f in tracked if f and (REPO / f.decode()).is_file()]
    leaks = [(key, str(path)) for path in files for key, value in secrets.items() if value.encode() in path.read_bytes()]
    assert leaks == []
