import json

import pytest

from btcpred.common.config import ConfigError
from btcpred.flink_jobs.runtime_properties import JOB_GROUP, job_settings, read_property_groups


def write(tmp_path, groups) -> object:
    path = tmp_path / "application_properties.json"
    path.write_text(json.dumps(groups))
    return path


def test_job_group_picks_config_and_overrides(tmp_path):
    path = write(
        tmp_path,
        [
            {"PropertyGroupId": "kinesis.analytics.flink.run.options", "PropertyMap": {"python": "main.py"}},
            {"PropertyGroupId": JOB_GROUP, "PropertyMap": {"config": "prod", "kinesis.stream": "s-1", "flink.parallelism": "4"}},
        ],
    )
    s = job_settings(None, path, environ={}, secret_resolver=lambda secret_id: f"from {secret_id}")
    assert (s.env, s.kinesis.stream, s.flink.parallelism) == ("prod", "s-1", 4)


def test_without_properties_the_given_config_serves():
    assert job_settings("dev", None, environ={}, secret_resolver=lambda secret_id: "s").env == "dev"


def test_wrong_key_names_the_file_and_group(tmp_path):
    path = write(tmp_path, [{"PropertyGroupId": JOB_GROUP, "PropertyMap": {"flink.paralelism": "4"}}])
    with pytest.raises(ConfigError, match=rf"flink.paralelism: Extra inputs.*{path.name} group {JOB_GROUP}"):
        job_settings("local", path, environ={})


@pytest.mark.parametrize(
    "text, message",
    [("{", "cannot read"), ('{"a": 1}', "list of property groups"), ('[{"PropertyMap": {}}]', "entry 0 needs PropertyGroupId")],
)
def test_malformed_file_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_property_groups(path)


def test_the_kinesis_start_position_follows_the_config_and_at_timestamp_needs_a_zoned_time():
    from datetime import datetime, timezone

    import pytest
    from pydantic import ValidationError

    from btcpred.common.config import FlinkJobConfig, KinesisConfig
    from btcpred.flink_jobs.hot_path_job import kinesis_properties

    k = KinesisConfig()
    assert kinesis_properties(k, FlinkJobConfig())["flink.stream.initpos"] == "TRIM_HORIZON"
    latest = kinesis_properties(k, FlinkJobConfig(start_position="LATEST"))
    assert latest["flink.stream.initpos"] == "LATEST" and "flink.stream.initpos.timestamp" not in latest
    at = FlinkJobConfig(start_position="AT_TIMESTAMP", start_at=datetime(2026, 12, 7, 10, 0, 0, 500_000, tzinfo=timezone.utc))
    props = kinesis_properties(k, at)
    assert props["flink.stream.initpos"] == "AT_TIMESTAMP" and props["flink.stream.initpos.timestamp"] == "1796637600.500"
    for bad in ({"start_position": "AT_TIMESTAMP"}, {"start_at": datetime(2026, 12, 7, tzinfo=timezone.utc)}):
        with pytest.raises(ValidationError):
            FlinkJobConfig(**bad)
    with pytest.raises(ValidationError, match="time zone"):
        FlinkJobConfig(start_position="AT_TIMESTAMP", start_at=datetime(2026, 12, 7))
