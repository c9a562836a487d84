"""Start, stop and check the local stack as plain processes on loopback (no Docker).

    python -m rig.stack start [--with-flink-cluster]
    python -m rig.stack status
    python -m rig.stack stop

Services: Redis (Debian redis-server), PostgreSQL (Debian postgresql), the
Kinesis API emulator (kinesalite from npm) behind a TCP proxy on the configured
endpoint (so the fault suite can cut the endpoint without the in-memory emulator
losing its streams; ``rig/tcp_proxy.py``), the S3 API emulator (moto server)
and optionally the standalone Flink cluster shipped in the pyflink package
(web UI on 8081), and Prometheus (Debian prometheus, scraping every process, with the
alert rules of deploy/prometheus/rules). Redis runs with ACL users per service role
(deploy/redis_acl.py); passwords are made once per checkout in .local/secrets.
Starting is idempotent: a service already answering on its
port is left alone; a port held by something else is a clear error.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

from btcpred.batch.buckets import ensure_buckets
from btcpred.common import entry_point
from btcpred.common.config import Settings, load_settings
from btcpred.flink_jobs import state_storage
from btcpred.flink_jobs.state_storage import flink_home  # (flink_cluster and fault_suite call stack.flink_home)
from deploy import redis_acl
from deploy.services import FLINK_SCRAPE_JOB, scrape_jobs

REPO = Path(__file__).resolve().parents[1]

STATE = REPO / ".local"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
KINESALITE = REPO / "rig" / "kinesalite" / "node_modules" / "kinesalite" / "cli.js"
KINESALITE_RUNNER = REPO / "rig" / "kinesalite" / "run.js"  # its CLI, surviving aborted requests
FLINK_CONF_TEMPLATE = REPO / "deploy" / "flink" / "conf" / "config.yaml"


class StackError(RuntimeError):
    pass


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status < 500
    except (OSError, ValueError, http.client.HTTPException):
        return False


def wait_for(what: str, check: Callable[[], bool], timeout_s: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    tail = ""
    if log and log.exists():
        tail = "\n--- last lines of " + str(log) + " ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    raise StackError(f"{what} did not become healthy within {timeout_s:.0f}s{tail}")


_DETACHED: list[subprocess.Popen] = []


def spawn(name: str, cmd: list[str], env: dict[str, str] | None = None, user: str | None = None) -> Path:
    STATE.mkdir(exist_ok=True)
    log = STATE / f"{name}.log"
    pidfile = STATE / f"{name}.pid"
    if user and os.geteuid() == 0:
        cmd = ["runuser", "-u", user, "--", *cmd]
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            cwd=REPO,
        )
    pidfile.write_text(str(proc.pid))
    _DETACHED.append(proc)  # a service outlives this call (and this process); keep the handle, not a warning
    return log


def listeners(pid: int) -> set[int]:
    """Ports a process and its descendants listen on (a server under runuser or a launcher is a child)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return set()
    ports = set()
    for proc in procs:
        try:
            ports |= {c.laddr.port for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
        except psutil.Error:
            pass
    return ports


def owned(pidname: str, port: int) -> bool:
    """Whether the server on ``port`` is the one this checkout's stack started (its pidfile's process tree)."""
    pidfile = STATE / f"{pidname}.pid"
    try:
        pid = int(pidfile.read_text())
    except (OSError, ValueError, http.client.HTTPException):
        return False
    return port in listeners(pid)


def holder(port: int) -> str:
    """Who listens on ``port``, for the one sentence that refuses it."""
    try:
        for conn in psutil.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
                proc = psutil.Process(conn.pid)
                return f"{proc.name()} (pid {conn.pid}, {' '.join(proc.cmdline()[:3])[:80]})"
    except psutil.Error:
        pass
    return "another program"


@dataclass
class Service:
    name: str
    port: int
    healthy: Callable[[], bool]
    start: Callable[[], Path | None]
    stop: Callable[[], None]
    pidname: str | None = None  # its pidfile under .local: the server is ours only if that process holds the port
    setting: str = "its port"  # the config key that moves it

    def running(self) -> bool:
        """Healthy, and this checkout's: a stranger's server that answers on the port is not."""
        return self.healthy() and (self.pidname is None or owned(self.pidname, self.port))

    def refusal(self) -> StackError:
        return StackError(
            f"{self.name}: port {self.port} is held by {holder(self.port)}, not by this checkout's stack; "
            f"stop it, or move {self.setting} in btcpred/config/local.yaml"
        )

    def ensure_started(self, timeout_s: float = 30) -> str:
        if self.running():
            return "already running"
        if port_open(self.port):
            raise self.refusal()
        log = self.start()
        wait_for(self.name, self.healthy, timeout_s, log)
        return "started"


def kill_pidfile(name: str) -> None:
    pidfile = STATE / f"{name}.pid"
    if not pidfile.exists():
        return
    try:
        pid = int(pidfile.read_text())
        os.killpg(pid, 15)
    except (ValueError, ProcessLookupError, PermissionError):
        pass
    pidfile.unlink(missing_ok=True)


# ------------------------------------------------------------------------- services
def _binary_and_data(binary: str, package: str, data_dir: str) -> tuple[str, Path]:
    """A Debian server's executable (a clear error if setup has not run) and its data folder under .local."""
    found = shutil.which(binary)
    if not found:
        raise StackError(f"{binary} not found: run scripts/setup.sh (apt-get install {package})")
    data = STATE / data_dir
    data.mkdir(parents=True, exist_ok=True)
    return found, data


def redis_service(s: Settings) -> Service:
    port = s.redis.port

    def healthy() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def start() -> Path:
        binary, data = _binary_and_data("redis-server", "redis-server", "redis")
        acl = data / "users.acl"  # the admin and one least-privilege user per role, passwords from .local/secrets
        acl.write_text(redis_acl.acl_file_text(s.redis))
        acl.chmod(0o600)
        return spawn(
            "redis",
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(data),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--aclfile",
                str(acl),
            ],
        )

    def stop() -> None:
        kill_pidfile("redis")

    return Service("redis", port, healthy, start, stop, "redis", "redis.port")


def postgres_home(run_as: str | None, can_enter: Callable[[str, Path], bool]) -> Path:
    """Where the PostgreSQL data and socket folders live: under .local, unless the server's user
    (``postgres`` when the stack runs as root) cannot walk to it, as in a checkout under root's
    home (mode 700); then a folder of this checkout's own under /var/tmp, which it can."""
    if run_as is None or can_enter(run_as, STATE):
        return STATE
    return Path("/var/tmp") / f"btcpred-{hashlib.sha256(str(REPO).encode()).hexdigest()[:12]}"


def _user_can_enter(user: str, folder: Path) -> bool:
    """Whether ``user`` can traverse every parent of ``folder`` (asked as that user)."""
    probe = folder if folder.exists() else folder.parent
    return subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(probe)], capture_output=True).returncode == 0


def postgres_service(s: Settings) -> Service:
    pg = s.postgres
    user = "postgres" if os.geteuid() == 0 else None
    home = postgres_home(user, _user_can_enter)
    data = home / "postgres"

    def healthy() -> bool:
        return (
            subprocess.run([str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(pg.port)], capture_output=True).returncode
            == 0
        )

    def start() -> Path:
        if not (PG_BIN / "initdb").exists():
            raise StackError(f"{PG_BIN}/initdb not found: run scripts/setup.sh (apt-get install postgresql)")
        if home != STATE:
            print(
                f"note: {user} cannot enter {STATE} (a folder only root may walk into): the database lives in {home}", flush=True
            )
            home.mkdir(mode=0o755, exist_ok=True)
        if not (data / "PG_VERSION").exists():
            data.mkdir(parents=True, exist_ok=True)
            if user:
                shutil.chown(data, user, user)
            # TCP logins need a password (scram); only the stack, on the Unix socket, is trusted (as the superuser)
            cmd = [
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
            ]
            run_as = ["runuser", "-u", user, "--", *cmd] if user else cmd
            subprocess.run(run_as, check=True, capture_output=True)
        sock_dir = home / "pgsock"
        sock_dir.mkdir(exist_ok=True)
        if user:
            shutil.chown(sock_dir, user, user)
        log = spawn(
            "postgres",
            [
                str(PG_BIN / "postgres"),
                "-D",
                str(data),
                "-p",
                str(pg.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={sock_dir}",
            ],
            user=user,
        )
        wait_for("postgres", healthy, 30, log)
        _ensure_database(pg, sock_dir)
        return log

    def stop() -> None:
        kill_pidfile("postgres")

    return Service("postgres", pg.port, healthy, start, stop, "postgres", "postgres.port")


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ensure_database(pg, sock_dir: Path) -> None:
    """The owner (migrations), the database, and one login per run-time role, none a superuser.

    Passwords are set on every start (they come from .local/secrets) and go to psql on
    stdin, never on a command line.
    """
    psql = ["psql", "-h", str(sock_dir), "-p", str(pg.port), "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-qtA"]
    logins = [(pg.user, pg.password.get_secret_value())] + [
        (pg.role_name(r), pw.get_secret_value()) for r, pw in pg.roles.items()
    ]
    sql = []
    for name, password in logins:
        sql.append(f"SELECT 'CREATE ROLE {name}' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') \\gexec")
        sql.append(f"ALTER ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {_sql_literal(password)};")
    sql.append(
        f"SELECT 'CREATE DATABASE {pg.database} OWNER {pg.user}' WHERE NOT EXISTS "
        f"(SELECT FROM pg_database WHERE datname = '{pg.database}') \\gexec"
    )
    sql.append(f"REVOKE ALL ON DATABASE {pg.database} FROM PUBLIC;")
    for name, _ in logins:
        sql.append(f"GRANT CONNECT, TEMPORARY ON DATABASE {pg.database} TO {name};")  # the loader stages COPYs in temp tables
    out = subprocess.run(psql, input="\n".join(sql) + "\n", capture_output=True, text=True)
    if out.returncode != 0:
        raise StackError(f"postgres roles: {out.stderr.strip()}")


def _endpoint_port(endpoint: str | None, what: str) -> int:
    if not endpoint:
        raise StackError(f"{what}: no endpoint configured; the local stack only runs emulators")
    return int(endpoint.rsplit(":", 1)[1].split("/")[0])


def _kinesis_answers(port: int) -> bool:
    # kinesalite answers any POST; a 400 with an AWS error body means it is up
    try:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/",
            data=b"{}",
            method="POST",
            headers={"X-Amz-Target": "Kinesis_20131202.ListStreams", "Content-Type": "application/x-amz-json-1.1"},
        )
        urllib.request.urlopen(req, timeout=1)
        return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError, http.client.HTTPException):
        return False


def kinesis_ports(s: Settings) -> tuple[int, int, int]:
    """(endpoint the clients use = the proxy, kinesalite behind it, the proxy's control port)."""
    port = _endpoint_port(s.kinesis.endpoint, "kinesis")
    return port, port + 1, port + 2


def kinesis_service(s: Settings) -> Service:
    _, backend, _ = kinesis_ports(s)

    def start() -> Path:
        node = shutil.which("node")
        if not node:
            raise StackError("node not found: Node.js is a prerequisite (kinesalite runs on it)")
        if not KINESALITE.exists():
            raise StackError(f"{KINESALITE} missing: run scripts/setup.sh (npm ci in rig/kinesalite)")
        return spawn(
            "kinesalite",
            [
                node,
                str(KINESALITE_RUNNER),
                "--port",
                str(backend),
                "--host",
                "127.0.0.1",
                "--shardLimit",
                "1000",
                "--createStreamMs",
                "50",
                "--deleteStreamMs",
                "50",
                "--updateStreamMs",
                "50",
            ],
        )

    return Service(
        "kinesis (kinesalite)",
        backend,
        lambda: _kinesis_answers(backend),
        start,
        lambda: kill_pidfile("kinesalite"),
        "kinesalite",
        "kinesis.endpoint (its port + 1)",
    )


def kinesis_proxy_service(s: Settings) -> Service:
    """The configured Kinesis endpoint: a proxy to kinesalite that the fault suite can take down."""
    front, backend, control = kinesis_ports(s)

    def start() -> Path:
        return spawn(
            "kinesis-proxy",
            [sys.executable, "-m", "rig.tcp_proxy", "--listen", str(front), "--target", str(backend), "--control", str(control)],
        )

    return Service(
        "kinesis endpoint (proxy)",
        front,
        lambda: _kinesis_answers(front),
        start,
        lambda: kill_pidfile("kinesis-proxy"),
        "kinesis-proxy",
        "kinesis.endpoint",
    )


def s3_service(s: Settings) -> Service:
    port = _endpoint_port(s.s3.endpoint, "s3")

    def start() -> Path:
        moto = Path(sys.executable).parent / "moto_server"
        if not moto.exists():
            raise StackError("moto_server missing: run scripts/setup.sh (pip install moto[server])")
        return spawn("moto", [str(moto), "-H", "127.0.0.1", "-p", str(port)])

    return Service(
        "s3 (moto)",
        port,
        lambda: http_ok(f"http://127.0.0.1:{port}/moto-api/"),
        start,
        lambda: kill_pidfile("moto"),
        "moto",
        "s3.endpoint",
    )


def flink_lib_dir() -> Path:
    """pyflink's lib jars plus the connector uber-jar, as links: the cluster's own classpath.

    On the cluster's classpath the connector is loaded once per TaskManager; shipped with
    every submission it is loaded into each job's class loader, and the AWS SDK threads
    it starts keep those alive: a few resubmissions exhaust the TaskManager's metaspace.
    """
    return state_storage.linked(STATE / "flink" / "lib", [*(flink_home() / "lib").glob("*.jar"), state_storage.CONNECTOR_JAR])


def flink_env(settings: Settings | None = None) -> dict[str, str]:
    """Environment of the standalone cluster's scripts: our conf, log, pid and plugins dirs (pip package untouched)."""
    settings = settings or load_settings()
    conf_dir = STATE / "flink" / "conf"
    conf_dir.mkdir(parents=True, exist_ok=True)
    home = flink_home()
    for name in ("log4j.properties", "log4j-console.properties", "log4j-cli.properties", "logback.xml", "masters", "workers"):
        src = home / "conf" / name
        if src.exists() and not (conf_dir / name).exists():
            shutil.copy(src, conf_dir / name)
    # the template plus what a cluster must know at start: S3 filesystem keys, state backend, locations
    extra = {**state_storage.s3_filesystem_options(settings.s3), **state_storage.state_options(settings.flink)}
    conf = FLINK_CONF_TEMPLATE.read_text() + "".join(f"{k}: {v}\n" for k, v in sorted(extra.items()))
    (conf_dir / "config.yaml").write_text(conf)
    (STATE / "flink" / "log").mkdir(parents=True, exist_ok=True)
    return {
        "FLINK_CONF_DIR": str(conf_dir),
        "FLINK_LIB_DIR": str(flink_lib_dir()),
        "FLINK_PLUGINS_DIR": str(state_storage.plugins_dir()),
        "FLINK_LOG_DIR": str(STATE / "flink" / "log"),
        "FLINK_PID_DIR": str(STATE / "flink"),
        "AWS_CBOR_DISABLE": "true",
        **state_storage.allocator_environment(settings.flink, os.environ, state_storage.jemalloc_installed()),
    }


def cluster_processes() -> list[psutil.Process]:
    """The standalone cluster's JVMs (their pidfiles under FLINK_PID_DIR), everything under them, and
    every process that carries this checkout's FLINK_PID_DIR: a Python worker whose TaskManager was
    killed (a fault test does) lives on under init, out of any tree."""
    found: dict[int, psutil.Process] = {}
    for pidfile in (STATE / "flink").glob("*.pid"):
        for line in pidfile.read_text().split():
            try:
                jvm = psutil.Process(int(line))
                found |= {p.pid: p for p in [jvm, *jvm.children(recursive=True)]}
            except (ValueError, psutil.NoSuchProcess):
                continue
    ours = str(STATE / "flink")
    for proc in psutil.process_iter():
        try:
            if proc.pid not in found and proc.pid != os.getpid() and proc.environ().get("FLINK_PID_DIR") == ours:
                found[proc.pid] = proc
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return list(found.values())


def flink_service(settings: Settings) -> Service:
    def start() -> Path | None:
        env = {**os.environ, **flink_env(settings)}
        subprocess.run(
            ["bash", str(flink_home() / "bin" / "start-cluster.sh")], env=env, check=True, capture_output=True, cwd=REPO
        )
        return None

    def stop() -> None:
        if (STATE / "flink" / "conf").exists():
            env = {**os.environ, **flink_env(settings)}
            processes = cluster_processes()
            subprocess.run(["bash", str(flink_home() / "bin" / "stop-cluster.sh")], env=env, capture_output=True)
            # a job's Python workers (beam_boot) outlive a stopped or killed TaskManager
            for proc in processes:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.terminate()
            _, alive = psutil.wait_procs(processes, timeout=10)
            for proc in alive:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()

    def healthy() -> bool:
        try:
            with urllib.request.urlopen("http://127.0.0.1:8081/overview", timeout=1) as resp:
                return b'"taskmanagers":1' in resp.read()
        except (OSError, ValueError, http.client.HTTPException):
            return False

    return Service("flink cluster (web UI http://127.0.0.1:8081)", 8081, healthy, start, stop)


PROMETHEUS_RULES = REPO / "deploy" / "prometheus" / "rules"
PROMETHEUS_TARGETS = STATE / "prometheus" / "targets"
FILE_SD_JOBS = tuple(job for job in scrape_jobs() if job != FLINK_SCRAPE_JOB)  # ports picked at start


def prometheus_scrape_config(s: Settings) -> dict:
    """Scrape jobs of the compose stack's names (deploy/prometheus/prometheus.yml) on loopback.

    Local processes may run on ports picked at start (the pipeline does, so runs never
    collide), so each job reads its targets from a file (file-based discovery) that
    ``register_scrape_targets`` writes; the Flink reporter's port range is fixed.
    """
    low, high = (int(p) for p in s.flink.metrics_reporter_ports.split("-"))
    jobs = [
        {"job_name": job, "file_sd_configs": [{"files": [str(PROMETHEUS_TARGETS / f"{job}.json")], "refresh_interval": "5s"}]}
        for job in FILE_SD_JOBS
    ]
    jobs.append({"job_name": FLINK_SCRAPE_JOB, "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in range(low, high + 1)]}]})
    return {
        "global": {
            "scrape_interval": f"{s.prometheus.scrape_interval_s}s",
            "evaluation_interval": f"{s.prometheus.scrape_interval_s}s",
        },
        "rule_files": [str(PROMETHEUS_RULES / "*.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{s.prometheus.alertmanager_port}"]}]}]},
        "scrape_configs": jobs,
    }


ALERTMANAGER_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
ALERTS_LOG = STATE / "logs" / "alerts.jsonl"
LOCAL_ALERT_TIMING = {"group_wait": "1s", "group_interval": "5s", "repeat_interval": "1m"}


def alertmanager_config(s: Settings) -> dict:
    """The compose stack's Alertmanager route (deploy/alertmanager/alertmanager.yml), notifying the local
    alert sink, with local timing: a run is minutes long, so the first notification goes out at
    once and a firing alert is repeated every minute (a line a minute in alerts.jsonl)."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    config["route"].update(LOCAL_ALERT_TIMING)
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"http://127.0.0.1:{s.prometheus.alert_sink_port}/alerts"
    return config


def alertmanager_service(s: Settings) -> Service:
    port = s.prometheus.alertmanager_port

    def start() -> Path:
        binary, data = _binary_and_data("prometheus-alertmanager", "prometheus-alertmanager", "alertmanager")
        conf = data / "alertmanager.yml"
        conf.write_text(yaml.safe_dump(alertmanager_config(s), sort_keys=False))
        return spawn(
            "alertmanager",
            [
                binary,
                f"--config.file={conf}",
                f"--storage.path={data}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
        )

    return Service(
        "alertmanager (http://127.0.0.1:%d)" % port,
        port,
        lambda: http_ok(f"http://127.0.0.1:{port}/-/ready"),
        start,
        lambda: kill_pidfile("alertmanager"),
        "alertmanager",
        "prometheus.alertmanager_port",
    )


def alert_sink_service(s: Settings) -> Service:
    port = s.prometheus.alert_sink_port

    def start() -> Path:
        return spawn("alert-sink", [sys.executable, "-m", "deploy.alert_sink", "--port", str(port), "--log", str(ALERTS_LOG)])

    return Service(
        f"alert sink ({ALERTS_LOG.relative_to(REPO)})",
        port,
        lambda: http_ok(f"http://127.0.0.1:{port}/health"),
        start,
        lambda: kill_pidfile("alert-sink"),
        "alert-sink",
        "prometheus.alert_sink_port",
    )


def register_scrape_targets(ports: dict[str, int | None]) -> None:
    """Point Prometheus's ``job`` at ``127.0.0.1:port`` (None: no target). Atomic: Prometheus never reads half a file."""
    PROMETHEUS_TARGETS.mkdir(parents=True, exist_ok=True)
    for job, port in ports.items():
        if job not in FILE_SD_JOBS:
            raise ValueError(f"unknown scrape job {job!r}")
        groups = [{"targets": [f"127.0.0.1:{port}"], "labels": {}}] if port else []
        tmp = PROMETHEUS_TARGETS / f".{job}.json.tmp"
        tmp.write_text(json.dumps(groups))
        tmp.replace(PROMETHEUS_TARGETS / f"{job}.json")


def prometheus_service(s: Settings) -> Service:
    port = s.prometheus.port

    def start() -> Path:
        binary, data = _binary_and_data("prometheus", "prometheus", "prometheus")
        conf = data / "prometheus.yml"
        for job in FILE_SD_JOBS:
            if not (PROMETHEUS_TARGETS / f"{job}.json").exists():
                register_scrape_targets({job: None})
        conf.write_text(yaml.safe_dump(prometheus_scrape_config(s), sort_keys=False))
        return spawn(
            "prometheus",
            [
                binary,
                f"--config.file={conf}",
                f"--storage.tsdb.path={data / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=2d",
                "--web.enable-lifecycle",
            ],
        )

    return Service(
        "prometheus (http://127.0.0.1:%d)" % port,
        port,
        lambda: http_ok(f"http://127.0.0.1:{port}/-/ready"),
        start,
        lambda: kill_pidfile("prometheus"),
        "prometheus",
        "prometheus.port",
    )


def check_prerequisites() -> None:
    java = shutil.which("java")
    if not java:
        raise StackError("java not found: Java 17 is a prerequisite for Flink")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    if '"17' not in out and '"11' not in out:
        raise StackError(f"Flink 1.20 needs Java 11 or 17; found: {out.splitlines()[0] if out else '?'}")


def services(settings: Settings, with_flink: bool) -> list[Service]:
    found = [
        redis_service(settings),
        postgres_service(settings),
        kinesis_service(settings),
        kinesis_proxy_service(settings),
        s3_service(settings),
        alert_sink_service(settings),
        alertmanager_service(settings),
        prometheus_service(settings),
    ]
    if with_flink:
        found.append(flink_service(settings))
    return found


def foreign_servers(candidates: list[Service]) -> list[str]:
    """One sentence for each port of the stack that another program holds (a distribution's own Redis,
    PostgreSQL, Prometheus or Alertmanager, started by its package): what ``start`` would refuse, said
    at setup's end so the user hears it before the first command. Nothing is stopped."""
    return [str(svc.refusal()) for svc in candidates if port_open(svc.port) and not svc.running()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop", "status", "check"])
    entry_point.add_config(parser)
    parser.add_argument("--with-flink-cluster", action="store_true")
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    try:
        if args.action == "start":
            check_prerequisites()
            for svc in services(settings, args.with_flink_cluster):
                print(f"{svc.name:45s} port {svc.port:5d}: {svc.ensure_started(60 if 'flink' in svc.name else 30)}", flush=True)
                if svc.name.startswith("s3"):
                    ensure_buckets(settings)  # the emulator keeps buckets in memory: a restarted one has none
        elif args.action == "check":
            for line in foreign_servers(services(settings, True)):
                print(f"stack check: {line}")
        elif args.action == "stop":
            for svc in reversed(services(settings, True)):
                svc.stop()
                print(f"{svc.name}: stopped")
        else:
            ok = True
            for svc in services(settings, True):
                up = svc.running()
                ok &= up or "flink" in svc.name
                print(f"{svc.name:45s} port {svc.port:5d}: {'up' if up else 'down'}")
            return 0 if ok else 1
    except StackError as exc:
        print(f"stack error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
