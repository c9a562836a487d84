"""The Managed Flink template: cfn-lint clean, and in step with the package and the typed config."""
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from cfnlint.decode import cfn_yaml

from common.config import load_settings
from deploy.managed_flink.build_package import RUN_OPTIONS
from flink_jobs.runtime_properties import JOB_GROUP, RUN_OPTIONS_GROUP

TEMPLATE = Path(__file__).resolve().parents[3] / "deploy" / "managed_flink" / "template.yaml"


def app_properties() -> dict[str, dict]:
    template = cfn_yaml.load(str(TEMPLATE))
    app = template["Resources"]["FlinkApplication"]["Properties"]
    groups = app["ApplicationConfiguration"]["EnvironmentProperties"]["PropertyGroups"]
    return app, {g["PropertyGroupId"]: g["PropertyMap"] for g in groups}


def test_cfn_lint_is_clean():
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    out = subprocess.run([str(cfn_lint), str(TEMPLATE)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_runtime_matches_the_pinned_flink():
    app, _ = app_properties()
    major, minor = version("apache-flink").split(".")[:2]
    assert app["RuntimeEnvironment"] == f"FLINK-{major}_{minor}"
    assert app["ApplicationConfiguration"]["ApplicationSnapshotConfiguration"]["SnapshotsEnabled"] is True


def test_run_options_point_into_the_package():
    _, groups = app_properties()
    assert groups[RUN_OPTIONS_GROUP] == RUN_OPTIONS


def test_job_properties_are_keys_of_the_typed_config():
    _, groups = app_properties()
    props = {k: v for k, v in groups[JOB_GROUP].items() if k != "config"}
    placeholders = {"redis.port": "6379", "flink.parallelism": "2"}  # resolved by CloudFormation at deploy time

    def literal(key, value):
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and "Fn::Sub" in value:
            return re.sub(r"\$\{[^}]+\}", "x", value["Fn::Sub"])
        return placeholders.get(key, "x")

    overrides = {k: literal(k, v) for k, v in props.items()}
    settings = load_settings("prod", environ={}, overrides=overrides, secret_resolver=lambda _id: "secret")
    assert settings.redis.tls and settings.redis.password.get_secret_value() == "secret"
