"""``btcpred``: one command for the operator.

    btcpred demo [--speed 10 ...]                 the whole pipeline on replayed real data (a checkout)
    btcpred stack start|stop|status               the local stack (a checkout)
    btcpred job list|savepoints|savepoint|stop|cancel [--jobmanager HOST:PORT]
    btcpred job submit|resume [...]               through Flink's CLI on the local cluster (a checkout)
    btcpred state show BTCUSDT                    the hot state as inference reads it, with ages
    btcpred train|report|backtest|archive|retrain|draw [...]   the training path's commands
    btcpred backfill --from ISO --to ISO          bronze -> a period's feature vectors, JSON lines (the backfill job)
    btcpred registry list|promote VERSION|rollback
    btcpred experiments list [--kind K]

``--log-level`` and ``--json-logs`` set up logging once for every command. Commands that drive
the test rig (``demo``, ``stack``, ``job submit``) need a checkout: the rig is never installed.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import click

from btcpred.common.config import load_settings


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"t": self.formatTime(record), "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(level: str, as_json: bool) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if as_json else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    for chatty in ("alembic.runtime.plugins", "botocore", "urllib3"):  # their INFO is noise to an operator
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))


def run_rig(module: str, args: list[str]) -> None:
    """Run a rig command (``stack``, ``pipeline``, ``flink_cluster``) as its documented ``python -m rig.<module>``
    in the checkout this package is installed from (an editable install); exits with its status. The rig
    is never installed: outside a checkout this is one clear error."""
    checkout = Path(__file__).resolve().parents[1]
    if not (checkout / "rig" / "__init__.py").exists():
        raise click.ClickException(f"this command drives the test rig (rig/{module}.py): run it from a checkout")
    sys.exit(subprocess.call([sys.executable, "-m", f"rig.{module}", *args], cwd=checkout))


PASS_THROUGH = {"context_settings": {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}}


@click.group()
@click.option("--log-level", default="INFO", show_default=True, type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
@click.option("--json-logs", is_flag=True, help="one JSON object per log line")
@click.option("--config", default=None, help="config file or environment name (default: $BTCPRED_ENV)")
@click.pass_context
def main(ctx: click.Context, log_level: str, json_logs: bool, config: str | None) -> None:
    """Operate the BTCUSDT 10 s predictor."""
    setup_logging(log_level, json_logs)
    ctx.obj = {"config": config}


def _config_args(ctx: click.Context) -> list[str]:
    return ["--config", ctx.obj["config"]] if ctx.obj.get("config") else []


def _run(module: str, ctx: click.Context, args: tuple[str, ...], with_config: bool = True) -> None:
    main_fn = importlib.import_module(module).main
    code = main_fn([*(_config_args(ctx) if with_config else []), *args])
    sys.exit(code or 0)


# ------------------------------------------------------------------------- the rig
@main.command(**PASS_THROUGH)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def demo(args: tuple[str, ...]) -> None:
    """The whole pipeline on replayed real data, live predictions (scripts/demo.sh's command)."""
    run_rig("pipeline", list(args))


@main.command()
@click.argument("action", type=click.Choice(["start", "stop", "status"]))
@click.option("--with-flink-cluster", is_flag=True)
@click.pass_context
def stack(ctx: click.Context, action: str, with_flink_cluster: bool) -> None:
    """The local stack: Redis, PostgreSQL, kinesalite, moto, Prometheus, Alertmanager."""
    run_rig("stack", [*_config_args(ctx), action, *(["--with-flink-cluster"] if with_flink_cluster else [])])


# ------------------------------------------------------------------------- the Flink job
@main.group()
@click.option("--jobmanager", default=None, help="HOST:PORT or URL of the JobManager's REST API (default 127.0.0.1:8081)")
@click.pass_context
def job(ctx: click.Context, jobmanager: str | None) -> None:
    """The hot-path job on a Flink cluster: list, savepoints, stop, cancel, submit, resume."""
    ctx.obj["jobmanager"] = jobmanager


def _cluster_call(fn, *args, **kwargs):
    from btcpred.adapters.flink_rest import ClusterError

    try:
        return fn(*args, **kwargs)
    except ClusterError as exc:
        raise click.ClickException(str(exc)) from None


@job.command("list")
@click.pass_context
def job_list(ctx: click.Context) -> None:
    """Every job the cluster knows, oldest first, with its state."""
    from btcpred.adapters import flink_rest

    for j in _cluster_call(flink_rest.list_jobs, ctx.obj["jobmanager"]):
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(j.start_time_ms / 1000))
        click.echo(f"{j.job_id}  {j.state:10s} {started} UTC  {j.name}")


@job.command("savepoints")
@click.pass_context
def job_savepoints(ctx: click.Context) -> None:
    """Savepoints kept under flink.savepoint_dir, newest last."""
    from btcpred.adapters import flink_rest

    for uri, size, modified in _cluster_call(flink_rest.list_savepoints, load_settings(ctx.obj["config"])):
        click.echo(f"{uri}  {size:>10d} B  {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(modified))} UTC")


@job.command("savepoint")
@click.argument("job_id")
@click.pass_context
def job_savepoint(ctx: click.Context, job_id: str) -> None:
    """A savepoint; the job keeps running."""
    from btcpred.adapters import flink_rest

    settings = load_settings(ctx.obj["config"])
    click.echo(_cluster_call(flink_rest.trigger_savepoint, settings, job_id, jobmanager=ctx.obj["jobmanager"]))


@job.command("stop")
@click.argument("job_id")
@click.pass_context
def job_stop(ctx: click.Context, job_id: str) -> None:
    """Stop with a final savepoint (printed: resume from it)."""
    from btcpred.adapters import flink_rest

    settings = load_settings(ctx.obj["config"])
    click.echo(_cluster_call(flink_rest.stop_with_savepoint, settings, job_id, jobmanager=ctx.obj["jobmanager"]))


@job.command("cancel")
@click.argument("job_id")
@click.pass_context
def job_cancel(ctx: click.Context, job_id: str) -> None:
    """Cancel without a savepoint (the last checkpoint remains)."""
    from btcpred.adapters import flink_rest

    _cluster_call(flink_rest.cancel, job_id, jobmanager=ctx.obj["jobmanager"])
    click.echo(f"{job_id}: cancelled")


@job.command("submit")
@click.option("--from-savepoint", default=None, help="a savepoint URI or 'latest'")
@click.option("--allow-non-restored-state", is_flag=True)
@click.option(
    "--start-position",
    type=click.Choice(["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"]),
    default=None,
    help="where a job without state starts reading Kinesis (default: flink.start_position, TRIM_HORIZON)",
)
@click.option("--start-at", default=None, help="ISO 8601 time with a zone, for AT_TIMESTAMP")
@click.pass_context
def job_submit(
    ctx: click.Context,
    from_savepoint: str | None,
    allow_non_restored_state: bool,
    start_position: str | None = None,
    start_at: str | None = None,
) -> None:
    """Submit the job to the local standalone cluster (Flink's CLI builds the Python graph)."""
    if start_position or start_at:  # the job's typed config reads them (flink.start_position, flink.start_at)
        if from_savepoint:
            raise click.ClickException("a savepoint holds each shard's position: --start-position applies without one")
        if (start_position == "AT_TIMESTAMP") != (start_at is not None):
            raise click.ClickException("--start-at goes with --start-position AT_TIMESTAMP, and only with it")
        os.environ["BTCPRED_FLINK__START_POSITION"] = start_position or "TRIM_HORIZON"
        if start_at:
            os.environ["BTCPRED_FLINK__START_AT"] = start_at
    if ctx.obj["jobmanager"]:
        raise click.ClickException(
            "submit drives the local cluster's Flink CLI; on Managed Flink the application is "
            "updated through CloudFormation (docs/operations.md)"
        )
    options = (["--from-savepoint", from_savepoint] if from_savepoint else []) + (
        ["--allow-non-restored-state"] if allow_non_restored_state else []
    )
    run_rig("flink_cluster", [*_config_args(ctx), "submit", *options])  # prints the job id once it runs


@job.command("resume")
@click.argument("savepoint", default="latest")
@click.pass_context
def job_resume(ctx: click.Context, savepoint: str) -> None:
    """Submit from a savepoint (default: the newest kept)."""
    ctx.invoke(job_submit, from_savepoint=savepoint, allow_non_restored_state=False)


# ------------------------------------------------------------------------- the hot state
@main.group()
def state() -> None:
    """The hot state in Redis."""


@state.command("show")
@click.argument("symbol", default="BTCUSDT")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def state_show(ctx: click.Context, symbol: str, as_json: bool) -> None:
    """Top of book, validity, last update id, trade windows, features with their ages, recent gaps and re-anchors."""
    from btcpred.adapters import redis as redis_store
    from btcpred.common.state_view import hot_state_view, render

    settings = load_settings(ctx.obj["config"])
    client = redis_store.connect(settings.redis, "inference", socket_timeout=5, decode_responses=True)
    logs = redis_store.connect(settings.redis, "reanchor", socket_timeout=5, decode_responses=True)
    try:
        view = hot_state_view(client, symbol.upper(), time.time_ns() // 1000, logs)
    except Exception as exc:  # noqa: BLE001 - any Redis error: say it, never show an empty state as the truth
        raise click.ClickException(f"Redis at {settings.redis.host}:{settings.redis.port}: {exc}") from None
    finally:
        client.close()
        logs.close()
    click.echo(json.dumps(view, indent=1) if as_json else render(view))


# ------------------------------------------------------------------------- the training path
for name, module, helptext in (
    ("train", "btcpred.batch.train", "bronze -> silver -> feature store -> candidates -> gate -> registry"),
    ("report", "btcpred.batch.report", "held-out accuracy of a model against persistence"),
    ("backtest", "btcpred.batch.backtest", "the learning loop replayed hour by hour, what it served scored"),
    ("archive", "btcpred.batch.archive", "the system's own bronze archive -> feature store, hour by hour"),
    ("retrain", "btcpred.batch.retrain", "one retraining cycle (or --every SECONDS)"),
    ("draw", "btcpred.batch.draw_predictions", "archived predictions against the realised price, to a PNG"),
    ("backfill", "btcpred.flink_jobs.backfill_job", "bronze -> a period's feature vectors as JSON lines (--from ISO --to ISO)"),
):

    def command(ctx: click.Context, args: tuple[str, ...], module: str = module) -> None:
        _run(module, ctx, args, with_config=module != "btcpred.batch.backtest")

    main.command(name, help=helptext, **PASS_THROUGH)(
        click.argument("args", nargs=-1, type=click.UNPROCESSED)(click.pass_context(command))
    )


@main.group()
def registry() -> None:
    """The model registry."""


def _engine(ctx: click.Context, role: str):
    from btcpred.adapters.db.schema import engine_for

    return engine_for(load_settings(ctx.obj["config"]).postgres, role)


@registry.command("list")
@click.pass_context
def registry_list(ctx: click.Context) -> None:
    from btcpred.adapters import registry as reg

    engine = _engine(ctx, "reporting")
    try:
        for row in reg.list_models(engine):
            click.echo(
                f"{row.model_version:45s} {row.status:10s} created {row.created_at:%Y-%m-%d %H:%M:%S} "
                f"promoted {row.promoted_at or '-'}"
            )
    finally:
        engine.dispose()


@registry.command("promote")
@click.argument("version")
@click.pass_context
def registry_promote(ctx: click.Context, version: str) -> None:
    from btcpred.adapters import registry as reg

    engine = _engine(ctx, "trainer")
    try:
        previous = reg.promote(engine, version)
    except reg.RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    click.echo(f"{version} is production" + (f"; {previous} archived" if previous else ""))


@registry.command("rollback")
@click.pass_context
def registry_rollback(ctx: click.Context) -> None:
    """Put back the model that was production before the current one."""
    from btcpred.adapters import registry as reg

    engine = _engine(ctx, "trainer")
    try:
        back, replaced = reg.rollback(engine)
    except reg.RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    click.echo(f"{back} is production again" + (f"; {replaced} archived" if replaced else ""))


@main.group()
def experiments() -> None:
    """Experiment tracking (ml_experiments)."""


@experiments.command("list")
@click.option("--kind", default=None, help="gate, retrain, online_contest, a model kind ...")
@click.option("--limit", default=20, show_default=True)
@click.pass_context
def experiments_list(ctx: click.Context, kind: str | None, limit: int) -> None:
    from btcpred.adapters import registry as reg

    engine = _engine(ctx, "reporting")
    try:
        for row in reg.list_experiments(engine, kind, limit):
            click.echo(
                f"{row.created_at:%Y-%m-%d %H:%M:%S}  {row.model_kind:15s} {row.model_version or '-':40s} "
                f"{json.dumps(row.metrics)[:160]}"
            )
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
