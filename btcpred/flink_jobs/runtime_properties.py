"""The Flink job's runtime properties, read the same way locally and on Managed Flink.

Managed Service for Apache Flink gives an application no environment variables and
no command line; it writes the application's property groups to
``/etc/flink/application_properties.json`` as
``[{"PropertyGroupId": ..., "PropertyMap": {...}}]``. Locally the job reads a file of
the same format (``--properties``), so the one code path is exercised by the tests.

Group ``BtcpredJob``: ``config`` names the config file or environment (``prod``), every
other key is a dotted override of it (``redis.host``, ``kinesis.stream``, ...); a value
``secretsmanager:<id>`` is fetched from AWS Secrets Manager (``btcpred.common.config``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from btcpred.common.config import ConfigError, Settings, load_settings

MANAGED_FLINK_PROPERTIES = Path("/etc/flink/application_properties.json")
JOB_GROUP = "BtcpredJob"
RUN_OPTIONS_GROUP = "kinesis.analytics.flink.run.options"


def read_property_groups(path: Path) -> dict[str, dict[str, str]]:
    """Property groups by id; a malformed file is a ConfigError naming the file."""
    try:
        groups = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read application properties ({exc})") from None
    if not isinstance(groups, list):
        raise ConfigError(f"{path}: top level must be a list of property groups")
    found: dict[str, dict[str, str]] = {}
    for i, group in enumerate(groups):
        if not isinstance(group, dict) or "PropertyGroupId" not in group or not isinstance(group.get("PropertyMap", {}), dict):
            raise ConfigError(f"{path}: entry {i} needs PropertyGroupId and a PropertyMap object")
        found[group["PropertyGroupId"]] = {str(k): str(v) for k, v in group.get("PropertyMap", {}).items()}
    return found


def properties_file(explicit: str | Path | None) -> Path | None:
    """The explicit file, else Managed Flink's, else none (plain local run)."""
    if explicit:
        return Path(explicit)
    return MANAGED_FLINK_PROPERTIES if MANAGED_FLINK_PROPERTIES.is_file() else None


def on_managed_flink(properties: Path | None) -> bool:
    return properties is not None and properties.resolve() == MANAGED_FLINK_PROPERTIES


def job_settings(
    config: str | None, properties: Path | None, environ: dict[str, str] | None = None, **load_options: Any
) -> Settings:
    """Settings from ``config`` (or the group's ``config`` key) plus the group's overrides."""
    overrides: dict[str, str] = {}
    if properties is not None:
        overrides = dict(read_property_groups(properties).get(JOB_GROUP, {}))
    config = overrides.pop("config", None) or config
    return load_settings(config, environ, overrides=overrides, overrides_source=f"{properties} group {JOB_GROUP}", **load_options)
