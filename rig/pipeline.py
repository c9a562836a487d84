"""Run the whole hot path locally on replayed real data and show live predictions.

    python -m rig.pipeline [--speed 10] [--mini-cluster] [--duration 0]

Starts the local stack (stack.py), then the exchange simulator, the Flink job
(submitted to the local standalone cluster, web UI http://127.0.0.1:8081, or
run in the embedded mini cluster), the ingestor and the inference service, and
prints each prediction as it is made. Ctrl-C stops the pipeline processes (the
stack keeps running; ``stack.py stop`` ends it).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import port_for
import redis
from prometheus_client.parser import text_string_to_metric_families

from btcpred.adapters.kinesis_writer import ensure_stream
from btcpred.common.config import Settings, aws_client_kwargs, load_settings
from btcpred.common.recalibration import MIN_ROWS
from btcpred.udfs import redis_schema as rs
from btcpred.udfs.records import JointEventTime, split_record
from deploy import services
from rig import flink_cluster, stack

REPO = Path(__file__).resolve().parents[1]

SHARED_DATA = REPO.parent / "shared" / "data"
DEFAULT_CAPTURE = REPO.parent / "shared" / "data" / "raw" / "hftbacktest" / "spot_btcusdt_20240808_ws.gz"
# the USD-M capture of the same minutes: the perpetual whose quotes lead spot (cross-market features)
DEFAULT_PERP_CAPTURE = REPO.parent / "shared" / "data" / "raw" / "hftbacktest" / "usdm_btcusdt_20240808_ws.gz"


PORT_FLOOR = 20_000  # above every fixed port of the stack


def free_port() -> int:
    """A free port at or above PORT_FLOOR, outside the kernel's ephemeral range (port-for).

    A port found by binding 0 comes from the ephemeral range, and the pipeline's ports are picked
    before its services bind them: a JVM or client socket opened meanwhile could be handed the
    same port (seen once: the re-anchor service failed with "address already in use").
    """
    return port_for.select_random(port_for.available_ports(low=PORT_FLOOR))


def flink_reporter_samples(ports: str, name: str) -> list:
    """Every sample of the job metric ``name`` off Flink's Prometheus reporter, over its port range
    (``flink.metrics_reporter_ports``: each subtask, the operator-wide series and the per-symbol ones)."""
    low, high = (int(p) for p in ports.split("-"))
    samples = []
    for port in range(low, high + 1):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                text = resp.read().decode()
        except OSError:
            continue
        for family in text_string_to_metric_families(text):
            if family.name.endswith(f"_{name}"):
                samples.extend(family.samples)
    return samples


def get_json(url: str, timeout: float = 2.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered; see {log}")
        try:
            get_json(url, 1.0)
            return
        except (OSError, ValueError, http.client.HTTPException):  # not answering yet, or not with JSON
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s}s; see {log}")


@dataclass
class Pipeline:
    """The pipeline's own processes, wired through environment overrides of the typed config."""

    capture: Path = DEFAULT_CAPTURE
    speed: float = 10.0
    mini_cluster: bool = True
    run_id: str = field(default_factory=lambda: time.strftime("%Y%m%d%H%M%S"))
    log_dir: Path = REPO / ".local" / "logs"
    sim_port: int = field(default_factory=free_port)
    inference_port: int = field(default_factory=free_port)
    inference_metrics_port: int = field(default_factory=free_port)
    ingest_metrics_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    flink_job_id: str | None = None
    model_source: str = "persistence"  # "registry": serve the production model of the registry
    verify_interval_s: float = 60.0  # the re-anchor service's drift check
    reanchor_port: int = field(default_factory=free_port)
    poller_port: int = field(default_factory=free_port)
    archiver_port: int = field(default_factory=free_port)
    retrain_every_s: float | None = None  # run the scheduled retraining loop (batch.retrain --every) beside the pipeline
    retrain_port: int = field(default_factory=free_port)
    laps: int = 1  # the simulator replays the capture this many times, shifted in time and ids; 0 = until stopped
    # a perpetual's capture of the same minutes, replayed beside spot as the futures bookTicker stream
    # the ingestor reads (``exchange.perp_ws_url``); None: spot only
    perp_capture: Path | None = None
    # the capture served also under this many replay keys <SYMBOL>-R<i>, each carried as a symbol of its
    # own (``exchange.symbols``): scale-out by key through the whole live path, on the one real capture
    replay_keys: int = 0
    job_module: str | None = None  # the mini cluster runs this module instead of the hot-path job (bench.floor_job)

    @property
    def symbols(self) -> list[str]:
        """Every symbol the run carries, the served one first."""
        return ["BTCUSDT", *(f"BTCUSDT-R{i}" for i in range(1, self.replay_keys + 1))]

    @property
    def stream(self) -> str:
        return f"btcusdt-market-data-{self.run_id}"

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    @property
    def inference_url(self) -> str:
        return f"http://127.0.0.1:{self.inference_port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "AWS_CBOR_DISABLE": "true",
            "BTCPRED_KINESIS__STREAM": self.stream,
            "BTCPRED_EXCHANGE__WS_URL": f"ws://127.0.0.1:{self.sim_port}",
            "BTCPRED_EXCHANGE__REST_URL": self.sim_url,
            "BTCPRED_INFERENCE__PORT": str(self.inference_port),
            "BTCPRED_INFERENCE__MODEL_SOURCE": self.model_source,
            "BTCPRED_REANCHOR__VERIFY_INTERVAL_S": str(self.verify_interval_s),
            "BTCPRED_REANCHOR__METRICS_PORT": str(self.reanchor_port),
            "BTCPRED_POLLER__METRICS_PORT": str(self.poller_port),
            "BTCPRED_INGESTOR__METRICS_PORT": str(self.ingest_metrics_port),
            "BTCPRED_INGESTOR__DEAD_LETTER_PATH": str(self.log_dir / f"dead-letter-{self.run_id}.jsonl"),
            **({"BTCPRED_EXCHANGE__PERP_WS_URL": f"ws://127.0.0.1:{self.sim_port}/futures"} if self.perp_capture else {}),
            **({"BTCPRED_EXCHANGE__SYMBOLS": ",".join(self.symbols)} if self.replay_keys else {}),
        }

    def _spawn(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}-{self.run_id}.log"
        with log.open("wb") as fh:
            proc = subprocess.Popen(
                args,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**self.env(), **(extra_env or {})},
                cwd=REPO,
                start_new_session=True,
            )
        self.procs[name] = proc
        return proc

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}-{self.run_id}.log"

    @property
    def settings(self) -> Settings:
        """The typed config as this run's processes see it (file plus this run's overrides)."""
        return load_settings(environ=self.env())

    def _kinesis(self):
        return boto3.client("kinesis", **aws_client_kwargs(self.settings.kinesis))

    def create_stream(self) -> None:
        ensure_stream(self._kinesis(), self.stream, self.settings.kinesis.shards)

    def delete_stream(self) -> None:
        """Each run has its own stream; drop it so the emulator's shard limit is never reached."""
        try:
            self._kinesis().delete_stream(StreamName=self.stream)
        except Exception as exc:  # noqa: BLE001 - already gone, or the emulator is down: nothing to clean
            print(f"note: could not delete stream {self.stream}: {exc}", file=sys.stderr)

    def reset_hot_state(self) -> None:
        """A replay starts from an empty book: drop what an earlier local run left in Redis."""
        settings = self.settings
        symbol = settings.exchange.symbol
        client = redis.Redis.from_url(settings.redis.url)
        client.delete(
            rs.ob_key(symbol),
            rs.trade_key(symbol, "1s"),
            rs.trade_key(symbol, "5s"),
            rs.feat_key(symbol),
            rs.feat_history_key(symbol),
            rs.prediction_stream_key(symbol),
            rs.gap_stream_key(symbol),
            rs.late_stream_key(symbol),
            rs.dead_letter_stream_key(),
            rs.reanchor_key(symbol),
            rs.reanchor_log_key(symbol),
            rs.drift_stream_key(symbol),
        )
        client.close()

    def wait_for_job(self, timeout_s: float = 180) -> None:
        """Block until the job consumes the stream: a probe record must come back as a dead letter."""
        settings = self.settings
        probe = f"probe-{self.run_id}"
        self._kinesis().put_record(StreamName=self.stream, Data=probe.encode(), PartitionKey=settings.exchange.symbol)
        client = redis.Redis.from_url(settings.redis.url)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                self.check_alive()
                for entry_id, fields in client.xrange(rs.dead_letter_stream_key()):
                    if fields.get(b"record") == probe.encode():
                        client.xdel(rs.dead_letter_stream_key(), entry_id)
                        return
                time.sleep(0.2)
        finally:
            client.close()
        raise RuntimeError(f"Flink job did not consume the stream within {timeout_s}s; see {self.log_path('flink-job')}")

    def start(self, wait_for_job: bool = False, job_code_dir: Path | None = None) -> None:
        """Start every process; with ``wait_for_job`` the replay begins only once the job is consuming.
        ``job_code_dir``: the first job runs an earlier commit's code (``start_job``)."""
        py = sys.executable
        self.reset_hot_state()
        self.create_stream()
        self.start_job(code_dir=job_code_dir)
        if wait_for_job:
            self.wait_for_job()
        # its metrics port for this process alone: a job of an earlier commit (the upgrade test) reads the same
        # environment, and its config refuses a key it does not know
        inf = self._spawn(
            "inference",
            services.command("inference", py),
            {"BTCPRED_INFERENCE__METRICS_PORT": str(self.inference_metrics_port)},
        )
        wait_http(f"{self.inference_url}/health", 30, inf, self.log_path("inference"))
        sim = self._spawn(
            "simulator",
            services.command(
                "simulator",
                py,
                "--capture",
                str(self.capture),
                "--port",
                str(self.sim_port),
                "--speed",
                str(self.speed),
                "--laps",
                str(self.laps),
                "--replay-keys",
                str(self.replay_keys),
                *(("--perp-capture", str(self.perp_capture)) if self.perp_capture else ()),
            ),
        )
        wait_http(f"{self.sim_url}/health", 60, sim, self.log_path("simulator"))
        self._spawn("ingestor", services.command("ingestor", py))
        rea = self._spawn("reanchor", services.command("reanchor", py))
        wait_http(f"http://127.0.0.1:{self.reanchor_port}/health", 30, rea, self.log_path("reanchor"))
        self._spawn("rest-poller", services.command("rest-poller", py))
        self._spawn("sbe-archiver", services.command("sbe-archiver", py, "--metrics-port", str(self.archiver_port)))
        if self.retrain_every_s:
            every = str(self.retrain_every_s)
            self._spawn(
                "retrain",
                services.command(
                    "retrain",
                    py,
                    "--every",
                    every,
                    "--first-after",
                    every,
                    "--stream",
                    self.stream,
                    "--metrics-port",
                    str(self.retrain_port),
                ),
            )
        stack.register_scrape_targets(self.scrape_ports())

    def scrape_ports(self) -> dict[str, int | None]:
        return {
            "inference": self.inference_metrics_port,
            "ingestor": self.ingest_metrics_port,
            "reanchor": self.reanchor_port,
            "rest-poller": self.poller_port,
            "sbe-archiver": self.archiver_port,
            "retrain": self.retrain_port if self.retrain_every_s else None,
        }

    def start_job(self, from_savepoint: str | None = None, job_file: Path | None = None, code_dir: Path | None = None) -> None:
        """Start the hot-path job (``code_dir``: an earlier commit's code, ``rig.legacy_tree``)."""
        py = sys.executable
        if self.mini_cluster:
            self._spawn("flink-job", [py, "-m", self.job_module] if self.job_module else services.command("flink-job", py))
            return
        if code_dir is not None:
            job_file = job_file or code_dir / "flink_jobs" / "hot_path_job.py"
        self.flink_job_id = flink_cluster.submit(
            self.settings,
            env=self.env(),
            from_savepoint=from_savepoint,
            job_file=job_file or flink_cluster.JOB_FILE,
            code_dir=code_dir,
        )

    def stop(self) -> None:
        stack.register_scrape_targets(dict.fromkeys(self.scrape_ports()))
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)  # reaped: an unreaped Popen warns when collected, and failed a later test (d-2)
        if self.flink_job_id:
            # cancel returns once cancelling starts: wait until the job's tasks (and their Redis writes) are gone
            try:
                if flink_cluster.rest("GET", f"/jobs/{self.flink_job_id}")["state"] not in flink_cluster.TERMINAL:
                    flink_cluster.cancel(self.flink_job_id, timeout_s=30)
            except flink_cluster.ClusterError as exc:  # cluster gone: nothing left to wait for
                print(f"note: {exc}", file=sys.stderr)
        self.delete_stream()

    def wait_caught_up(self, client: redis.Redis, timeout_s: float = 240) -> tuple[dict, dict[str, str]]:
        """Until the replay finished and ``ob:`` reached the exchange's last update id (or the timeout).

        Returns the simulator's status and the ``ob:`` fields last read; the caller judges them.
        """
        key = rs.ob_key(self.settings.exchange.symbol)
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_alive()
            status = get_json(f"{self.sim_url}/sim/status")
            ob = {k.decode(): v.decode() for k, v in client.hgetall(key).items()}
            if status["finished"] and int(ob.get("last_update_id", 0)) == status["last_update_id"]:
                return status, ob
            if time.monotonic() > deadline:
                return status, ob
            time.sleep(0.5)

    def final_watermark_ms(self) -> int:
        """The watermark the job's input lets it reach, computed from the stream itself.

        Each record is stamped as the job stamps it (``split_record`` and ``JointEventTime``, the
        job's own code), and the stamp the watermark follows is a running maximum, so the last
        watermark does not depend on the order records are read in: the largest stamp less the
        out-of-orderness and 1 ms (Flink's bounded out-of-orderness). How the replay's last frames
        were packed into records (a slow put makes a long one) is read, not guessed.
        """
        joint = JointEventTime()
        stamp = 0
        for record in self.stream_records():
            for batch in split_record(record["Data"].decode("latin-1"), 0).batches:
                stamp = max(stamp, joint.stamp(batch, 0.0))  # a perpetual seen counts as alive
        return stamp - self.settings.flink.out_of_orderness_ms - 1

    def stream_records(self) -> Iterator[dict]:
        """Every record the run's stream holds now, shard by shard from the start, read independently."""
        kinesis = self._kinesis()
        for shard in kinesis.list_shards(StreamName=self.stream)["Shards"]:
            it = kinesis.get_shard_iterator(StreamName=self.stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")[
                "ShardIterator"
            ]
            while it:
                resp = kinesis.get_records(ShardIterator=it, Limit=10_000)
                yield from resp["Records"]
                if not resp["Records"] and resp.get("MillisBehindLatest", 0) == 0:
                    break
                it = resp.get("NextShardIterator")

    def wait_final_boundary(self, client: redis.Redis, timeout_s: float = 60) -> int:
        """Until ``feat:`` holds the last boundary the watermark of the stream's records passes
        (``final_watermark_ms``); returns its time. Call it once the replay's frames are all put."""
        interval_ms = self.settings.flink.emit_interval_ms
        final_us = self.final_watermark_ms() // interval_ms * interval_ms * 1000
        key = rs.feat_key(self.settings.exchange.symbol)
        deadline = time.monotonic() + timeout_s
        while int(client.hget(key, "ts") or 0) < final_us:
            if time.monotonic() > deadline:
                raise AssertionError(f"feat: stopped at ts {client.hget(key, 'ts')} before the final boundary {final_us}")
            self.check_alive()
            time.sleep(0.1)
        return final_us

    def wait_archived(self, timeout_s: float = 60) -> None:
        """Until the SBE archiver has read every record the stream holds now; stopping it then
        flushes them all to bronze.

        The archiver consumes the stream apart from the job and at its own pace: stopped as soon
        as the job had caught up, it had not read the last records yet (fresh-clone run h-1: the
        backfill's final boundary lacked three diffs the live job had applied).
        """
        since = time.time()
        shards = [s["ShardId"] for s in self._kinesis().list_shards(StreamName=self.stream)["Shards"]]
        deadline = time.monotonic() + timeout_s
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.archiver_port}/metrics", timeout=2.0) as resp:
                text = resp.read().decode()
            caught_up = {
                sample.labels["shard"]: sample.value
                for family in text_string_to_metric_families(text)
                if family.name == "sbe_archiver_caught_up_timestamp_seconds"
                for sample in family.samples
            }
            if all(caught_up.get(shard, 0.0) >= since for shard in shards):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the archiver has not read to the end of {shards} since {since}: {caught_up}")
            archiver = self.procs["sbe-archiver"]  # the producers may be stopped already (the fault suite's tally)
            if archiver.poll() is not None:
                raise RuntimeError(f"sbe-archiver exited with {archiver.returncode}; see {self.log_path('sbe-archiver')}")
            time.sleep(0.2)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.log_path(name)}")


def score_text(acc: dict) -> str:
    """The inference service's online score so far (data time): champion RMSE over persistence's, and direction;
    then each challenger's, in shadow on the same targets."""
    if not acc.get("scored") or not acc.get("rmse") or not (acc.get("persistence") or {}).get("rmse"):
        return ""
    base = acc["persistence"]["rmse"]
    direction = acc.get("directional_accuracy")
    text = (
        f"  [n {acc['scored']}, RMSE x{acc['rmse'] / base:.3f} of persistence"
        + (f", direction {direction:.0%}" if direction is not None else "")
        + "]"
    )
    for version, shadow in (acc.get("challengers") or {}).items():
        if shadow.get("rmse") and shadow.get("persistence_rmse"):
            text += f"  [shadow {version}: n {shadow['scored']}, RMSE x{shadow['rmse'] / shadow['persistence_rmse']:.3f}]"
    return text


def contest_text(acc: dict) -> str:
    """What the gate would decide on this market from this run's rows, per challenger."""
    lines = []
    for version, shadow in (acc.get("challengers") or {}).items():
        v = shadow.get("versus_champion") or {}
        figures = f"n {v.get('n')}, {v.get('blocks')} blocks of 5 min" if v.get("n") else "nothing scored"
        if v.get("pvalue") is not None:
            figures += f", mean loss difference {v.get('mean_loss_diff')} (95 % interval {v.get('ci')}), p {v.get('pvalue')}"
        lines.append(
            f"Contest on {acc.get('market')}: challenger {version} against {acc.get('model_version')}: "
            f"{v.get('decision', 'no verdict')} ({figures})."
        )
    online = acc.get("online_contest") or {}
    tests = [("promote", version, t) for version, t in (online.get("promotion") or {}).items()]
    if online.get("demotion"):
        tests.append(("demote", online.get("champion"), online["demotion"]))
    for action, version, t in tests:
        lines.append(
            f"Always-valid test ({action} {version}): e-value {t['e_value']:.2f}, {action}s at "
            f"{t['threshold']:.0f} (alpha {t['alpha']}, over its whole life), {t['blocks']} block(s) closed."
        )
    for version, action in (online.get("verdicts") or {}).items():
        lines.append(f"The online contest ruled on {acc.get('market')}: {action} {version}.")
    interval = acc.get("interval") or {}
    if interval.get("n"):
        lines.append(
            f"Interval: {interval['coverage']:.1%} of {interval['n']} realized prices inside the stated "
            f"{interval['nominal']:.0%} interval ({'recalibrated on this market' if interval.get('recalibrated') else f'sized by the artifact until {MIN_ROWS} rows are realized'})."
        )
    return "\n".join(lines)


def show_predictions(p: Pipeline, duration_s: float) -> Counter:
    """Print every prediction as it is served, with the running score; returns the sources after warm-up.

    Each line shows the champion (what is served) and, where a model is unproven on this market, its
    shadow prediction beside it; at the end, the decision the gate would take from this run's rows."""
    seen = 0
    started = time.monotonic()
    served: Counter = Counter()  # "model" or the fallback reason, for cycles after the first features
    acc: dict = {}
    print(
        f"{'wall time (UTC)':20s} {'data time (UTC)':24s} {'price':>12s} {'pred 10s':>12s} {'conf':>5s} "
        f"{'age ms':>8s} champion  source  | challenger (shadow)  [score so far]",
        flush=True,
    )
    while duration_s <= 0 or time.monotonic() - started < duration_s:
        p.check_alive()
        try:
            preds = get_json(f"{p.inference_url}/predictions?limit=50")
            acc = get_json(f"{p.inference_url}/accuracy")
        except (OSError, ValueError, http.client.HTTPException):  # the service restarting: the next poll tries again
            preds = []
        for pred in preds:
            if pred["timestamp"] <= seen:
                continue
            seen = pred["timestamp"]
            if pred["feature_time_ms"] or served:
                served["model" if pred["source"] == "redis" else pred["fallback_reason"]] += 1
            wall = time.strftime("%H:%M:%S", time.gmtime(pred["timestamp"] / 1000))
            data = (
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(pred["feature_time_ms"] / 1000))
                if pred["feature_time_ms"]
                else "-"
            )
            price = f"{pred['current_price']:.2f}" if pred["current_price"] else "-"
            pred10 = f"{pred['predicted_price_10s']:.2f}" if pred["predicted_price_10s"] else "-"
            age = f"{pred['features_age_ms']:.0f}" if pred["features_age_ms"] is not None else "-"
            source = pred["source"] if pred["source"] != "fallback" else f"fallback ({pred['fallback_reason']})"
            shadow = " ".join(
                f"| {c['model_version']} {c['predicted_price_10s']:.2f}"
                if c["predicted_price_10s"]
                else f"| {c['model_version']} -"
                for c in pred.get("challengers") or []
            )
            print(
                f"{wall:20s} {data:24s} {price:>12s} {pred10:>12s} {pred['confidence']:5.2f} {age:>8s} "
                f"{pred['model_version']}  {source} {shadow}{score_text(acc)}",
                flush=True,
            )
        time.sleep(0.5)
    total = sum(served.values())
    if total:
        others = ", ".join(f"{reason} {n}" for reason, n in served.most_common() if reason != "model") or "none"
        print(
            f"\n{total} cycles after the first features: {served['model']} ({served['model'] / total:.0%}) served by "
            f"the champion, fallbacks: {others}.{score_text(acc)}",
            flush=True,
        )
        if contest_text(acc):
            print(contest_text(acc), flush=True)
    return served


def ensure_production_model(settings: Settings, data_dir: Path, log_dir: Path) -> str:
    """The registry's production model; trains and promotes one from ``data_dir`` when there is none (~20 s)."""
    from btcpred.adapters import registry
    from btcpred.adapters.artifact_store import fetch
    from btcpred.adapters.db import migrate
    from btcpred.adapters.db.schema import engine_for
    from btcpred.adapters.lake import Lake

    migrate.upgrade(settings.postgres)
    engine = engine_for(settings.postgres, "reporting")
    try:
        model = registry.production(engine)
        if model is not None:
            try:  # the S3 emulator keeps objects in memory: a restarted stack has lost the artifact
                fetch(Lake(settings.s3), model.artifact_uri, model.checksum_sha256)
            except Exception as exc:  # noqa: BLE001 - any unreadable artifact means: train a new one
                print(f"Production model {model.model_version} is not loadable ({exc}); training a new one", flush=True)
                model = None
        if model is None:
            print(f"No production model yet: training one from {data_dir} (log: {log_dir / 'train.log'}) ...", flush=True)
            log_dir.mkdir(parents=True, exist_ok=True)
            with (log_dir / "train.log").open("wb") as fh:
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "btcpred.batch.train",
                        "--data",
                        str(data_dir),
                        "--venue",  # the hours of book on hand are Binance.US's (the archive's are the market's)
                        "binance.us",
                        "--promote",
                        "--report-dir",
                        str(REPO / ".local" / "reports" / "training"),
                    ],
                    cwd=REPO,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    check=True,
                )
            model = registry.production(engine)
            assert model is not None
        return model.model_version
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capture", type=Path, default=DEFAULT_CAPTURE)
    parser.add_argument(
        "--perp-capture",
        type=Path,
        default=None,
        help="a USD-M capture of the same minutes, served as the perpetual's bookTicker stream "
        f"(default with the default capture: {DEFAULT_PERP_CAPTURE.name}; 'none' for spot only)",
    )
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed (1 = real time)")
    parser.add_argument("--mini-cluster", action="store_true", help="embedded mini cluster instead of the local cluster")
    parser.add_argument("--duration", type=float, default=0, help="seconds to run; 0 = until Ctrl-C")
    parser.add_argument(
        "--model",
        choices=("registry", "persistence"),
        default="registry",
        help="serve the registry's production model (trained first if none) or the persistence baseline",
    )
    parser.add_argument(
        "--retrain-every",
        type=float,
        default=3600.0,
        help="the scheduled retraining loop's interval in seconds, first cycle one interval after start (0: do not run it)",
    )
    parser.add_argument(
        "--retrain",
        action="store_true",
        help="after the replay, run one retraining cycle on what the pipeline archived (batch.retrain) "
        "and print the gate's decision",
    )
    args = parser.parse_args(argv)
    if stack.main(["start"] + ([] if args.mini_cluster else ["--with-flink-cluster"])) != 0:
        return 2
    perp = args.perp_capture or (DEFAULT_PERP_CAPTURE if args.capture == DEFAULT_CAPTURE else None)
    api_port = load_settings().inference.port  # 8000: the README's URLs
    if stack.port_open(api_port):
        print(
            f"Port {api_port} (inference.port) is taken by {stack.holder(api_port)}: the API and the live view "
            "take a free port instead, printed below.",
            flush=True,
        )
        api_port = free_port()
    p = Pipeline(
        capture=args.capture,
        speed=args.speed,
        mini_cluster=args.mini_cluster,
        model_source=args.model,
        retrain_every_s=args.retrain_every or None,
        perp_capture=None if str(perp) == "none" else perp,
        inference_port=api_port,
    )
    if args.model == "registry":
        version = ensure_production_model(p.settings, SHARED_DATA, p.log_dir)
        if version.startswith("persistence-"):
            print(
                f"Serving {version}: the training gate promotes a model only if it beats persistence on the held-out "
                "hour (block bootstrap test, p < 0.05), and none did on the hours of data there are (a Binance.US book), so "
                "the registry's production model is persistence: price unchanged, confidence 0.5. "
                "See docs/training.md and the gate's rows in ml_experiments.",
                flush=True,
            )
        else:
            market = p.settings.exchange.market
            print(
                f"Production model {version} beat persistence on its held-out hour of the Binance.US book. This "
                f"replay is {market}, where it has no gate evidence: persistence is the champion here, and the "
                "model runs beside it as a challenger in shadow (its prediction after the '|', scored on the same "
                "targets in data time). At the end: the decision the gate's test would take on this market from "
                "this run's rows. See docs/training.md.",
                flush=True,
            )
    try:
        p.start()
        print(
            f"\nFlink web UI: http://127.0.0.1:8081  (job {p.flink_job_id})"
            if not args.mini_cluster
            else "\nFlink: embedded mini cluster (no web UI; drop --mini-cluster for the local cluster on :8081)"
        )
        print(
            f"Live view: {p.inference_url}/   predictions API: {p.inference_url}/predictions/latest   "
            f"docs: {p.inference_url}/docs"
        )
        print(f"Simulator: {p.sim_url}/sim/status   logs: {p.log_dir}\n", flush=True)
        run_started_ms = int(time.time() * 1000)
        show_predictions(p, args.duration)
    except KeyboardInterrupt:
        pass
    finally:
        p.stop()  # the SBE archiver flushes what it holds on SIGTERM
    if "run_started_ms" in locals():
        draw_run(p.settings, run_started_ms, int(time.time() * 1000))
    if args.retrain:
        retrain_from_archive(p)
    return 0


def draw_run(settings: Settings, start_ms: int, end_ms: int) -> None:
    """This run's predictions archived (as the retraining job archives them) and drawn against the
    realised price, with the score; a failure is said, never the end of the demo."""
    from btcpred.adapters.db.schema import engine_for
    from btcpred.batch import draw_predictions, retrain

    out = REPO / ".local" / "reports" / "demo_predictions.png"
    trainer = engine_for(settings.postgres, "trainer")
    try:
        archived = retrain.archive_predictions(settings, trainer, settings.exchange.symbol)
        if "error" in archived:
            raise RuntimeError(archived["error"])
        rows = draw_predictions.load(trainer, settings.exchange.symbol, start_ms, end_ms, by="boundary_ms")
        score = draw_predictions.score(rows)
        draw_predictions.draw(rows, out, f"this demo run: champion R²_OS {score.get('r2_os')}, n {score.get('n')}")
        print(f"\nThis run's predictions against the realised price: {out} (champion {json.dumps(score)})", flush=True)
    except Exception as exc:  # noqa: BLE001 - the picture is a courtesy: say why there is none
        print(f"\nno picture of this run: {exc!r}", flush=True)
    finally:
        trainer.dispose()


def retrain_from_archive(p: Pipeline) -> dict:
    """The learning loop on this run's own archive: bronze/sbe -> feature store -> candidates -> gate."""
    log_dir = p.log_dir
    print(
        "\nRetraining from what this run archived (python -m btcpred.batch.retrain --through-now; "
        f"log: {log_dir / 'retrain.log'}) ...",
        flush=True,
    )
    with (log_dir / "retrain.log").open("wb") as fh:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "btcpred.batch.retrain",
                "--through-now",
                "--stream",
                p.stream,
                "--report-dir",
                str(REPO / ".local" / "reports" / "retrain"),
            ],
            cwd=REPO,
            env=p.env(),
            stdout=subprocess.PIPE,
            stderr=fh,
        )
    if done.returncode != 0:
        print(f"retraining failed (exit {done.returncode}); see {log_dir / 'retrain.log'}", flush=True)
        return {}
    outcome = json.loads(done.stdout.decode().strip().splitlines()[-1])
    print(
        f"archive: {outcome['archive_hours']} hour(s), {outcome['archive_rows']} feature rows built; "
        f"outcome: {outcome['outcome']}",
        flush=True,
    )
    if outcome["outcome"] == "not_enough_data":
        print(
            f"  {outcome['detail']}. A split needs train, validation and test hours: in production the loop "
            "runs hourly on what the system archives (batch.retrain --every 3600).",
            flush=True,
        )
    for g in outcome.get("gate", []):
        print(f"  gate: {g['challenger']} {'promoted' if g['promote'] else 'not promoted'}: {g['reason']}", flush=True)
    if outcome.get("production"):
        print(f"  production model now: {outcome['production']}", flush=True)
    return outcome


if __name__ == "__main__":
    sys.exit(main())
