"""The image and the Managed Flink zip install only what the lock vouches for, and the services do not run as root."""

import re
from pathlib import Path

import pytest
import yaml

from deploy.managed_flink import build_package

REPO = Path(__file__).resolve().parents[3]
DOCKERFILE = (REPO / "deploy" / "docker" / "Dockerfile").read_text()


def steps() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_dependencies_come_from_the_lock_with_hashes_before_the_package_without_any():
    s = steps()
    locked = next(i for i, x in enumerate(s) if "--require-hashes -r deps.lock" in x)
    package = next(i for i, x in enumerate(s) if "pip install" in x and "--no-deps" in x and "deps.lock" not in x)
    assert locked < package and "COPY ${LOCK} ./deps.lock" in s[:locked]
    assert all("--require-hashes" in x or "--no-deps" in x for x in s if "pip install" in x)  # nothing unpinned


def test_the_last_user_is_not_root_and_owns_where_it_writes():
    users = [x.split()[1] for x in steps() if x.startswith("USER ")]
    assert users[-1] not in ("root", "0") and users[-1] == "btcpred"
    assert any("useradd" in x and "chown -R btcpred /opt/btcpred/.local" in x for x in steps())


def test_only_flinks_own_entrypoint_starts_as_root_in_compose():
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    as_root = {name for name, svc in services.items() if svc.get("user") == "root"}
    assert as_root == {"jobmanager", "taskmanager"}
    assert all(services[n]["entrypoint"] == ["/docker-entrypoint.sh"] for n in as_root)


def test_the_zip_installs_the_locks_files_for_every_bundled_distribution():
    text = build_package.locked_requirements(build_package.LOCK.read_text())
    lines = text.splitlines()
    assert len(lines) == len(build_package.BUNDLED_DISTRIBUTIONS)
    for line, pinned in zip(lines, build_package.pinned_requirements()):
        name_version, *hashes = line.split()
        assert build_package._canonical(name_version) == build_package._canonical(pinned) and hashes
        assert all(re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", h) for h in hashes)
    with pytest.raises(SystemExit, match="no entry"):
        build_package.locked_requirements("redis==8.1.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")


def test_the_services_image_leaves_the_training_libraries_to_the_retraining_image():
    s = steps()
    assert "ARG LOCK=requirements-service.lock" in s and "COPY ${LOCK} ./deps.lock" in s
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    assert services["retrain"]["build"]["args"] == {"LOCK": "requirements.lock"}
    assert services["retrain"]["image"] != services["inference"]["image"]
    from cfnlint.decode import cfn_yaml

    resources = cfn_yaml.load(str(REPO / "deploy" / "managed_flink" / "template.yaml"))["Resources"]
    images = {
        name: r["Properties"]["ContainerDefinitions"][0]["Image"]
        for name, r in resources.items()
        if r["Type"] == "AWS::ECS::TaskDefinition"
    }
    assert images.pop("RetrainTaskDefinition") == {"Ref": "TrainImageUri"}
    assert set(map(str, images.values())) == {str({"Ref": "AppImageUri"})}
