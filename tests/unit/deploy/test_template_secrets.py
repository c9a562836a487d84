"""The CloudFormation template and config/<env>.yaml agree on every secret, grant and Redis user.

Each process is loaded as it runs in AWS (the Flink job from the template's property groups, the
retraining task from its task definition's environment) with a Secrets Manager stand-in that
answers only the secrets the process's IAM role is granted, and then reads the credentials it
uses. A secret the config names that the template does not create, a grant that is missing or
wider than one named secret, or a Redis user that differs from ``deploy/redis_acl.py`` is a
problem; the tests break the template on purpose to show each check can fail.
"""

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from cfnlint.decode import cfn_yaml

from btcpred.common.config import CONFIG_DIR, REDIS_ROLES, ConfigError, load_settings
from btcpred.flink_jobs.runtime_properties import job_settings
from deploy.redis_acl import ACL_RULES

TEMPLATE = Path(__file__).resolve().parents[3] / "deploy" / "managed_flink" / "template.yaml"
ENVIRONMENTS = ("dev", "prod")


def load_template() -> dict:
    return cfn_yaml.load(str(TEMPLATE))


PARAMETER_DEFAULTS = {name: str(p.get("Default", "x")) for name, p in load_template()["Parameters"].items()}


def _literal(value, env: str) -> str:
    """A template value as deployed in ``env``: ${Environment} substituted, a parameter its default,
    an endpoint port 6379, any other reference a placeholder."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Sub" in value:
        return re.sub(r"\$\{[^}]+\}", "x", value["Fn::Sub"].replace("${Environment}", env))
    if isinstance(value, dict) and value.get("Ref") == "Environment":
        return env
    if isinstance(value, dict) and value.get("Ref") in PARAMETER_DEFAULTS:
        return PARAMETER_DEFAULTS[value["Ref"]]
    return "6379" if "Port" in json.dumps(value) else "x"


def secret_names(resources: dict, env: str) -> dict[str, str]:
    """Logical id -> secret name, for the secrets the template names (others are internal)."""
    return {
        rid: _literal(r["Properties"]["Name"], env)
        for rid, r in resources.items()
        if r["Type"] == "AWS::SecretsManager::Secret" and "Name" in r["Properties"]
    }


def granted_secrets(resources: dict, role_id: str, problems: list[str]) -> set[str]:
    """Logical ids of the secrets ``role_id`` may read; a pattern or ARN string is a problem."""
    out = set()
    for policy in resources[role_id]["Properties"].get("Policies", []):
        for stmt in policy["PolicyDocument"]["Statement"]:
            actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
            if "secretsmanager:GetSecretValue" not in actions:
                continue
            targets = stmt["Resource"] if isinstance(stmt["Resource"], list) else [stmt["Resource"]]
            for target in targets:
                if isinstance(target, dict) and "Ref" in target:
                    out.add(target["Ref"])
                else:
                    problems.append(f"{role_id}: secret grant {target!r} is not one named secret")
    return out


def referenced_secrets(env: str) -> set[str]:
    found = set()

    def walk(node):
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, str) and node.startswith("secretsmanager:"):
            found.add(node[len("secretsmanager:") :])

    walk(yaml.safe_load((CONFIG_DIR / f"{env}.yaml").read_text()))
    return found


def guarded(readable: set[str], read: list[str]):
    def resolve(secret_id: str) -> str:
        read.append(secret_id)
        if secret_id not in readable:
            raise PermissionError(f"AccessDenied: {secret_id}")
        return "s3cret"

    return resolve


# what each ECS service's process connects with (its config section and role); nothing else may be granted
SERVICE_CREDENTIALS = {
    "ingestor": ("Ingestor", []),
    "reanchor": ("Reanchor", [("redis", "reanchor")]),
    "rest-poller": ("RestPoller", []),
    "sbe-archiver": ("SbeArchiver", []),
    "inference": ("Inference", [("redis", "inference"), ("postgres", "reporting")]),
}


def problems_of(template: dict, env: str, tmp_path: Path) -> list[str]:
    resources = template["Resources"]
    problems: list[str] = []
    names = secret_names(resources, env)
    missing = referenced_secrets(env) - set(names.values())
    problems += [f"btcpred/config/{env}.yaml names secret {name!r}, the template creates none" for name in sorted(missing)]

    # the Flink job: the template's property groups, read as Managed Flink hands them over
    app = resources["FlinkApplication"]["Properties"]["ApplicationConfiguration"]
    groups = [
        {
            "PropertyGroupId": g["PropertyGroupId"],
            "PropertyMap": {k: (env if k == "config" else _literal(v, env)) for k, v in g["PropertyMap"].items()},
        }
        for g in app["EnvironmentProperties"]["PropertyGroups"]
    ]
    props = tmp_path / f"application_properties-{env}.json"
    props.write_text(json.dumps(groups))
    read: list[str] = []
    readable = {names[r] for r in granted_secrets(resources, "FlinkApplicationRole", problems) if r in names}
    try:
        settings = job_settings(None, props, environ={}, secret_resolver=guarded(readable, read))
        settings.redis.credentials("hotpath")  # what the job's Redis sinks connect with
    except ConfigError as exc:
        problems.append(f"Flink job ({env}): {exc}")
    else:
        if settings.redis.tls is not True:
            problems.append(f"Flink job ({env}): Redis without TLS against an in-transit-encrypted cluster")
    problems += [f"FlinkApplicationRole may read {n!r}, which the job never reads" for n in sorted(readable - set(read))]

    # the retraining task: its container environment; loading and training as roles (the owner only if
    # it applies migrations itself, which dev and prod leave to the migration task)
    container = resources["RetrainTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    environ = {e["Name"]: _literal(e["Value"], env) for e in container["Environment"]}
    read = []
    readable = {names[r] for r in granted_secrets(resources, "RetrainTaskRole", problems) if r in names}
    try:
        settings = load_settings(environ["BTCPRED_ENV"], environ=environ, secret_resolver=guarded(readable, read))
        for role in ((None,) if settings.postgres.apply_migrations else ()) + ("loader", "trainer"):
            settings.postgres.credentials(role)
        settings.redis.credentials("trainer")  # the online contest's decisions, recorded each cycle
    except ConfigError as exc:
        problems.append(f"retraining task ({env}): {exc}")
    problems += [f"RetrainTaskRole may read {n!r}, which the task never reads" for n in sorted(readable - set(read))]

    # the migration task: the schema owner, and nothing else
    container = resources["MigrateTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    environ = {e["Name"]: _literal(e["Value"], env) for e in container["Environment"]}
    read = []
    readable = {names[r] for r in granted_secrets(resources, "MigrateTaskRole", problems) if r in names}
    try:
        load_settings(environ["BTCPRED_ENV"], environ=environ, secret_resolver=guarded(readable, read)).postgres.credentials(None)
    except ConfigError as exc:
        problems.append(f"migration task ({env}): {exc}")
    problems += [f"MigrateTaskRole may read {n!r}, which the task never reads" for n in sorted(readable - set(read))]

    # the long-running services: each container's environment, and the credentials its process reads
    for process, (logical, credentials) in SERVICE_CREDENTIALS.items():
        task = resources.get(f"{logical}TaskDefinition")
        if task is None:
            problems.append(f"no task definition for {process}")
            continue
        container = task["Properties"]["ContainerDefinitions"][0]
        environ = {e["Name"]: _literal(e["Value"], env) for e in container["Environment"]}
        read = []
        readable = {names[r] for r in granted_secrets(resources, f"{logical}TaskRole", problems) if r in names}
        try:
            settings = load_settings(environ["BTCPRED_ENV"], environ=environ, secret_resolver=guarded(readable, read))
            for section, role in credentials:
                getattr(settings, section).credentials(role)
        except (ConfigError, PermissionError) as exc:
            problems.append(f"{process} ({env}): {exc}")
        problems += [f"{logical}TaskRole may read {n!r}, which {process} never reads" for n in sorted(readable - set(read))]

    # Redis: cluster mode and one RBAC user per role, as the config and redis_acl.py say
    group = resources["RedisReplicationGroup"]["Properties"]
    settings = load_settings(env, environ={}, secret_resolver=lambda _id: "x")
    if (group.get("ClusterMode") == "enabled") != settings.redis.cluster:
        problems.append(f"redis.cluster is {settings.redis.cluster} in {env}.yaml, ClusterMode {group.get('ClusterMode')!r}")
    users = {r["Properties"]["UserName"]: r["Properties"] for r in resources.values() if r["Type"] == "AWS::ElastiCache::User"}
    for role in REDIS_ROLES:
        user = users.get(role)
        if user is None:
            problems.append(f"no ElastiCache user {role!r}")
            continue
        if user["AccessString"] != f"on {ACL_RULES[role]}":
            problems.append(f"ElastiCache user {role!r}: access string differs from deploy/redis_acl.py")
        secret_ref = re.search(r"\$\{(\w+)\}", user["AuthenticationMode"]["Passwords"][0]["Fn::Sub"]).group(1)
        if settings.redis.users[role].secret_id != names.get(secret_ref):
            problems.append(
                f"ElastiCache user {role!r} authenticates with {names.get(secret_ref)!r}, "
                f"config names {settings.redis.users[role].secret_id!r}"
            )
    if users.get("default", {}).get("AccessString", "").split()[:1] != ["off"]:
        problems.append("the default Redis user is not switched off")
    return problems


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_template_and_config_agree_on_every_secret_and_grant(env, tmp_path):
    assert problems_of(load_template(), env, tmp_path) == []


def test_each_check_fails_on_a_template_that_breaks_it(tmp_path):
    template = load_template()
    res = template["Resources"]

    no_grant = copy.deepcopy(template)
    statements = no_grant["Resources"]["FlinkApplicationRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    statements[:] = [s for s in statements if s.get("Sid") != "RedisSecret"]
    assert any("Flink job (prod)" in p and "redis.users.hotpath" in p for p in problems_of(no_grant, "prod", tmp_path))

    too_wide = copy.deepcopy(template)
    for s in too_wide["Resources"]["RetrainTaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]:
        if s.get("Sid") == "PostgresSecrets":
            s["Resource"] = s["Resource"] + [{"Ref": "RedisInferenceSecret"}]
    assert "RetrainTaskRole may read 'btcpred/prod/redis/inference', which the task never reads" in problems_of(
        too_wide, "prod", tmp_path
    )

    wider = copy.deepcopy(template)
    for stmt in wider["Resources"]["InferenceTaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]:
        if stmt.get("Sid") == "Secrets":
            stmt["Resource"] = stmt["Resource"] + [{"Ref": "RedisHotpathSecret"}]
    assert "InferenceTaskRole may read 'btcpred/prod/redis/hotpath', which inference never reads" in problems_of(
        wider, "prod", tmp_path
    )
    narrower = copy.deepcopy(template)
    for stmt in narrower["Resources"]["InferenceTaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]:
        if stmt.get("Sid") == "Secrets":
            stmt["Resource"] = [{"Ref": "RedisInferenceSecret"}]
    assert any(
        p.startswith("inference (prod):") and "postgres.roles.reporting" in p for p in problems_of(narrower, "prod", tmp_path)
    )

    renamed = copy.deepcopy(template)
    renamed["Resources"]["PostgresTrainerSecret"]["Properties"]["Name"] = {"Fn::Sub": "btcpred/${Environment}/pg/trainer"}
    found = problems_of(renamed, "dev", tmp_path)
    assert "btcpred/config/dev.yaml names secret 'btcpred/dev/postgres/trainer', the template creates none" in found

    single_node = copy.deepcopy(template)
    del single_node["Resources"]["RedisReplicationGroup"]["Properties"]["ClusterMode"]
    assert any(p.startswith("redis.cluster is True") for p in problems_of(single_node, "prod", tmp_path))
    assert res["RedisReplicationGroup"]["Properties"]["ClusterMode"] == "enabled"  # the original is untouched
