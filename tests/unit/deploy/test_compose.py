"""docker-compose.yml is valid and runs what the local no-Docker stack runs, configured the same way."""

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from btcpred.common.config import REDIS_ROLES, load_settings
from deploy import compose_files, services

REPO = Path(__file__).resolve().parents[3]
COMPOSE = REPO / "docker-compose.yml"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def resolved(path: Path = COMPOSE) -> dict:
    """The file as docker-compose resolves it (anchors merged, paths absolute): what would run."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose not installed: scripts/setup.sh installs Debian's docker-compose")
    compose_files.write()  # what setup makes: the shared secrets and Redis's ACL file
    out = subprocess.run([binary, "-f", str(path), "config"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


APP_IMAGE = "btcpred:local"
SECRETS_MOUNT = f"{REPO / '.local' / 'secrets'}:/opt/btcpred/.local/secrets:ro"
PUBLIC_PORTS = {("inference", 8000), ("prometheus", 9090), ("grafana", 3000), ("alertmanager", 9093)}  # API and UIs


def published(spec: dict) -> list[tuple[str, int]]:
    """(host address, port) of each published port; "" is every interface."""
    out = []
    for port in spec.get("ports", []):
        if isinstance(port, dict):
            out.append((port.get("host_ip", ""), int(port["published"])))
        else:
            parts = port.split("/")[0].split(":")
            out.append((parts[0] if len(parts) == 3 else "", int(parts[-2])))
    return out


def test_every_container_shares_the_one_secrets_source_and_no_password_is_inline():
    config = resolved()
    for name, spec in config["services"].items():
        env = spec.get("environment") or {}
        inline = [k for k in env if "PASSWORD" in k.upper() and not k.upper().endswith("_FILE")]
        assert not inline, (name, inline)
        if spec.get("image") == APP_IMAGE:  # every process of ours reads btcpred/config/local.yaml's localsecret: files
            assert SECRETS_MOUNT in spec.get("volumes", []), name
    for secret in config["secrets"].values():
        assert Path(secret["file"]).parent == REPO / ".local" / "secrets"
    # Redis checks passwords against the same files, hashed; PostgreSQL and Grafana read them as compose secrets
    acl = (REPO / ".local" / "compose" / "users.acl").read_text().splitlines()
    settings = load_settings("local", environ={})
    assert [line.split()[1] for line in acl] == ["default", *REDIS_ROLES]
    assert all(" >" not in line for line in acl)  # no password in clear
    hotpath = settings.redis.users["hotpath"].get_secret_value()
    assert f"#{hashlib.sha256(hotpath.encode()).hexdigest()}" in acl[1]
    pg = config["services"]["postgres"]
    assert pg["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/pg-owner"
    roles_script = (REPO / "deploy" / "compose" / "postgres-roles.sh").read_text()
    assert re.search(r"for role in ([a-z ]+);", roles_script).group(1).split() == list(settings.postgres.roles)
    assert {s["source"] for s in pg["secrets"]} == {"pg-owner", *(f"pg-{r}" for r in settings.postgres.roles)}


def test_only_the_api_and_the_uis_are_published_beyond_loopback():
    for name, spec in resolved()["services"].items():
        for host, port in published(spec):
            assert host == "127.0.0.1" or (name, port) in PUBLIC_PORTS, (name, host, port)
    assert ("127.0.0.1", 8081) in published(resolved()["services"]["jobmanager"])  # the job-submitting REST port


def test_metrics_ports_are_scraped_on_the_compose_network_and_never_published():
    config = resolved()
    scrape = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = [t for job in scrape["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    for target in targets:
        service, port = target.split(":")
        spec = config["services"][service]
        assert int(port) not in [p for _, p in published(spec)], target
        if spec.get("image") == APP_IMAGE and service not in ("jobmanager", "taskmanager"):
            assert spec["environment"]["BTCPRED_METRICS_HOST"] == "0.0.0.0", service
            settings = load_settings(environ={k: str(v) for k, v in spec["environment"].items() if k.startswith("BTCPRED_")})
            section = {"rest-poller": "poller", "sbe-archiver": None, "retrain": None}.get(service, service)
            if section:  # the port the process binds is the one Prometheus scrapes
                assert getattr(settings, section).metrics_port == int(port), service
    assert scrape["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_prometheus_scrapes_the_services_list_the_same_way_in_compose_and_locally():
    """deploy/services.py says which processes serve /metrics; compose's Prometheus and the local one
    scrape exactly those (each under its own name, on its own host in compose) and Flink's reporter."""
    from rig.stack import prometheus_scrape_config

    compose_jobs = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]
    assert [job["job_name"] for job in compose_jobs] == list(services.scrape_jobs())
    for job in compose_jobs:
        if job["job_name"] != services.FLINK_SCRAPE_JOB:
            assert [t.split(":")[0] for t in job["static_configs"][0]["targets"]] == [job["job_name"]]
    local = prometheus_scrape_config(load_settings("local", environ={}))["scrape_configs"]
    assert [job["job_name"] for job in local] == list(services.scrape_jobs())
    assert "simulator" not in services.scrape_jobs() and "flink-job" not in services.scrape_jobs()


def test_the_checkpoint_bucket_is_created_before_flink_starts():
    from btcpred.batch.buckets import state_buckets

    config = resolved()
    init = config["services"]["s3-init"]
    assert init["command"] == ["python", "-m", "btcpred.batch.buckets"]
    for name in ("jobmanager", "taskmanager"):
        assert config["services"][name]["depends_on"]["s3-init"] == {"condition": "service_completed_successfully"}
    flink = yaml.safe_load(config["services"]["jobmanager"]["environment"]["FLINK_PROPERTIES"])
    compose_buckets = {flink[k].split("/")[2] for k in ("execution.checkpointing.dir", "execution.checkpointing.savepoint-dir")}
    settings = load_settings(environ={k: str(v) for k, v in init["environment"].items() if k.startswith("BTCPRED_")})
    assert compose_buckets == state_buckets(settings.flink)  # the bucket s3-init makes is the one Flink writes


def test_the_local_alertmanager_routes_as_the_compose_one():
    from rig.stack import LOCAL_ALERT_TIMING, alertmanager_config

    compose_am = yaml.safe_load((REPO / "deploy" / "alertmanager" / "alertmanager.yml").read_text())
    local_am = alertmanager_config(load_settings("local", environ={}))
    assert {k: v for k, v in local_am["route"].items() if k not in LOCAL_ALERT_TIMING} == {
        k: v for k, v in compose_am["route"].items() if k not in LOCAL_ALERT_TIMING
    }
    assert [r["name"] for r in local_am["receivers"]] == [r["name"] for r in compose_am["receivers"]] == ["oncall"]
    assert local_am["receivers"][0]["webhook_configs"][0]["url"].startswith("http://127.0.0.1:")
    assert resolved()["services"]["alert-sink"]["command"][:3] == ["python", "-m", "deploy.alert_sink"]


def test_a_port_published_on_every_interface_is_seen_as_such(tmp_path):
    """The publishing rule reads docker-compose's resolved form: a short "6379:6379" is every interface."""
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["redis"]["ports"] = ["6379:6379"]
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    exposed = [(host, port) for host, port in published(resolved(path)["services"]["redis"])]
    assert exposed == [("", 6379)]  # every interface: the publishing rule above refuses this


def test_every_service_runs_the_local_stacks_command():
    declared = compose()["services"]
    for name in services.SERVICES:
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
    lock = (REPO / "rig" / "kinesalite" / "package.json").read_text()
    assert "kinesalite@3.3.3" in declared["kinesis"]["command"][2] and '"kinesalite": "3.3.3"' in lock
    pins = (REPO / "pyproject.toml").read_text()
    assert declared["s3"]["image"].split(":")[1] in pins.split("moto[server]==")[1][:10]
