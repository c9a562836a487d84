"""ruff (lint and format) on the tree and mypy on the pure core, as the import contract runs: in the suite.

Each tool is also run on a copy with one violation planted, so a check that could never fail shows here."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TREE = ["btcpred", "rig", "bench", "tests", "deploy"]


def run(*cmd: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_ruff_finds_nothing():
    result = run("ruff", "check", *TREE)
    assert result.returncode == 0, result.stdout[-3000:]


def test_the_tree_is_formatted():
    result = run("ruff", "format", "--check", *TREE)
    assert result.returncode == 0, result.stdout[-3000:]


def test_the_pure_core_type_checks():
    result = run("mypy", "btcpred/udfs")
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.parametrize(
    "tool, planted",
    [
        (("ruff", "check", "btcpred"), "def f():\n    try:\n        return 1\n    except Exception:\n        return 2\n"),
        (("ruff", "format", "--check", "btcpred"), "x = {  'a':1 }\n"),
        (("mypy", "btcpred/udfs"), "def f() -> int:\n    return 'not an int'\n"),
    ],
)
def test_each_check_fails_on_a_planted_violation(tmp_path, tool, planted):
    shutil.copytree(REPO / "btcpred", tmp_path / "btcpred", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "btcpred" / "udfs" / "planted.py").write_text(planted)
    result = run(*tool, cwd=tmp_path)
    assert result.returncode != 0 and "planted.py" in result.stdout, result.stdout[-2000:]
