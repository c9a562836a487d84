"""One package, one list of it: what pyproject installs is what the image and the Managed Flink zip carry,
and the rig, benches and tests are in none of them."""

import re
import tomllib

from deploy.managed_flink import build_package
from tests.conftest import REPO

OUTSIDE = ("rig", "bench", "tests")


def test_pyproject_installs_the_one_package_with_its_config():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["btcpred*"]
    assert "config/*.yaml" in project["tool"]["setuptools"]["package-data"]["btcpred"]
    assert sorted(p.name for p in (REPO / "btcpred" / "config").glob("*.yaml")) == ["dev.yaml", "local.yaml", "prod.yaml"]


def test_the_image_and_the_managed_flink_zip_copy_the_package_not_the_rig():
    copies = re.findall(r"^COPY (\S+)", (REPO / "deploy" / "docker" / "Dockerfile").read_text(), flags=re.M)
    assert "btcpred" in copies and not any(c.split("/")[0] in OUTSIDE for c in copies), copies
    assert build_package.PACKAGE == "btcpred"


def test_no_path_edits_outside_tests():
    """Benches and the rig run with -m from the checkout; the package is installed. The one exception is
    the Managed Flink zip's entry point, which has no installer (its docstring says why)."""
    edits = sorted(
        str(p.relative_to(REPO))
        for top in ("btcpred", "rig", "bench", "deploy")
        for p in (REPO / top).rglob("*.py")
        if "sys.path.insert" in p.read_text()
    )
    assert edits == ["deploy/managed_flink/main.py"]
