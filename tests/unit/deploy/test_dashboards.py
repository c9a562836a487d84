"""Dashboards are code: the committed JSON is what the generator makes, and every query parses into metric names."""

import json

from deploy import observability
from deploy.grafana import dashboards


def test_committed_dashboards_match_the_generator():
    assert dashboards.main(["--check"]) == 0, "run python -m deploy.grafana.dashboards"


def test_the_three_dashboards_query_prometheus_through_the_provisioned_datasource():
    for name in ("hot-path", "reliability", "business"):
        board = json.loads((dashboards.OUT / f"{name}.json").read_text())
        targets = [t for p in board["panels"] for t in p.get("targets", [])]
        assert len(targets) >= 8, name
        assert all(t["datasource"] == {"type": "prometheus", "uid": "prometheus"} and t["expr"] for t in targets)


def test_metric_names_are_taken_from_promql_by_hand_examples():
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(inference_http_request_duration_seconds_bucket{job="x"}[1m])))'
        ' / ignoring(model) inference_online_accuracy{model="persistence"} + time() - up offset 5m'
    )
    assert observability.metric_names(expr) == {
        "inference_http_request_duration_seconds_bucket",
        "inference_online_accuracy",
        "up",
    }


def test_every_alerted_or_charted_series_is_listed_with_its_users():
    used = observability.series_used()
    assert "alert FeatureAgeDegraded" in used["inference_feature_age_seconds"]
    assert any(u.startswith("BTCUSDT predictor: business") for u in used["inference_online_accuracy"])
    assert not any(":" in name for name in used)  # recording rules' outputs are derived, not exported
