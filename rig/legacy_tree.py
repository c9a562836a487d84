"""The hot-path job's code as an earlier commit had it, to take a savepoint before a layout change.

A savepoint names the classes in keyed state by the module paths of the code that wrote it. To
prove that state written before the code became one package (``btcpred``) resumes after the move,
the upgrade test runs its first job from the last pre-move commit: ``export`` writes that commit's
top-level packages and config into a directory laid out like a checkout, which
``flink_cluster.submit(code_dir=...)`` puts on the client's and the Python workers' path
(``-pypath``: the workers run on this machine, nothing is shipped) in place of the installed package.
"""

from __future__ import annotations

import subprocess
import tarfile
from io import BytesIO
from pathlib import Path

from rig.stack import REPO

PRE_PACKAGE_COMMIT = "02cb312"  # the last commit with top-level udfs/, flink_jobs/, common/, ... (2026-12-02)
PRE_PACKAGE_PATHS = ("udfs", "common", "adapters", "flink_jobs", "config")  # what its hot-path job imports


def export(dest: Path, commit: str = PRE_PACKAGE_COMMIT, paths: tuple[str, ...] = PRE_PACKAGE_PATHS) -> Path:
    """``git archive`` of ``paths`` at ``commit`` into ``dest`` (needs the commit: a full clone, as CI's is)."""
    out = subprocess.run(["git", "archive", "--format=tar", commit, *paths], cwd=REPO, capture_output=True)
    if out.returncode != 0:
        raise RuntimeError(f"git archive {commit} failed (a shallow clone lacks it): {out.stderr.decode()[-500:]}")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=BytesIO(out.stdout)) as tar:
        tar.extractall(dest, filter="data")
    # beside the code, as in a checkout: its config's localsecret: files, its state storage's fetched S3 plugin
    (dest / ".local").symlink_to(REPO / ".local")
    (dest / "deploy" / "flink").mkdir(parents=True)
    (dest / "deploy" / "flink" / "target").symlink_to(REPO / "deploy" / "flink" / "target")
    return dest
