"""Docs that cannot drift: every alert rule is in docs/observability.md, every repository path the docs name exists."""

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TOP_LEVEL = ("btcpred/", "deploy/", "rig/", "bench/", "tests/", "docs/", "scripts/", ".ci/")


def alert_names() -> list[str]:
    rules = yaml.safe_load((REPO / "deploy/prometheus/rules/btcpred.rules.yml").read_text())
    return [r["alert"] for group in rules["groups"] for r in group["rules"] if "alert" in r]


def test_every_alert_rule_is_documented():
    section = (REPO / "docs/observability.md").read_text().split("## Alerts", 1)[1].split("\n## ", 1)[0]
    alerts = alert_names()
    assert len(alerts) > 25
    missing = [a for a in alerts if not re.search(rf"^\|[^|\n]*\b{a}\b", section, re.MULTILINE)]  # in an alert cell
    assert missing == [], f"alerts missing from docs/observability.md's table: {missing}"


def named_paths(text: str) -> set[str]:
    """Repository paths in backticks: `btcpred/common/x.py`, `deploy/prometheus/rules/` (wildcards and
    placeholders like <env> are not paths)."""
    found = set()
    for token in re.findall(r"`([^`\s]+)`", text):
        token = token.split("::")[0].rstrip(".,:;)")
        if token.startswith(TOP_LEVEL) and not re.search(r"[<>*{}$]", token):
            found.add(token)
    return found


def exists(path: str) -> bool:
    """A file or folder, or ``module.Name`` naming something in ``module.py``."""
    return (REPO / path).exists() or ("." in path and (REPO / (path.rsplit(".", 1)[0] + ".py")).exists())


def test_every_path_the_docs_name_exists():
    missing = {f"{doc.relative_to(REPO)}: {path}" for doc in DOCS for path in named_paths(doc.read_text()) if not exists(path)}
    assert sorted(missing) == []
