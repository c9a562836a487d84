"""Build the Managed Flink application zip of the hot-path job.

    python -m deploy.managed_flink.build_package [--out build/managed-flink/btcpred-hot-path.zip]

Layout (what Managed Flink's ``kinesis.analytics.flink.run.options`` point at)::

    main.py                              python   = main.py
    lib/btcpred-flink-connectors.jar     jarfile  = lib/btcpred-flink-connectors.jar
    lib/site-packages/                   pyFiles  = lib/site-packages
        btcpred/                         the project's one package (its config/ inside)
        pydantic/ pydantic_core/ yaml/ redis/ ...   dependencies the runtime lacks

Managed Flink installs nothing with pip, so dependencies are bundled as manylinux
x86_64 CPython 3.11 wheels at the versions pinned for this repo. numpy, pandas, pyarrow
and PyFlink itself come with the runtime and are not bundled.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

from btcpred.flink_jobs.state_storage import CONNECTOR_JAR

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "build" / "managed-flink" / "btcpred-hot-path.zip"
PACKAGE = "btcpred"  # the one installed package (pyproject); the job imports its udfs, common and flink_jobs
# what the job imports beyond the runtime, at the versions this repo's venv pins
BUNDLED_DISTRIBUTIONS = (
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "typing_extensions",
    "typing_inspection",
    "PyYAML",
    "redis",
    "sortedcontainers",
)
RUN_OPTIONS = {"python": "main.py", "jarfile": "lib/btcpred-flink-connectors.jar", "pyFiles": "lib/site-packages"}


def pinned_requirements() -> list[str]:
    return [f"{name}=={version(name)}" for name in BUNDLED_DISTRIBUTIONS]


LOCK = REPO / "requirements.lock"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_requirements(lock_text: str, names: tuple[str, ...] = BUNDLED_DISTRIBUTIONS) -> str:
    """The lock's entries (version and every hash) for ``names``: what pip installs with --require-hashes,
    so the zip holds exactly the files the lock vouches for. A name the lock lacks is an error."""
    entries: dict[str, str] = {}
    for block in re.split(r"\n(?=\S)", lock_text):
        m = re.match(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==(\S+)", block)
        if m:
            hashes = re.findall(r"--hash=sha256:[0-9a-f]{64}", block)
            entries[_canonical(m.group(1))] = f"{m.group(1)}=={m.group(2)} " + " ".join(hashes)
    missing = [n for n in names if _canonical(n) not in entries]
    if missing:
        raise SystemExit(f"requirements.lock has no entry for {missing}: regenerate it (docs/development.md)")
    return "\n".join(entries[_canonical(n)] for n in names) + "\n"


def stage(staging: Path) -> None:
    if staging.exists():
        shutil.rmtree(staging)
    site = staging / "lib" / "site-packages"
    site.mkdir(parents=True)
    shutil.copy(REPO / "deploy" / "managed_flink" / "main.py", staging / "main.py")
    if not CONNECTOR_JAR.is_file():
        raise SystemExit(f"{CONNECTOR_JAR} missing: run scripts/setup.sh (mvn package in deploy/flink)")
    shutil.copy(CONNECTOR_JAR, staging / "lib" / CONNECTOR_JAR.name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / PACKAGE, site / PACKAGE, ignore=ignore)
    requirements = staging.parent / f"{staging.name}-requirements.txt"
    requirements.write_text(locked_requirements(LOCK.read_text()))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-compile",
            "--target",
            str(site),
            "--platform",
            "manylinux2014_x86_64",
            "--implementation",
            "cp",
            "--python-version",
            "3.11",
            "--only-binary=:all:",
            "--require-hashes",
            "-r",
            str(requirements),
        ],
        check=True,
    )
    for junk in site.glob("*.dist-info"):
        shutil.rmtree(junk)
    shutil.rmtree(site / "bin", ignore_errors=True)


def write_zip(staging: Path, out: Path) -> str:
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                info = zipfile.ZipInfo(str(path.relative_to(staging)), date_time=(2020, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, path.read_bytes())  # fixed times: the same sources give the same zip
    return hashlib.sha256(out.read_bytes()).hexdigest()


def build(out: Path = DEFAULT_OUT) -> Path:
    staging = out.parent / "staging"
    stage(staging)
    digest = write_zip(staging, out)
    print(f"{out} ({out.stat().st_size / 1e6:.1f} MB, sha256 {digest})")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    build(parser.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
