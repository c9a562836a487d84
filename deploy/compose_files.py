"""What docker-compose.yml mounts, made from the one secrets source: ``.local/secrets``.

    python -m deploy.compose_files        (scripts/setup.sh runs it; idempotent)

btcpred/config/local.yaml names its passwords ``localsecret:<name>``: files under ``.local/secrets``, made
once per checkout. The no-Docker stack reads them directly; docker-compose mounts the same
directory into every app container and hands single files to Redis, PostgreSQL and Grafana as
compose secrets, so all containers share one set of credentials. This makes sure every such file
exists (a read-only mount cannot create one) and writes Redis's ACL file with hashed passwords.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from btcpred.common.config import CONFIG_DIR, LOCAL_SECRET_PREFIX, load_settings, local_secret
from deploy.redis_acl import acl_file_text

REPO = Path(__file__).resolve().parents[1]
COMPOSE_DIR = REPO / ".local" / "compose"
EXTRA_SECRETS = ("grafana-admin",)  # compose-only: Grafana's admin password


def local_secret_names() -> list[str]:
    names: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, str) and node.startswith(LOCAL_SECRET_PREFIX):
            names.append(node[len(LOCAL_SECRET_PREFIX) :])

    walk(yaml.safe_load((CONFIG_DIR / "local.yaml").read_text()))
    return [*names, *EXTRA_SECRETS]


def write() -> list[Path]:
    for name in local_secret_names():
        local_secret(name)
    settings = load_settings("local", environ={})
    COMPOSE_DIR.mkdir(parents=True, exist_ok=True)
    acl = COMPOSE_DIR / "users.acl"
    acl.write_text(acl_file_text(settings.redis, hashed=True))
    return [acl]


if __name__ == "__main__":
    for path in write():
        print(f"wrote {path.relative_to(REPO)}")
