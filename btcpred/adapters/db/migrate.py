"""Schema migrations (Alembic), run from code so every process uses the same config."""

from __future__ import annotations

import argparse
from pathlib import Path

from alembic import command
from alembic.config import Config

from btcpred.adapters.db.schema import database_url
from btcpred.common.config import PostgresConfig, load_settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(cfg: PostgresConfig) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url(cfg).replace("%", "%%"))
    return config


def upgrade(cfg: PostgresConfig, revision: str = "head") -> None:
    command.upgrade(alembic_config(cfg), revision)


def downgrade(cfg: PostgresConfig, revision: str) -> None:
    command.downgrade(alembic_config(cfg), revision)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Apply or revert database migrations")
    parser.add_argument("direction", choices=("upgrade", "downgrade"))
    parser.add_argument("revision", nargs="?", default="head")
    args = parser.parse_args(argv)
    cfg = load_settings().postgres
    (upgrade if args.direction == "upgrade" else downgrade)(cfg, args.revision)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
