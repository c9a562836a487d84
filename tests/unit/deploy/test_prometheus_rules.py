"""The alert rules parse (`promtool check rules`) and each alert fires exactly on its synthetic series (`promtool test rules`)."""

import shutil
import subprocess
from pathlib import Path

import yaml

PROMETHEUS = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"
RULES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
PROMTOOL = shutil.which("promtool")
assert PROMTOOL, "promtool missing: scripts/setup.sh installs it (Debian prometheus)"


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=PROMETHEUS)


def test_rules_are_valid():
    result = promtool("check", "rules", *map(str, RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_on_its_series_and_not_on_healthy_ones():
    result = promtool("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test():
    alerts = {r["alert"] for f in RULES for g in yaml.safe_load(f.read_text())["groups"] for r in g["rules"] if "alert" in r}
    tested = {
        t["alertname"]
        for f in RULE_TESTS
        for case in yaml.safe_load(f.read_text())["tests"]
        for t in case.get("alert_rule_test", [])
    }
    assert alerts - tested == set()


def test_a_broken_expectation_fails(tmp_path):
    """The harness can fail: the same rules with one expected summary changed must not pass."""
    case = (PROMETHEUS / "tests" / "btcpred.rules.test.yml").read_text().replace("(> 2 s)", "(> 3 s)", 1)
    broken = tmp_path / "broken.test.yml"
    broken.write_text(case.replace("../rules/", str(PROMETHEUS / "rules") + "/"))
    assert promtool("test", "rules", str(broken)).returncode != 0
