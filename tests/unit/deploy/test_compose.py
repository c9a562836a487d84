"""docker-compose.yml is valid and runs what the local no-Docker stack runs, configured the same way."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from common.config import load_settings
from deploy import services

REPO = Path(__file__).resolve().parents[3]
COMPOSE = REPO / "docker-compose.yml"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_docker_compose_config_accepts_the_file():
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose not installed: scripts/setup.sh installs Debian's docker-compose")
    env = {**os.environ, "GRAFANA_ADMIN_PASSWORD": "not-a-secret"}
    out = subprocess.run([binary, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr


def test_a_secret_without_a_value_is_refused():
    binary = shutil.which("docker-compose")
    env = {k: v for k, v in os.environ.items() if k != "GRAFANA_ADMIN_PASSWORD"}
    out = subprocess.run([binary, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, env=env, cwd=REPO)
    assert out.returncode != 0 and "GRAFANA_ADMIN_PASSWORD" in out.stderr


def test_every_service_runs_the_local_stacks_command():
    declared = compose()["services"]
    for name, spec in services.SERVICES.items():
        if name == "flink-job":  # a cluster runs the job's file through `flink run -py`
            cmd = declared[name]["command"]
            assert cmd[:2] == ["flink", "run"] and cmd[cmd.index("-py") + 1] == f"/opt/btcpred/{services.FLINK_JOB_FILE}"
            continue
        assert name in declared, f"{name} runs locally but not in compose"
        assert declared[name]["command"][:3] == services.command(name), name


def test_compose_environment_is_valid_typed_config():
    """Every BTCPRED_ override the containers get is a key of the typed config, as the local stack reads it."""
    for name, spec in compose()["services"].items():
        env = {k: str(v) for k, v in (spec.get("environment") or {}).items() if k.startswith("BTCPRED_")}
        if env:
            settings = load_settings(environ=env)
            assert settings.env == "local", name


def test_containers_use_the_local_stacks_emulator_versions():
    declared = compose()["services"]
    lock = (REPO / "deploy" / "local" / "kinesalite" / "package.json").read_text()
    assert "kinesalite@3.3.3" in declared["kinesis"]["command"][2] and '"kinesalite": "3.3.3"' in lock
    pins = (REPO / "pyproject.toml").read_text()
    assert declared["s3"]["image"].split(":")[1] in pins.split("moto[server]==")[1][:10]
