"""Which metric series the alert rules and dashboards read: the contract with every exporter.

The series test (tests/e2e/test_observability.py) checks each one exists in a live
stack's Prometheus; ``python -m deploy.observability --prometheus URL`` prints the
catalogue of exported metrics (type, help) with the dashboards and alerts using each.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.parse
import urllib.request
from collections import defaultdict
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "deploy" / "prometheus" / "rules"
DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"

_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}
_STRIP = [
    re.compile(r'"(?:[^"\\]|\\.)*"'),  # strings
    re.compile(r"\{[^}]*\}"),  # label matchers
    re.compile(r"\[[^\]]*\]"),  # range selectors
    re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"),  # grouping labels
]
_NAME = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?")


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords and label names left out)."""
    for pattern in _STRIP:
        expr = pattern.sub(" ", expr)
    return {m.group(1) for m in _NAME.finditer(expr) if not m.group(2) and m.group(1).lower() not in _KEYWORDS}


def rule_exprs() -> list[tuple[str, str]]:
    """(rule name, expr) of every alert and recording rule."""
    found = []
    for path in sorted(RULES.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                found.append((f"alert {rule['alert']}" if "alert" in rule else f"record {rule['record']}", rule["expr"]))
    return found


def dashboard_exprs() -> list[tuple[str, str]]:
    """(dashboard / panel title, expr) of every panel target and template query."""
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                found.append((f"{board['title']} / {panel['title']}", target["expr"]))
        for template in board.get("templating", {}).get("list", []):
            match = re.fullmatch(r"label_values\((\w+),\s*\w+\)", template.get("query", ""))
            if match:
                found.append((f"{board['title']} / variable {template['name']}", match.group(1)))
    return found


def series_used() -> dict[str, set[str]]:
    """Metric name -> the rules and panels reading it. Recording rules' own outputs are left out."""
    recorded = {name.removeprefix("record ") for name, _ in rule_exprs() if name.startswith("record ")}
    used: dict[str, set[str]] = defaultdict(set)
    for user, expr in [*rule_exprs(), *dashboard_exprs()]:
        for name in metric_names(expr) - recorded:
            used[name].add(user)
    return dict(used)


def prometheus_get(base: str, path: str, **params: str) -> dict:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)["data"]


def missing_series(base: str, names: list[str]) -> list[str]:
    """The names with no series in Prometheus's head (any labels)."""
    present = set(prometheus_get(base, "/api/v1/label/__name__/values"))
    return sorted(n for n in names if n not in present)


def catalogue(base: str) -> str:
    """A markdown table: every btcpred or Flink metric Prometheus holds, its type and help, who reads it."""
    metadata = prometheus_get(base, "/api/v1/metadata")
    used = series_used()
    family_of = {}
    for name in prometheus_get(base, "/api/v1/label/__name__/values"):
        for suffix in ("_bucket", "_count", "_sum", "_total", "_created", ""):
            if name.endswith(suffix) and name.removesuffix(suffix) in metadata:
                family_of[name] = name.removesuffix(suffix)
                break
    rows = ["| metric | type | used by | help |", "|---|---|---|---|"]
    for family in sorted(set(family_of.values())):
        if family.startswith(("go_", "python_", "process_", "prometheus_", "scrape_", "net_")) or family.endswith("_created"):
            continue  # runtime built-ins, and prometheus_client's per-counter creation timestamps
        if family.startswith("flink_") and not any(n.startswith(family) for n in used):
            continue  # Flink exports hundreds of built-ins; list the ones we read
        meta = metadata[family][0]
        users = sorted({u for n, us in used.items() if family_of.get(n) == family or n == family for u in us})
        rows.append(f"| `{family}` | {meta['type']} | {'<br>'.join(users) or '-'} | {meta['help'][:80]} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--used", action="store_true", help="list the series rules and dashboards read, and stop")
    args = parser.parse_args(argv)
    if args.used:
        for name, users in sorted(series_used().items()):
            print(f"{name}\t{'; '.join(sorted(users))}")
        return 0
    print(catalogue(args.prometheus), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
