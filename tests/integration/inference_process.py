"""``python -m btcpred.inference.service`` as a process of a test: free ports, its log in the test's
folder, stopped on exit. Tests that need the real server (uvicorn, the lifespan, the metrics port)
start it through this one place."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rig.pipeline import free_port, wait_http
from tests.conftest import REPO


class InferenceProcess:
    def __init__(self, tmp_path: Path, ready_path: str = "/health", **inference: str | int) -> None:
        """``inference``: settings of the ``inference`` section (``cadence_ms=250``); the model source is
        persistence unless given. ``ready_path``: the route answered once it serves (``/health`` turns
        red when cycles fail: such a test waits for ``/model``)."""
        self.port, self.metrics_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "inference.log"
        self.ready_path = ready_path
        settings = {"model_source": "persistence", **inference, "port": self.port, "metrics_port": self.metrics_port}
        self.env = {**os.environ, **{f"BTCPRED_INFERENCE__{k.upper()}": str(v) for k, v in settings.items()}}
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> InferenceProcess:
        with self.log.open("wb") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "btcpred.inference.service"], cwd=REPO, env=self.env, stdout=fh, stderr=subprocess.STDOUT
            )
        try:
            wait_http(f"{self.base}{self.ready_path}", 30, self.proc, self.log)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
