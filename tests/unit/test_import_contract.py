"""The import contract (.importlinter): processes over adapters over common over the pure core, no rig.

The suite runs ``lint-imports`` on the tree, and on a copy with one wrong import each way, so a
contract that could never fail would show here."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT), "--config", str(REPO / ".importlinter"), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120
    )


def test_the_tree_keeps_every_contract():
    result = lint(REPO)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    "module, line, broken",
    [
        (
            "btcpred/inference/service.py",
            "from btcpred.batch import train",
            "Processes over adapters",
        ),  # a process importing another
        ("btcpred/adapters/lake.py", "import btcpred.inference.cycle", "Processes over adapters"),  # an adapter importing upward
        ("btcpred/udfs/features.py", "import redis", "The pure core (udfs) imports no I/O library"),
        (
            "btcpred/ingest/ingestor.py",
            "from rig.simulator import exchange",
            "ships without the test rig",
        ),  # the rig in the product
    ],
)
def test_a_wrong_import_breaks_the_contract(tmp_path, module, line, broken):
    shutil.copytree(REPO / "btcpred", tmp_path / "btcpred", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "rig", tmp_path / "rig", ignore=shutil.ignore_patterns("__pycache__", "node_modules"))
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n{line}  # the wrong import\n")
    result = lint(tmp_path)
    assert result.returncode == 1, result.stdout[-3000:]
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout
