"""The one list of the project's long-running processes and how each is started.

The local no-Docker pipeline (``rig/pipeline.py``) spawns these commands and
``docker-compose.yml`` runs the same ones in containers; a test holds the two together,
so a service cannot start one way locally and another way in compose.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceSpec:
    module: str  # run as ``python -m <module>``
    what: str


SERVICES: dict[str, ServiceSpec] = {
    "simulator": ServiceSpec("rig.simulator.server", "exchange simulator replaying a real capture (SBE WS + REST)"),
    "ingestor": ServiceSpec("btcpred.ingest.ingestor", "SBE WebSocket -> Kinesis"),
    "inference": ServiceSpec("btcpred.inference.service", "2 s predictions over HTTP from Redis"),
    "reanchor": ServiceSpec("btcpred.reliability.reanchor_service", "gap -> REST snapshot in band -> atomic re-anchor"),
    "rest-poller": ServiceSpec("btcpred.reliability.rest_poller", "1-minute REST snapshots and aggregate trades -> bronze"),
    "sbe-archiver": ServiceSpec("btcpred.reliability.sbe_archiver", "every Kinesis frame -> bronze/sbe"),
    "retrain": ServiceSpec("btcpred.batch.retrain", "hourly: new archive hours -> feature store -> candidates -> gate"),
    "flink-job": ServiceSpec("btcpred.flink_jobs.hot_path_job", "the hot-path job (mini cluster; a cluster runs its file)"),
}
FLINK_JOB_FILE = "btcpred/flink_jobs/hot_path_job.py"  # what `flink run -py` submits, locally and in compose


def command(name: str, python: str = "python", *args: str) -> list[str]:
    return [python, "-m", SERVICES[name].module, *args]
