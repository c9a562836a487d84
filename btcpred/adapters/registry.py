"""Experiment tracking and the model registry in PostgreSQL.

Status moves staging -> production -> archived. Promotion is one transaction
(the previous production model is archived in the same commit), and a partial
unique index guarantees at most one production model, so the inference service
never has two to choose from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from btcpred.adapters.db.schema import ml_experiments, model_registry
from btcpred.common import entry_point
from btcpred.common.model_artifact import ModelMetadata


class RegistryError(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    model_version: str
    artifact_uri: str
    checksum_sha256: str
    feature_names: list[str]
    status: str


def _now() -> datetime:
    return datetime.now(timezone.utc)


def log_experiment(
    engine: sa.Engine,
    experiment_id: str,
    model_kind: str,
    model_version: str | None,
    hyperparameters: dict,
    feature_names: list[str],
    data_ranges: dict,
    metrics: dict,
) -> None:
    row = dict(
        experiment_id=experiment_id,
        model_kind=model_kind,
        model_version=model_version,
        hyperparameters=hyperparameters,
        feature_names=feature_names,
        data_ranges=data_ranges,
        metrics=metrics,
        created_at=_now(),
    )
    stmt = insert(ml_experiments).values(**row)
    stmt = stmt.on_conflict_do_update(
        index_elements=["experiment_id"], set_={k: stmt.excluded[k] for k in row if k != "experiment_id"}
    )
    with engine.begin() as conn:
        conn.execute(stmt)


def register(engine: sa.Engine, meta: ModelMetadata, artifact_uri: str, experiment_id: str | None) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.insert(model_registry).values(
                model_version=meta.model_version,
                artifact_uri=artifact_uri,
                checksum_sha256=meta.sha256,
                feature_names=meta.feature_names,
                status="staging",
                experiment_id=experiment_id,
                created_at=_now(),
            )
        )


def promote(engine: sa.Engine, model_version: str) -> str | None:
    """Make ``model_version`` the production model; returns the version it replaced."""
    t = model_registry.c
    with engine.begin() as conn:
        target = conn.execute(sa.select(t.status).where(t.model_version == model_version).with_for_update()).first()
        if target is None:
            raise RegistryError(f"model version {model_version!r} is not registered")
        current = conn.execute(sa.select(t.model_version).where(t.status == "production").with_for_update()).scalar()
        if current == model_version:
            return None
        now = _now()
        if current is not None:
            conn.execute(sa.update(model_registry).where(t.model_version == current).values(status="archived", archived_at=now))
        conn.execute(
            sa.update(model_registry)
            .where(t.model_version == model_version)
            .values(status="production", promoted_at=now, archived_at=None)
        )
    return current


def _model(row) -> RegisteredModel:
    return RegisteredModel(row.model_version, row.artifact_uri, row.checksum_sha256, list(row.feature_names), row.status)


def production(engine: sa.Engine) -> RegisteredModel | None:
    t = model_registry.c
    with engine.connect() as conn:
        row = conn.execute(sa.select(model_registry).where(t.status == "production")).first()
    return _model(row) if row else None


def challengers(engine: sa.Engine, limit: int = 3) -> list[RegisteredModel]:
    """The newest staging model of each fitted kind (the version's prefix), newest first, at most
    ``limit``: what serving runs in shadow beside the production model. Persistence is no
    challenger (it is scored beside everything anyway)."""
    t = model_registry.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(model_registry).where(t.status == "staging").order_by(t.created_at.desc()).limit(50)).all()
    newest: dict[str, RegisteredModel] = {}
    for row in rows:
        kind = row.model_version.split("-")[0]
        if kind != "persistence" and kind not in newest:
            newest[kind] = _model(row)
    return list(newest.values())[:limit]


def get(engine: sa.Engine, model_version: str) -> RegisteredModel:
    with engine.connect() as conn:
        row = conn.execute(sa.select(model_registry).where(model_registry.c.model_version == model_version)).first()
    if row is None:
        raise RegistryError(f"model version {model_version!r} is not registered")
    return _model(row)


def rollback(engine: sa.Engine) -> tuple[str, str | None]:
    """Put back the model that was production before the current one (the newest archived that was
    ever promoted); returns (it, the version it replaced)."""
    t = model_registry.c
    with engine.connect() as conn:
        previous = conn.execute(
            sa.select(t.model_version)
            .where(t.status == "archived", t.promoted_at.is_not(None))
            .order_by(t.archived_at.desc())
            .limit(1)
        ).scalar()
    if previous is None:
        raise RegistryError("no earlier production model to roll back to")
    return previous, promote(engine, previous)


def list_models(engine: sa.Engine) -> list:
    """Every registered model, newest first (version, status, created, promoted, artifact)."""
    t = model_registry.c
    with engine.connect() as conn:
        return conn.execute(
            sa.select(t.model_version, t.status, t.created_at, t.promoted_at, t.artifact_uri).order_by(t.created_at.desc())
        ).all()


def list_experiments(engine: sa.Engine, kind: str | None = None, limit: int = 20) -> list:
    """The newest experiments (of ``kind``), newest first."""
    t = ml_experiments.c
    query = sa.select(t.experiment_id, t.model_kind, t.model_version, t.metrics, t.created_at).order_by(t.created_at.desc())
    if kind:
        query = query.where(t.model_kind == kind)
    with engine.connect() as conn:
        return conn.execute(query.limit(limit)).all()


def main(argv: list[str] | None = None) -> int:
    """``python -m btcpred.adapters.registry list`` / ``promote VERSION``: the operator's view of the registry."""
    import argparse

    from btcpred.adapters.db.schema import engine_for
    from btcpred.common.config import load_settings

    parser = argparse.ArgumentParser(description="Model registry")
    entry_point.add_config(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every registered model, newest first")
    promote_cmd = sub.add_parser("promote", help="make VERSION the production model (the previous one is archived)")
    promote_cmd.add_argument("version")
    args = parser.parse_args(argv)
    engine = engine_for(load_settings(args.config).postgres, "trainer")
    try:
        if args.command == "promote":
            previous = promote(engine, args.version)
            print(f"{args.version} is production" + (f"; {previous} archived" if previous else ""))
            return 0
        for row in list_models(engine):
            print(
                f"{row.model_version:45s} {row.status:10s} created {row.created_at:%Y-%m-%d %H:%M:%S} "
                f"promoted {row.promoted_at or '-'}  {row.artifact_uri}"
            )
        return 0
    except RegistryError as exc:
        print(f"error: {exc}")
        return 2
    finally:
        engine.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
