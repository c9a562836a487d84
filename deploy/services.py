"""The one list of the project's long-running processes and how each is started.

The local no-Docker pipeline (``rig/pipeline.py``) spawns these commands and
``docker-compose.yml`` runs the same ones in containers; a test holds the two together,
so a service cannot start one way locally and another way in compose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ServiceSpec:
    module: str  # run as ``python -m <module>``
    what: str
    # serves Prometheus /metrics, scraped as a job of the service's name (the Flink job reports
    # through Flink's own reporter, job "flink"; the simulator is the test rig's)
    scraped: bool = True
    # how it runs in AWS (deploy/managed_flink/template.yaml); None: the test rig's, never shipped
    aws: Literal["ecs-service", "managed-flink", "scheduled-task"] | None = "ecs-service"


SERVICES: dict[str, ServiceSpec] = {
    "simulator": ServiceSpec(
        "rig.simulator.server", "exchange simulator replaying a real capture (SBE WS + REST)", scraped=False, aws=None
    ),
    "ingestor": ServiceSpec("btcpred.ingest.ingestor", "SBE WebSocket -> Kinesis"),
    "inference": ServiceSpec("btcpred.inference.service", "2 s predictions over HTTP from Redis"),
    "reanchor": ServiceSpec("btcpred.reliability.reanchor_service", "gap -> REST snapshot in band -> atomic re-anchor"),
    "rest-poller": ServiceSpec("btcpred.reliability.rest_poller", "1-minute REST snapshots and aggregate trades -> bronze"),
    "sbe-archiver": ServiceSpec("btcpred.reliability.sbe_archiver", "every Kinesis frame -> bronze/sbe"),
    "retrain": ServiceSpec(
        "btcpred.batch.retrain", "hourly: new archive hours -> feature store -> candidates -> gate", aws="scheduled-task"
    ),
    "flink-job": ServiceSpec(
        "btcpred.flink_jobs.hot_path_job",
        "the hot-path job (mini cluster; a cluster runs its file)",
        scraped=False,
        aws="managed-flink",
    ),
}
FLINK_JOB_FILE = "btcpred/flink_jobs/hot_path_job.py"  # what `flink run -py` submits, locally and in compose
FLINK_SCRAPE_JOB = "flink"  # Flink's Prometheus reporter: the job's and the cluster's metrics


def scrape_jobs() -> tuple[str, ...]:
    """Prometheus's jobs, locally (rig/stack.py) and in compose (deploy/prometheus/prometheus.yml)."""
    return (*(name for name, spec in SERVICES.items() if spec.scraped), FLINK_SCRAPE_JOB)


def command(name: str, python: str = "python", *args: str) -> list[str]:
    return [python, "-m", SERVICES[name].module, *args]
