"""The reliability fault suite: faults injected into a live replay, recovery measured from the outside.

Used by ``bench/reanchor.py`` (full suite, JSON figures) and the end-to-end test
(a bounded subset, asserted). Everything runs for real: simulator, ingestor,
kinesalite, the PyFlink job, Redis, the re-anchor service, the REST poller, the
SBE archiver and the inference service; only the damage is synthetic.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import redis

from btcpred.reliability.sbe_archiver import SbeArchiver, frames_of
from btcpred.udfs import lake_layout
from rig.pipeline import Pipeline, get_json


@dataclass(frozen=True, slots=True)
class Fault:
    name: str
    stream_faults: dict  # simulator switches applied to the WebSocket stream
    rest_faults: dict = field(default_factory=dict)  # applied first, so the re-anchor meets them
    breaks_sequence: bool | None = True  # exactly one gap / none / may (a disconnect loses diffs or not)
    redis_down_s: float = 0.0  # restart the Redis server (empty: it keeps no data) after this long down
    kinesis_down_s: float = 0.0  # cut the Kinesis endpoint (the stack's proxy) for this long
    kill_taskmanager: bool = False  # SIGKILL the TaskManager, start a new one (standalone cluster only)


FULL_SUITE = (
    Fault("drop 1 diff", {"drop_diffs": 1}),
    Fault("drop 5 diffs", {"drop_diffs": 5}),
    Fault("drop 50 diffs", {"drop_diffs": 50}),
    Fault("duplicate 5 frames", {"duplicate_next": 5}, breaks_sequence=False),
    Fault("reorder 2 diffs", {"reorder_next": 1, "reorder_stream": "btcusdt@depth"}),
    Fault("WebSocket disconnect", {"disconnect_next": True}, breaks_sequence=None),
    Fault("corrupt 1 depth frame", {"corrupt_next": 1, "corrupt_stream": "btcusdt@depth"}),
    Fault("REST 429 x2 then drop", {"drop_diffs": 2}, {"rest_throttle_next": 2, "rest_retry_after_s": 1}),
    Fault("REST 418 ban 3 s then drop", {"drop_diffs": 2}, {"rest_ban_next": 1, "rest_retry_after_s": 3}),
    Fault("slow REST 1.5 s then drop", {"drop_diffs": 2}, {"rest_delay_ms": 1500}),
    Fault("Redis restart (2 s down, comes back empty)", {}, breaks_sequence=False, redis_down_s=2.0),
    Fault("Kinesis endpoint down 3 s", {}, breaks_sequence=False, kinesis_down_s=3.0),  # no data may be lost
    # past the writer's 10 s floor: batches spill to the ingestor's dead letters (a gap on the hot path),
    # replayed into Kinesis before the bronze tally: nothing may be lost from bronze
    Fault("Kinesis endpoint down 30 s", {}, breaks_sequence=None, kinesis_down_s=30.0),
    # REST answers 503 for 2 min while a gap's re-anchor runs: it outlasts attempts; the book heals after
    Fault("REST down 2 min during a re-anchor", {"drop_diffs": 2}, {"rest_down_s": 120.0}),
)
LONG_FAULTS = ("Kinesis endpoint down 30 s", "REST down 2 min during a re-anchor")  # the bench's, not CI's
TASKMANAGER_KILL = Fault("TaskManager kill", {}, breaks_sequence=False, kill_taskmanager=True)
CI_SUITE = tuple(f for f in FULL_SUITE if f.name not in ("drop 5 diffs", "slow REST 1.5 s then drop", *LONG_FAULTS))


def post_json(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def decode(h: dict) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in h.items()}


def book_problem(ob: dict[str, str], last_id: int) -> str | None:
    """What is wrong with one read of ob:, if anything: missing fields, a crossed or unsorted book
    that claims to be valid, an update id going back.

    A book flagged ``book_valid=0`` (after a gap, before its re-anchor) may legitimately be
    crossed: it is stale by declaration, and readers are told so.
    """
    try:
        bids = [float(ob[f"bid{i}_p"]) for i in range(1, 11)]
        asks = [float(ob[f"ask{i}_p"]) for i in range(1, 11)]
        uid = int(ob["last_update_id"])
        valid = ob["book_valid"] == "1"
    except (KeyError, ValueError) as exc:
        return f"incomplete book: {exc}"
    if valid and not (bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]):
        return f"inconsistent book at {uid}"
    if uid < last_id:
        return f"update id went back {last_id} -> {uid}"
    return None


class Watchers:
    """Readers that run through the whole suite: ob: consistency and the inference API."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.stop = threading.Event()
        self.book_reads = self.book_failures = self.stale_reads = 0
        self.outage = threading.Event()  # set while Redis is deliberately down or refilling
        self.outage_reads = 0
        self.http_reads = self.http_failures = 0
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._books, daemon=True), threading.Thread(target=self._http, daemon=True)]

    def _books(self) -> None:
        client = redis.Redis.from_url(self.pipeline.settings.redis.url)
        last_id, seen = 0, False
        while not self.stop.is_set():
            try:
                ob = decode(client.hgetall("ob:{BTCUSDT}"))
            except redis.ConnectionError:
                self.outage_reads += 1
                if not self.outage.is_set():
                    self.book_failures += 1
                    self.failures.append("Redis unreachable outside an injected outage")
                time.sleep(0.05)
                continue
            if not ob and self.outage.is_set():
                self.outage_reads += 1
                continue
            if not ob:
                if seen:
                    self.book_failures += 1
                    self.failures.append("ob:{BTCUSDT} missing")
                time.sleep(0.001)
                continue
            seen = True
            self.book_reads += 1
            self.stale_reads += ob.get("book_valid") == "0"
            problem = book_problem(ob, last_id)
            if problem:
                self.book_failures += 1
                self.failures.append(problem)
            else:
                last_id = int(ob["last_update_id"])
        client.close()

    def _http(self) -> None:
        url = f"{self.pipeline.inference_url}/predictions/latest"
        started = False
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    json.loads(resp.read())
                started = True
                self.http_reads += 1
            except urllib.error.HTTPError as exc:
                if started or exc.code != 404:  # 404 only before the first cycle
                    self.http_failures += 1
                    self.failures.append(f"inference HTTP {exc.code}")
            except OSError as exc:
                self.http_failures += 1
                self.failures.append(f"inference unreachable: {exc}")
            time.sleep(0.05)

    def __enter__(self) -> Watchers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)


def _wait(predicate, timeout_s: float, what: str, pipeline: Pipeline):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pipeline.check_alive()
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


STREAMS = ("gaps:{BTCUSDT}", "feathist:{BTCUSDT}", "reanchors:{BTCUSDT}", "drift:{BTCUSDT}")


def read_streams(client: redis.Redis) -> dict[str, list[dict[str, str]]]:
    return {name: [decode(f) for _, f in client.xrange(name)] for name in STREAMS}


def restart_redis(pipeline: Pipeline, watch: Watchers, down_s: float) -> float:
    """Stop the Redis server, start it again empty; seconds from its return until ob: and fresh feat: are back."""
    from rig import stack

    service = stack.redis_service(pipeline.settings)
    watch.outage.set()
    service.stop()
    time.sleep(down_s)
    deadline = time.monotonic() + 10
    while service.healthy():  # the old server must be gone first
        if time.monotonic() > deadline:
            raise RuntimeError("Redis did not stop: was it started by another checkout's stack (other pid file)?")
        time.sleep(0.05)
    # started by the stack command in its own process, as an operator would: the server outlives it
    subprocess.run([sys.executable, "-m", "rig.stack", "start"], check=True, capture_output=True, timeout=60, cwd=stack.REPO)
    recovered = seconds_until_fresh(pipeline, time.time(), 60, "ob: and fresh feat: after the Redis restart")
    watch.outage.clear()
    return recovered


def seconds_until_fresh(pipeline: Pipeline, since: float, timeout_s: float, what: str) -> float:
    """Seconds from ``since`` until ob: exists and feat: was written after ``since`` and is < 1 s old."""
    client = redis.Redis.from_url(pipeline.settings.redis.url)

    def fresh() -> bool:
        emitted = client.hget("feat:{BTCUSDT}", "emitted_at_us")
        return (
            emitted is not None
            and int(emitted) / 1e6 > since
            and time.time() - int(emitted) / 1e6 < 1.0
            and bool(client.exists("ob:{BTCUSDT}"))
        )

    try:
        _wait(fresh, timeout_s, what, pipeline)
    finally:
        client.close()
    return round(time.time() - since, 3)


def taskmanager_pids() -> list[int]:
    out = subprocess.run(
        ["pgrep", "-f", "org.apache.flink.runtime.taskexecutor.TaskManagerRunner"], capture_output=True, text=True
    )
    return [int(p) for p in out.stdout.split()]


def start_taskmanager() -> None:
    from rig import stack

    subprocess.run(
        ["bash", str(stack.flink_home() / "bin" / "taskmanager.sh"), "start"],
        env={**os.environ, **stack.flink_env()},
        check=True,
        capture_output=True,
    )


def kill_taskmanager(pipeline: Pipeline) -> float:
    """SIGKILL every TaskManager, start a fresh one; seconds until feat: is fresh again (restored job)."""
    victims = taskmanager_pids()
    if not victims:
        raise RuntimeError("no TaskManager to kill: the suite must run on the standalone cluster")
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    killed = time.time()
    start_taskmanager()
    return seconds_until_fresh(pipeline, killed, 240, "fresh features after the TaskManager kill")


def cut_kinesis(pipeline: Pipeline, down_s: float) -> float:
    """Take the Kinesis endpoint down; seconds from its return until feat: is fresh (< 1 s old) again."""
    from rig import stack

    _, _, control = stack.kinesis_ports(pipeline.settings)
    post_json(f"http://127.0.0.1:{control}/outage", {"seconds": down_s})
    time.sleep(down_s)
    return seconds_until_fresh(pipeline, time.time(), 120, "fresh features after the Kinesis outage")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def stream_frames(pipeline: Pipeline) -> list[tuple[str, int]]:
    """(sequence number, frame index) of every frame in the Kinesis stream, read independently."""
    return [(r["SequenceNumber"], row[0]) for r in pipeline.stream_records() for row in frames_of(r["Data"], 0)]


def archived_frames(pipeline: Pipeline) -> list[tuple[str, int]]:
    """(sequence number, frame index) of every frame archived for this run's stream."""
    archiver = SbeArchiver(pipeline.settings)
    rows = []
    for key in archiver.lake.keys(lake_layout.sbe_symbol_prefix("BTCUSDT")):
        if key.rsplit("/", 1)[-1].startswith(f"{pipeline.stream}."):
            t = archiver.lake.get_table(key)
            rows.extend(zip(t.column("sequence_number").to_pylist(), t.column("frame_index").to_pylist()))
    return rows


def run_suite(pipeline: Pipeline, faults: tuple[Fault, ...], clean_s: float = 15.0, settle_s: float = 3.0) -> dict:
    """Start the pipeline, run each fault after the book is valid again, and measure.

    Returns the figures of bench/reanchor.py plus per-fault details.
    """
    client = redis.Redis.from_url(pipeline.settings.redis.url)
    sim = pipeline.sim_url
    details = []
    redis_recovery: list[float] = []
    kinesis_recovery: list[float] = []
    taskmanager_recovery: list[float] = []
    kept: dict[str, list[dict[str, str]]] = {name: [] for name in STREAMS}
    # the replay begins once the job consumes: a start-up backlog made the job lag REST by seconds, so the
    # first drift check and re-anchor took ~10 s and the replay ended before the last fault (a failed CI run)
    pipeline.start(wait_for_job=True)
    with Watchers(pipeline) as watch:
        _wait(lambda: client.hget("ob:{BTCUSDT}", "book_valid") == b"1", 240, "an anchored book", pipeline)
        time.sleep(clean_s)  # a clean stretch: any gap here is a false positive
        false_positives = client.xlen("gaps:{BTCUSDT}")
        for fault in faults:
            gaps_before = client.xlen("gaps:{BTCUSDT}")
            reanchors_before = client.xlen("reanchors:{BTCUSDT}")
            if fault.rest_faults:
                post_json(f"{sim}/sim/faults", fault.rest_faults)
            if fault.stream_faults:
                post_json(f"{sim}/sim/faults", fault.stream_faults)
            started = time.time()
            if fault.redis_down_s:  # Redis comes back empty: keep what its streams said so far
                for name, rows in read_streams(client).items():
                    kept[name].extend(rows)
                redis_recovery.append(restart_redis(pipeline, watch, fault.redis_down_s))
                gaps_before = reanchors_before = 0
            if fault.kinesis_down_s:
                kinesis_recovery.append(cut_kinesis(pipeline, fault.kinesis_down_s))
            if fault.kill_taskmanager:
                taskmanager_recovery.append(kill_taskmanager(pipeline))
            if fault.breaks_sequence is None:  # a gap or not: if one came, wait for its re-anchor too
                time.sleep(2.0)
            if fault.breaks_sequence or client.xlen("gaps:{BTCUSDT}") > gaps_before:
                _wait(
                    lambda gaps_before=gaps_before: client.xlen("gaps:{BTCUSDT}") > gaps_before,
                    60,
                    f"the gap of {fault.name}",
                    pipeline,
                )
                _wait(
                    lambda reanchors_before=reanchors_before: (
                        client.xlen("reanchors:{BTCUSDT}") > reanchors_before
                        and client.hget("ob:{BTCUSDT}", "book_valid") == b"1"
                    ),
                    90 + fault.rest_faults.get("rest_down_s", 0),
                    f"re-anchor after {fault.name}",
                    pipeline,
                )
            time.sleep(settle_s)
            if fault.rest_faults:
                post_json(f"{sim}/sim/faults", {"rest_delay_ms": 0})
            ob = decode(client.hgetall("ob:{BTCUSDT}"))
            exchange = get_json(f"{sim}/sim/book?update_id={ob['last_update_id']}")
            equal = books_equal(ob, exchange)
            new_gaps = client.xlen("gaps:{BTCUSDT}") - gaps_before
            logs = [decode(f) for _, f in client.xrange("reanchors:{BTCUSDT}")][reanchors_before:]
            expected = None if fault.breaks_sequence is None else int(fault.breaks_sequence)
            details.append(
                {
                    "fault": fault.name,
                    "gaps": new_gaps,
                    "expected_gaps": expected,
                    "reanchors": [(r["reason"], r["outcome"], float(r["duration_ms"])) for r in logs],
                    "book_equal": equal,
                    "seconds": round(time.time() - started, 2),
                }
            )
            status = get_json(f"{sim}/sim/status")
            if status["finished"]:
                break
        for name, rows in read_streams(client).items():
            kept[name].extend(rows)
        gap_records, history = kept["gaps:{BTCUSDT}"], kept["feathist:{BTCUSDT}"]
    # freshness: from the gap (ingestor receipt) to the first valid feature vector written after it
    recoveries = []
    for gap in gap_records:
        receipt = int(gap["receipt_time_us"])
        later = [int(h["emitted_at_us"]) for h in history if h["book_valid"] == "1.0" and int(h["emitted_at_us"]) > receipt]
        if later:
            recoveries.append((min(later) - receipt) / 1e6)
    reanchor_ms = [float(r["duration_ms"]) for r in kept["reanchors:{BTCUSDT}"] if r["reason"] == "gap" and r["outcome"] == "ok"]
    drift = kept["drift:{BTCUSDT}"]
    # bronze vs the stream itself: stop the exchange, count what the ingestor queued for Kinesis, stop the producers,
    # put the records Kinesis refused back (the ingestor's spill), wait for the archiver to read to the end, stop it
    # (it flushes and checkpoints on SIGTERM), then read both
    pipeline.procs["simulator"].terminate()
    pipeline.procs["simulator"].wait(30)
    queued = ingestor_frames_queued(pipeline)
    for producer in ("ingestor", "reanchor"):  # both put records (diffs; snapshots in band)
        pipeline.procs[producer].terminate()
        pipeline.procs[producer].wait(30)
    spill = replay_spill(pipeline)
    pipeline.wait_archived()
    pipeline.procs["sbe-archiver"].terminate()
    pipeline.procs["sbe-archiver"].wait(30)
    stream = stream_frames(pipeline)
    archive = archived_frames(pipeline)
    in_stream, resent = exchange_frames(pipeline)
    client.close()
    counted = [d for d in details if d["expected_gaps"] is not None]
    return {
        "faults": len(details),
        "gaps_injected": sum(d["expected_gaps"] for d in counted),
        "gaps_detected": sum(d["gaps"] for d in counted),
        "false_positives": false_positives + sum(max(0, d["gaps"] - d["expected_gaps"]) for d in counted),
        "gaps_after_disconnects": sum(d["gaps"] for d in details if d["expected_gaps"] is None),
        "reanchor_p50_ms": percentile(reanchor_ms, 50),
        "reanchor_p99_ms": percentile(reanchor_ms, 99),
        "reanchors": len(reanchor_ms),
        "books_equal_after_recovery": sum(d["book_equal"] for d in details),
        "failed_reads": watch.book_failures + watch.http_failures,
        "book_reads": watch.book_reads,
        "stale_book_reads": watch.stale_reads,
        "inference_reads": watch.http_reads,
        "read_failures_sample": watch.failures[:5],
        "freshness_recovery_p50_s": percentile(recoveries, 50),
        "freshness_recovery_max_s": max(recoveries, default=None),
        "redis_restart_recovery_s": redis_recovery,
        "kinesis_outage_recovery_s": kinesis_recovery,
        "taskmanager_kill_recovery_s": taskmanager_recovery,
        "reads_during_redis_outage": watch.outage_reads,
        "drift_checks": len(drift),
        "drift_mismatched_levels": sum(int(d["levels_mismatched"]) for d in drift),
        "bronze_frames": len(archive),
        "stream_frames": len(stream),
        "bronze_lost": len(set(stream) - set(archive)),
        "bronze_duplicated": len(archive) - len(set(archive)),
        # frames the ingestor accepted from the exchange that never reached the stream (spilled, not replayed)
        "exchange_frames_queued": queued,
        "exchange_frames_in_stream": in_stream,
        "exchange_frames_resent": resent,
        "spill": spill,
        "details": details,
    }


def ingestor_frames_queued(pipeline: Pipeline) -> int | None:
    """Frames the ingestor accepted (valid) and queued for Kinesis, off its /metrics, once its queue is empty."""
    from prometheus_client.parser import text_string_to_metric_families

    url = f"http://127.0.0.1:{pipeline.ingest_metrics_port}/metrics"
    deadline = time.monotonic() + 60
    while True:
        with urllib.request.urlopen(url, timeout=5) as resp:
            families = {f.name: f for f in text_string_to_metric_families(resp.read().decode())}
        depth = sum(s.value for s in families["ingest_queue_depth"].samples)
        if depth == 0 or time.monotonic() > deadline:
            time.sleep(1.0)  # the writer's last batch in flight
            with urllib.request.urlopen(url, timeout=5) as resp:
                families = {f.name: f for f in text_string_to_metric_families(resp.read().decode())}
            return int(sum(s.value for s in families["ingest_frames_received"].samples if s.name.endswith("_total")))
        time.sleep(0.2)


def replay_spill(pipeline: Pipeline) -> dict:
    """The ingestor's dead-letter spill put back into the stream (``python -m btcpred.ingest.dead_letters replay``)."""
    import boto3

    from btcpred.adapters.kinesis_writer import KinesisWriter
    from btcpred.common.config import aws_client_kwargs
    from btcpred.ingest.dead_letters import DeadLetterSpill, replay

    path = pipeline.log_dir / f"dead-letter-{pipeline.run_id}.jsonl"
    spill = DeadLetterSpill(path, pipeline.settings.ingestor.dead_letter_max_bytes, pipeline.settings.ingestor.dead_letter_files)
    writer = KinesisWriter(boto3.client("kinesis", **aws_client_kwargs(pipeline.settings.kinesis)), pipeline.stream)
    return replay(spill, writer)


def exchange_frames(pipeline: Pipeline) -> tuple[int, int]:
    """Frames in the stream that came from the exchange's WebSocket streams (not REST snapshots):
    (distinct, resent). A batch the writer resent after a timeout Kinesis had in fact accepted (the
    endpoint outage does this) puts the same frames in twice, at-least-once as the job and the
    archiver expect; a frame is its receipt time, source and bytes."""
    from btcpred.udfs.envelope import Source

    frames = [
        (row[1], row[2], row[4])
        for r in pipeline.stream_records()
        for row in frames_of(r["Data"], 0)
        if row[2] in (int(Source.WEBSOCKET), int(Source.PERP_QUOTE))
    ]
    distinct = len(set(frames))
    return distinct, len(frames) - distinct


def books_equal(ob: dict[str, str], exchange: dict) -> bool:
    """ob: against the simulator's top 10 at the same update id, level by level."""
    return all(
        float(ob[f"{side}{i}_p"]) == levels[i - 1][0] / 1e8 and float(ob[f"{side}{i}_q"]) == levels[i - 1][1] / 1e8
        for side, levels in (("bid", exchange["bids"]), ("ask", exchange["asks"]))
        for i in range(1, 11)
    )
