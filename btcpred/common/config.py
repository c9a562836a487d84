"""The one typed configuration of every process, read from ``config/<env>.yaml``.

Unknown keys are errors (a typo must not fall back to a default silently).
Layers, later wins: the file, then ``overrides`` (dotted keys such as ``redis.host``:
the Flink job's runtime properties, the same locally and on Managed Flink), then the
environment as ``BTCPRED_<SECTION>__<KEY>`` (e.g. ``BTCPRED_REDIS__PORT=6380``).

Secrets never live in the repo: they come from the environment or are references, in the
file, an override or a variable: ``secretsmanager:<secret id>`` (AWS Secrets Manager; Managed
Flink, which cannot be given environment variables), resolved when the process first reads
that secret, or ``localsecret:<name>`` (a random value made once per checkout under
``.local/secrets``). Lazily, because every process loads the same file and each may read only
its own secrets: the Flink job's role grants its Redis user's secret and nothing else
(``tests/unit/deploy/test_template_secrets.py`` holds the template to that).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from btcpred.udfs.event_rules import DEFAULT_MAX_LEAD_US
from btcpred.udfs.long_context import BUCKET_US

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
ENV_PREFIX = "BTCPRED_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


RedisRole = Literal["hotpath", "inference", "reanchor", "trainer"]
REDIS_ROLES: tuple[RedisRole, ...] = ("hotpath", "inference", "reanchor", "trainer")


class RedisConfig(_Section):
    """Where the hot state lives and who may touch what.

    ``password`` is the admin's (Redis's ``default`` user: the local stack, tests,
    operators); no service runs as admin. ``users`` holds one ACL user per service
    role, named after the role, with least privilege (deploy/redis_acl.py): the Flink
    job writes the hot state, inference only reads it (and appends its predictions),
    the re-anchor service reads gaps and holds its lock, the retraining job reads the online
    contest's decisions to record them. The REST poller has no user.
    """

    host: str = "127.0.0.1"
    port: int = Field(6379, gt=0, lt=65536)
    password: SecretStr | None = None
    users: dict[RedisRole, SecretStr] = Field(default_factory=dict)
    tls: bool = False  # ElastiCache with in-transit encryption
    cluster: bool = False  # Redis Cluster (ElastiCache cluster mode): keys carry {symbol} hash tags

    @model_validator(mode="after")
    def _every_role_or_none(self) -> "RedisConfig":
        missing = [r for r in REDIS_ROLES if r not in self.users]
        if self.users and missing:
            raise ValueError(f"users: no password for {', '.join(missing)} (give every role one, or none)")
        return self

    def credentials(self, role: RedisRole | None) -> tuple[str | None, str | None]:
        """(username, password) of ``role``; None: the admin. Without ACL users every role is the default user."""
        if role is not None and self.users:
            return role, self.users[role].get_secret_value()
        return None, self.password.get_secret_value() if self.password else None

    def url_for(self, role: RedisRole | None) -> str:
        username, password = self.credentials(role)
        auth = f"{quote(username or '', safe='')}:{quote(password, safe='')}@" if password else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}{self.host}:{self.port}/0"

    @property
    def url(self) -> str:
        """The admin's URL (tests, local tooling); services use ``url_for(role)``."""
        return self.url_for(None)


class AwsEndpointConfig(_Section):
    """An AWS API; ``endpoint`` set means an emulator on loopback, unset means real AWS."""

    endpoint: str | None = None
    region: str = "us-east-1"
    access_key_id: SecretStr = SecretStr("local")
    secret_access_key: SecretStr = SecretStr("local")


class KinesisConfig(AwsEndpointConfig):
    stream: str = "btcusdt-market-data"
    shards: int = Field(1, gt=0)


class S3Config(AwsEndpointConfig):
    bucket: str = "btcpred-lake"


PgRole = Literal["loader", "trainer", "reporting"]


class PostgresConfig(_Section):
    """``user`` owns the schema and runs the migrations; every other process logs in as a
    role with only what it needs (``<user>_<role>``; grants in migration 0002): the loader
    writes the feature store and quality metrics, the trainer reads features and writes
    experiments and the registry, reporting (and inference) only read. None is a superuser.
    """

    host: str = "127.0.0.1"
    port: int = Field(55432, gt=0, lt=65536)
    database: str = "btcpred"
    user: str = "btcpred"
    password: SecretStr = SecretStr("")
    roles: dict[PgRole, SecretStr] = Field(default_factory=dict)  # role -> password; empty: all run as ``user``
    schema_name: str | None = Field(None, pattern=r"^[a-z_][a-z0-9_]*$")  # search_path; None: the user's default
    # TLS: dev and prod verify the server's certificate and name against the RDS CA bundle the image
    # carries (deploy/docker/Dockerfile); locally the loopback server has no certificate
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    sslrootcert: str | None = None
    # whether a process brings the schema to head (as its owner) before it works: locally yes (one
    # machine, one user); in dev and prod the one-shot migration task does (deploy/managed_flink/
    # template.yaml MigrateTaskDefinition) and no long-running process holds the owner's secret
    apply_migrations: bool = True

    def role_name(self, role: PgRole) -> str:
        return f"{self.user}_{role}"

    def credentials(self, role: PgRole | None) -> tuple[str, str]:
        """(user, password) of ``role``; None: the owner (migrations, tests)."""
        if role is not None and self.roles:
            if role not in self.roles:
                raise ConfigError(f"postgres.roles: no password for {role}")
            return self.role_name(role), self.roles[role].get_secret_value()
        return self.user, self.password.get_secret_value()


class ExchangeConfig(_Section):
    """Where the ingestor connects: the simulator locally, Binance by config."""

    ws_url: str = "ws://127.0.0.1:8765"
    rest_url: str = "http://127.0.0.1:8765"
    symbol: str = "BTCUSDT"  # the symbol predicted and served
    # The market served, named as the recordings and the artifacts name venues: a model serves it only
    # with gate evidence from it (ModelMetadata.proven_on); otherwise persistence does, the model in shadow.
    market: str = "binance.com-spot"
    # Every symbol the hot path carries, ``symbol`` among them: the ingestor subscribes to all of
    # them, the job keeps one key each, the re-anchor service and the archives cover each. Empty:
    # ``symbol`` alone. Only ``symbol`` has a model; the others share the job's cores (issue 19).
    symbols: tuple[str, ...] = ()
    streams: tuple[str, ...] = ("trade", "bestBidAsk", "depth")
    api_key: SecretStr | None = None  # Binance's SBE streams require an Ed25519 API key
    snapshot_limit: int = Field(1000, gt=0, le=5000)
    # The perpetual future whose best bid/ask leads the spot symbol (cross-market features): its
    # JSON stream's base URL (wss://fstream.binance.com for USD-M) and symbol; None: spot only.
    perp_ws_url: str | None = None
    perp_symbol: str | None = None  # default: the spot symbol (USD-M BTCUSDT leads spot BTCUSDT)
    # How far an event's exchange time may run ahead of its receipt on our clock before the event is
    # refused (a dead letter at the ingestor and in the job: ``udfs.event_rules``). NTP keeps the two
    # within ~1 s; one event hours ahead would move the watermark and every boundary with it.
    max_event_time_lead_ms: int = Field(DEFAULT_MAX_LEAD_US // 1000, gt=0)

    @field_validator("symbols", "streams", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        """An environment variable or ``--set`` gives a list as ``A,B``."""
        return tuple(v.strip() for v in value.split(",") if v.strip()) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _symbol_is_carried(self) -> "ExchangeConfig":
        if self.symbols and self.symbol not in self.symbols:
            raise ValueError(f"symbols {list(self.symbols)} leave out symbol {self.symbol}, the one served")
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError(f"symbols {list(self.symbols)} name one twice")
        return self

    @property
    def carried(self) -> tuple[str, ...]:
        """The symbols the hot path carries, ``symbol`` first."""
        return (self.symbol, *(s for s in self.symbols if s != self.symbol))


class IngestorConfig(_Section):
    batch_max_records: int = Field(500, gt=0, le=500)
    batch_linger_ms: int = Field(10, ge=0)
    max_frames_per_record: int = Field(200, gt=0, le=65535)  # aggregation, as the Kinesis Producer Library does
    max_put_attempts: int = Field(8, gt=0)
    # and at least this long backing off before a batch is dead-lettered (its diffs lost: a gap)
    min_put_retry_s: float = Field(10.0, ge=0)
    reconnect_max_backoff_s: float = Field(30.0, gt=0)
    # A WebSocket message larger than this closes the connection unread (then a reconnect, a gap and a
    # re-anchor) rather than growing the process: a 100 ms depth diff of BTCUSDT is a few kB, rarely 50.
    max_message_bytes: int = Field(4 * 1024 * 1024, gt=0)
    rotate_after_s: float = Field(23.5 * 3600, gt=0)  # Binance closes connections at 24 h
    dead_letter_path: str = ".local/dead-letter/ingest.jsonl"
    # the spill is bounded: this many files of about this size (``btcpred/ingest/dead_letters.py``)
    dead_letter_max_bytes: int = Field(64 * 1024 * 1024, gt=0)
    dead_letter_files: int = Field(8, gt=0)
    metrics_port: int = Field(9101, gt=0, lt=65536)


class FlinkJobConfig(_Section):
    parallelism: int = Field(1, gt=0)
    # the boundary grid features are cut on; a multiple of the context's 500 ms buckets, so the
    # 30 s and 5 min windows end exactly at each boundary (btcpred/udfs/long_context.py)
    emit_interval_ms: int = Field(500, gt=0, multiple_of=BUCKET_US // 1000)
    out_of_orderness_ms: int = Field(200, ge=0)
    idleness_ms: int = Field(5000, gt=0)
    checkpoint_interval_ms: int = Field(10_000, gt=0)
    # a checkpoint slower than this is aborted (Flink's default is 10 min: a stuck one held the next for
    # that long); this many failed in a row fail the job over instead of retrying for ever
    checkpoint_timeout_ms: int = Field(120_000, gt=0)
    tolerable_checkpoint_failures: int = Field(3, ge=0)
    # file path (relative to the repo) or URI (s3://); None leaves the storage to the cluster (Managed Flink)
    checkpoint_dir: str | None = None
    savepoint_dir: str | None = None
    state_backend: Literal["rocksdb", "hashmap"] = "rocksdb"
    # ship the connector jar with the job; false where the cluster has it on its classpath already
    ship_connector_jar: bool = True
    incremental_checkpoints: bool = True
    restart_attempts: int = Field(1000, ge=0)
    restart_delay_ms: int = Field(2000, ge=0)
    getrecords_interval_ms: int = Field(50, gt=0)
    bundle_size: int = Field(200, gt=0)
    bundle_time_ms: int = Field(10, gt=0)
    buffer_timeout_ms: int = Field(5, ge=0)  # network buffer flush; Flink's default 100 ms dominates freshness
    metrics_reporter_ports: str = "9250-9260"  # Flink's Prometheus reporter; a range: JM and TM may share a host
    execution_mode: Literal["process", "thread"] = "process"  # PyFlink worker: separate process or embedded in the JVM
    # the local mini cluster's JVM heap, fixed and resident from the start as a TaskManager's is sized
    # (-Xms = -Xmx, pre-touched); a cluster sizes its own. The soak's job used ~110 MB of it live.
    mini_cluster_heap_mb: int = Field(512, gt=0)
    # the native allocator of the Flink JVMs started locally (mini cluster, standalone cluster): RocksDB's
    # memory fragments under glibc malloc and the JVM's resident size creeps up (FLINK-19125; Flink's
    # own images preload jemalloc since 1.12)
    allocator: Literal["jemalloc", "glibc"] = "jemalloc"
    # where a job started without state reads each shard from (a savepoint's positions win): the oldest
    # record kept (TRIM_HORIZON: replays the retention, 48 h in the template), the newest (LATEST: the
    # book re-anchors from a snapshot, the trade windows start empty) or ``start_at``
    start_position: Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"] = "TRIM_HORIZON"
    start_at: datetime | None = None

    @model_validator(mode="after")
    def _start_at_with_its_position(self) -> FlinkJobConfig:
        if (self.start_position == "AT_TIMESTAMP") != (self.start_at is not None):
            raise ValueError("flink.start_at is given exactly when flink.start_position is AT_TIMESTAMP")
        if self.start_at is not None and self.start_at.tzinfo is None:
            raise ValueError("flink.start_at needs a time zone (e.g. 2026-12-07T10:00:00Z)")
        return self


class ReanchorConfig(_Section):
    """The re-anchor service: gap records in, REST snapshots in band out."""

    consumer_group: str = "reanchor"
    lock_ttl_ms: int = Field(30_000, gt=0)  # reanchor:<symbol> expires if the service dies mid-way
    attempt_timeout_s: float = Field(10.0, gt=0)  # wait for the job's book to turn valid per snapshot
    max_attempts: int = Field(5, gt=0)
    verify_interval_s: float = Field(60.0, gt=0)  # drift check: a snapshot in band once a minute
    # a book invalid or absent this long re-anchors without a gap record (and /health turns red)
    heal_after_s: float = Field(10.0, gt=0)
    heal_check_interval_s: float = Field(1.0, gt=0)
    weight_budget_per_minute: int = Field(3000, gt=0, le=6000)  # our share of Binance's 6,000
    metrics_port: int = Field(9102, gt=0, lt=65536)


class PollerConfig(_Section):
    """The 1-minute REST poller that archives snapshots and aggregate trades to bronze."""

    interval_s: float = Field(60.0, gt=0)
    depth_limit: int = Field(1000, gt=0, le=5000)
    weight_budget_per_minute: int = Field(1000, gt=0, le=6000)
    metrics_port: int = Field(9103, gt=0, lt=65536)


class InferenceConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, gt=0, lt=65536)
    # Prometheus's /metrics on an internal port (``Settings.metrics_host``), never on the public API:
    # the counters tell an outsider the model, its failures and the load
    metrics_port: int = Field(9105, gt=0, lt=65536)
    cadence_ms: int = Field(2000, gt=0)
    max_feature_age_ms: int = Field(5000, gt=0)
    history_size: int = Field(1000, gt=0)
    # "registry": serve the production model of the Postgres registry (fallback while none loads);
    # "file": serve the artifact directory ``model_path`` (reloaded when its checksum changes);
    # "persistence": serve the persistence baseline as the model (no registry needed)
    model_source: Literal["registry", "file", "persistence"] = "registry"
    model_path: str | None = None
    model_poll_s: float = Field(10.0, gt=0)  # registry check interval, off the prediction cycle
    warmup_runs: int = Field(50, ge=1)
    max_feature_z: float = Field(10.0, gt=0)  # inputs further from the training mean (in sd) fall back
    # a recursive-least-squares ridge learning from every realized label on this market, run as a
    # challenger (btcpred/inference/online_model.py); serves only if the online contest promotes it
    online_ridge: bool = True
    online_forgetting: float = Field(0.999, gt=0.9, le=1.0)
    max_stream_subscribers: int = Field(100, ge=1)  # SSE clients at once; one more gets 503
    # connections (and requests in flight) the server holds at once; past it uvicorn answers 503,
    # so a flood of clients costs a refusal each, not memory (the SSE cap is below it)
    max_connections: int = Field(1000, ge=2)
    # when set, every route but /health, /ready and /metrics needs "Authorization: Bearer <token>"
    # (or ?access_token=<token>: a browser's EventSource cannot set headers)
    api_token: SecretStr | None = None


class PrometheusConfig(_Section):
    """The local stack's Prometheus server (scrapes every process; alert rules in deploy/prometheus/rules),
    its Alertmanager, and the webhook receiver Alertmanager notifies locally (deploy/alert_sink.py)."""

    port: int = Field(9090, gt=0, lt=65536)
    scrape_interval_s: int = Field(5, gt=0)
    alertmanager_port: int = Field(9093, gt=0, lt=65536)
    alert_sink_port: int = Field(9095, gt=0, lt=65536)


def aws_client_kwargs(cfg: AwsEndpointConfig) -> dict[str, Any]:
    """boto3 client arguments; explicit keys only when an emulator endpoint is configured."""
    kwargs: dict[str, Any] = {"region_name": cfg.region}
    if cfg.endpoint:
        kwargs.update(
            endpoint_url=cfg.endpoint,
            aws_access_key_id=cfg.access_key_id.get_secret_value(),
            aws_secret_access_key=cfg.secret_access_key.get_secret_value(),
        )
    return kwargs


class Settings(_Section):
    env: str
    # where every process binds its /health, /ready and /metrics: loopback on a shared host; in
    # containers 0.0.0.0, where the compose network is the boundary and no service publishes them
    metrics_host: str = "127.0.0.1"
    # where training, retraining, report and backtest runs write their reports (a folder each);
    # relative to the working directory: the checkout's ignored .local, the image's writable one
    reports_dir: str = ".local/reports"
    redis: RedisConfig = RedisConfig()
    kinesis: KinesisConfig = KinesisConfig()
    s3: S3Config = S3Config()
    postgres: PostgresConfig = PostgresConfig()
    exchange: ExchangeConfig = ExchangeConfig()
    ingestor: IngestorConfig = IngestorConfig()
    flink: FlinkJobConfig = FlinkJobConfig()
    reanchor: ReanchorConfig = ReanchorConfig()
    poller: PollerConfig = PollerConfig()
    inference: InferenceConfig = InferenceConfig()
    prometheus: PrometheusConfig = PrometheusConfig()


class ConfigError(RuntimeError):
    pass


SECRET_REF_PREFIX = "secretsmanager:"
LOCAL_SECRET_PREFIX = "localsecret:"
LOCAL_SECRETS_DIR = CONFIG_DIR.parents[1] / ".local" / "secrets"  # the checkout's (editable install); written by scripts/setup.sh
SecretResolver = Callable[[str], str]


def _set_path(raw: dict[str, Any], path: list[str], value: str, source: str) -> None:
    node = raw
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: {'.'.join(path)}: {part} is a value, not a section")
        node = child
    node[path[-1]] = value


def _secretsmanager_value(secret_id: str) -> str:
    import boto3

    return boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]


def local_secret(name: str, directory: Path | None = None) -> str:
    """A random secret made once per checkout (``.local/secrets/<name>``, mode 600, git-ignored).

    Local config names its passwords ``localsecret:<name>``: real credentials that
    never enter the repo, with nothing for a newcomer to set up.
    """
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad local secret name {name!r}")
    path = (directory or LOCAL_SECRETS_DIR) / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(24))
        os.replace(path.with_suffix(".tmp"), path)  # two processes racing both end with one value
    return path.read_text().strip()


class SecretRef(SecretStr):
    """A ``secretsmanager:`` reference, read from Secrets Manager the first time the value is used.

    A process that never reads a secret never asks for it, so no role needs rights on secrets
    of other processes. A failed read raises ConfigError naming the key, never a value.
    """

    def __init__(self, secret_id: str, key: str, source: str, resolver: SecretResolver) -> None:
        self.secret_id, self.key, self.source = secret_id, key, source
        self._resolver = resolver
        self._value: str | None = None
        self._secret_value = "<unresolved>"  # what pydantic's display and len() look at; never the value

    def get_secret_value(self) -> str:
        if self._value is None:
            try:
                self._value = self._resolver(self.secret_id)
            except Exception as exc:  # noqa: BLE001 - any failure: name the key, never the value
                raise ConfigError(
                    f"{self.source}: {self.key}: secret {self.secret_id!r} could not be read ({type(exc).__name__})"
                ) from None
        return self._value


def _resolve(value: str, key: str, source: str, resolver: SecretResolver) -> str | SecretRef:
    if value.startswith(LOCAL_SECRET_PREFIX):
        return local_secret(value[len(LOCAL_SECRET_PREFIX) :])
    if not value.startswith(SECRET_REF_PREFIX):
        return value
    return SecretRef(value[len(SECRET_REF_PREFIX) :], key, source, resolver)


def _resolve_tree(node: dict[str, Any], path: list[str], source: str, resolver: SecretResolver) -> None:
    """Secret references in the file itself (``localsecret:`` in local.yaml, ``secretsmanager:`` in prod.yaml)."""
    for key, value in node.items():
        if isinstance(value, dict):
            _resolve_tree(value, [*path, str(key)], source, resolver)
        elif isinstance(value, str):
            node[key] = _resolve(value, ".".join([*path, str(key)]), source, resolver)


def load_settings(
    path: str | Path | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, str] | None = None,
    overrides_source: str = "overrides",
    secret_resolver: SecretResolver = _secretsmanager_value,
) -> Settings:
    """Load ``path`` (default: ``config/$BTCPRED_ENV.yaml``, env ``local``), then ``overrides``, then env.

    A ``path`` without a directory or suffix names an environment (``prod`` -> ``btcpred/config/prod.yaml``).
    Errors name the key and where its value came from.
    """
    environ = dict(os.environ if environ is None else environ)
    if path is None:
        path = CONFIG_DIR / f"{environ.get('BTCPRED_ENV', 'local')}.yaml"
    path = Path(path)
    if path.suffix == "" and len(path.parts) == 1:
        path = CONFIG_DIR / f"{path}.yaml"
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    _resolve_tree(raw, [], str(path), secret_resolver)
    origin: dict[tuple[str, ...], str] = {}
    for key, value in (overrides or {}).items():
        parts = key.split(".")
        _set_path(raw, parts, _resolve(str(value), key, overrides_source, secret_resolver), overrides_source)
        origin[tuple(parts)] = overrides_source
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "BTCPRED_ENV":
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        _set_path(raw, parts, _resolve(value, name, "environment", secret_resolver), "environment")
        origin[tuple(parts)] = f"environment {name}"
    try:
        return Settings(**raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
            + (f" (from {origin[tuple(map(str, e['loc']))]})" if tuple(map(str, e["loc"])) in origin else "")
            for e in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None
