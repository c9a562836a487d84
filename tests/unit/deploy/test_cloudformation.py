"""The Managed Flink template: cfn-lint clean, and in step with the package and the typed config."""

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from cfnlint.decode import cfn_yaml

from btcpred.common.config import load_settings
from btcpred.flink_jobs.runtime_properties import JOB_GROUP, RUN_OPTIONS_GROUP
from deploy.managed_flink.build_package import RUN_OPTIONS

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
    assert settings.redis.host == "x" and settings.kinesis.stream == "x"  # template values, not the file's
    assert settings.redis.credentials("hotpath") == ("hotpath", "secret")  # template_secrets checks who may read it


def test_the_scheduled_retraining_task_runs_the_retrain_service_with_what_it_touches():
    """The schedule starts the task that runs ``btcpred.batch.retrain`` (the compose and local loop's module),
    configured by environment keys of the typed config, with S3 rights on exactly the lake prefixes
    the learning loop reads and writes."""
    from deploy import services

    resources = cfn_yaml.load(str(TEMPLATE))["Resources"]
    container = resources["RetrainTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    assert container["Command"][:3] == services.command("retrain")
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env.pop("BTCPRED_ENV") == {"Ref": "Environment"}
    settings = load_settings("prod", environ={k: "x" for k in env}, secret_resolver=lambda _id: "secret")
    assert (settings.s3.bucket, settings.kinesis.stream) == ("x", "x")  # the keys exist and are read
    assert (settings.postgres.host, settings.redis.host) == ("x", "x")  # it reaches the feature store and pred:*
    assert not settings.postgres.apply_migrations  # the migration task does that, as the owner
    schedule = resources["RetrainSchedule"]["Properties"]
    assert schedule["Target"]["EcsParameters"]["TaskDefinitionArn"] == {"Ref": "RetrainTaskDefinition"}
    statements = resources["RetrainTaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    writable = [r["Fn::Sub"] for s in statements if "s3:PutObject" in s["Action"] for r in s["Resource"]]
    assert writable == ["${LakeBucket.Arn}/silver/*", "${LakeBucket.Arn}/gold/model_artifacts/*"]
    from btcpred.udfs.lake_layout import archive_silver_key, artifact_prefix

    assert archive_silver_key("BTCUSDT", "s", 0).startswith("silver/") and artifact_prefix("v").startswith(
        "gold/model_artifacts/"
    )


CHECKED_IN_PROPERTIES = TEMPLATE.parent / "application_properties.json"


def test_the_checked_in_application_properties_are_what_the_template_makes_and_the_job_reads():
    """deploy/managed_flink/application_properties.json is the file Managed Flink writes for a prod stack
    with the template's defaults (``/etc/flink/application_properties.json``; the host is an example).
    Same groups and keys as the template, the run options the package is built with, and the job's own
    reader turns it into the prod settings with the stack's values in place."""
    from btcpred.flink_jobs.runtime_properties import job_settings, read_property_groups

    _, template_groups = app_properties()
    checked_in = read_property_groups(CHECKED_IN_PROPERTIES)
    assert {g: sorted(m) for g, m in checked_in.items()} == {g: sorted(m) for g, m in template_groups.items()}
    assert checked_in[RUN_OPTIONS_GROUP] == RUN_OPTIONS
    job = checked_in[JOB_GROUP]
    parameters = cfn_yaml.load(str(TEMPLATE))["Parameters"]
    assert (
        template_groups[JOB_GROUP]["config"] == {"Ref": "Environment"} and job["config"] == parameters["Environment"]["Default"]
    )
    assert job["flink.parallelism"] == str(parameters["Parallelism"]["Default"])
    assert job["kinesis.stream"] == template_sub("MarketDataStream", "Name").replace("${Environment}", "prod")
    settings = job_settings(None, CHECKED_IN_PROPERTIES, environ={}, secret_resolver=lambda _id: "secret")
    assert settings.env == "prod" and settings.flink.parallelism == 2 and settings.kinesis.region == "eu-west-1"
    assert (settings.redis.host, settings.redis.port) == (job["redis.host"], 6379)
    assert settings.kinesis.stream == "btcusdt-market-data-prod" and settings.exchange.perp_ws_url


def template_sub(resource: str, prop: str) -> str:
    return cfn_yaml.load(str(TEMPLATE))["Resources"][resource]["Properties"][prop]["Fn::Sub"]


def alarm_metrics(alarm: dict) -> list[tuple[str, list]]:
    """(metric name, dimensions) an alarm watches: its own metric, or each metric its math reads."""
    if "MetricName" in alarm:
        return [(alarm["MetricName"], alarm.get("Dimensions", []))]
    return [
        (m["MetricStat"]["Metric"]["MetricName"], m["MetricStat"]["Metric"].get("Dimensions", []))
        for m in alarm["Metrics"]
        if "MetricStat" in m
    ]


def test_every_long_running_process_is_a_service_with_its_role_health_check_logs_and_alarm():
    """Every process of deploy/services.py runs in AWS: the Flink job as the Managed Flink application,
    retraining as the scheduled task, every other as an ECS service running its module, with a task
    role of its own, a container health check on its /health, its logs, and an alarm to AlertsTopic
    when it has no running task. Inference is behind the internal load balancer, which checks /ready.
    The job has AWS's recommended application alarms; retraining one on its completed cycles."""
    from deploy import services

    resources = cfn_yaml.load(str(TEMPLATE))["Resources"]
    by_command = {}
    for rid, r in resources.items():
        if r["Type"] == "AWS::ECS::TaskDefinition":
            by_command[tuple(r["Properties"]["ContainerDefinitions"][0]["Command"])] = rid
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert all(a["AlarmActions"] == [{"Ref": "AlertsTopic"}] for a in alarms)
    assert [n for n, s in services.SERVICES.items() if s.aws == "managed-flink"] == ["flink-job"]
    assert "FlinkApplication" in resources
    flink = {"Name": "Application", "Value": {"Ref": "FlinkApplication"}}
    on_flink = {name for a in alarms for name, dims in alarm_metrics(a) if flink in dims}
    assert {"downtime", "fullRestarts", "numberOfFailedCheckpoints"} <= on_flink
    for name in [n for n, s in services.SERVICES.items() if s.aws == "scheduled-task"]:  # with its own arguments
        task_id = next(rid for cmd, rid in by_command.items() if list(cmd[:3]) == services.command(name))
        assert task_id and resources["RetrainSchedule"]["Properties"]["Target"]["EcsParameters"]["TaskDefinitionArn"] == {
            "Ref": task_id
        }, name
        # its completed cycles counted off its log group, and an alarm when none completed
        log_group = resources[task_id]["Properties"]["ContainerDefinitions"][0]["LogConfiguration"]["Options"]["awslogs-group"]
        counted = [
            r["Properties"]["MetricTransformations"][0]["MetricName"]
            for r in resources.values()
            if r["Type"] == "AWS::Logs::MetricFilter" and r["Properties"]["LogGroupName"] == log_group
        ]
        assert counted, name
        stale = [a for a in alarms if a.get("MetricName") in counted]
        assert stale and stale[0]["TreatMissingData"] == "breaching" and stale[0]["ComparisonOperator"] == "LessThanThreshold"
    assert [n for n, s in services.SERVICES.items() if s.aws is None] == ["simulator"]
    for name in [n for n, s in services.SERVICES.items() if s.aws == "ecs-service"]:
        task_id = by_command.get(tuple(services.command(name)))
        assert task_id, f"no task definition runs {name}"
        task = resources[task_id]["Properties"]
        container = task["ContainerDefinitions"][0]
        port = container["PortMappings"][0]["ContainerPort"]
        assert f"127.0.0.1:{port}/health" in " ".join(container["HealthCheck"]["Command"]), name
        assert container["LogConfiguration"]["LogDriver"] == "awslogs"
        role = task["TaskRoleArn"]["Fn::GetAtt"][0]
        assert resources[role]["Type"] == "AWS::IAM::Role" and role not in ("RetrainTaskRole", "FlinkApplicationRole")
        service_id = next(
            rid
            for rid, r in resources.items()
            if r["Type"] == "AWS::ECS::Service" and r["Properties"]["TaskDefinition"] == {"Ref": task_id}
        )
        alarms = [
            r["Properties"]
            for r in resources.values()
            if r["Type"] == "AWS::CloudWatch::Alarm"
            and {"Name": "ServiceName", "Value": {"Fn::GetAtt": [service_id, "Name"]}} in r["Properties"].get("Dimensions", [])
        ]
        assert alarms and alarms[0]["AlarmActions"] == [{"Ref": "AlertsTopic"}], name
        if name == "inference":
            target = resources[resources[service_id]["Properties"]["LoadBalancers"][0]["TargetGroupArn"]["Ref"]]
            assert target["Properties"]["HealthCheckPath"] == "/ready" and target["Properties"]["Port"] == port


def test_the_database_refuses_clients_without_tls():
    resources = cfn_yaml.load(str(TEMPLATE))["Resources"]
    group = resources["DbParameterGroup"]["Properties"]
    assert group["Parameters"]["rds.force_ssl"] == "1"
    assert group["Family"] == "postgres" + resources["Database"]["Properties"]["EngineVersion"].split(".")[0]
    assert resources["Database"]["Properties"]["DBParameterGroupName"] == {"Ref": "DbParameterGroup"}


def test_only_the_one_shot_migration_task_reads_the_schema_owners_secret():
    """Every role that may read a secret, and which: the owner's password is the migration task's alone, and
    that task runs ``btcpred.adapters.db.migrate upgrade`` against the stack's database."""
    resources = cfn_yaml.load(str(TEMPLATE))["Resources"]
    owners = set()
    for name, resource in resources.items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for policy in resource["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                granted = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                if {"Ref": "PostgresOwnerSecret"} in granted:
                    owners.add(name)
    assert owners == {"MigrateTaskRole"}
    task = resources["MigrateTaskDefinition"]["Properties"]
    assert task["TaskRoleArn"] == {"Fn::GetAtt": ["MigrateTaskRole", "Arn"]}
    container = task["ContainerDefinitions"][0]
    assert container["Command"] == ["python", "-m", "btcpred.adapters.db.migrate", "upgrade"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["BTCPRED_POSTGRES__HOST"] == {"Fn::GetAtt": ["Database", "Endpoint.Address"]}
