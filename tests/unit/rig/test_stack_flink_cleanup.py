"""Stopping the standalone cluster takes its jobs' Python workers with it: a worker whose TaskManager
was killed stayed behind (found after CI runs: a beam_boot process holding 200 MB under init)."""

import os
import subprocess
import sys
import time

import psutil

from rig import stack


def test_the_cluster_processes_are_its_jvms_and_all_their_descendants(tmp_path, monkeypatch):
    monkeypatch.setattr(stack, "STATE", tmp_path)
    (tmp_path / "flink").mkdir()
    # a stand-in "TaskManager" with a grandchild, as the JVM -> beam_boot -> python worker chain
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while not psutil.Process(parent.pid).children() and time.monotonic() < deadline:
            time.sleep(0.05)
        (tmp_path / "flink" / "flink-root-taskexecutor.pid").write_text(f"{parent.pid}\n999999999\nnot-a-pid\n")
        # and an orphan of a killed TaskManager, known only by the cluster's FLINK_PID_DIR in its environment
        orphan = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"], env={**os.environ, "FLINK_PID_DIR": str(tmp_path / "flink")}
        )
        stranger = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"], env={**os.environ, "FLINK_PID_DIR": "/elsewhere/flink"}
        )
        try:
            found = stack.cluster_processes()
            child = psutil.Process(parent.pid).children()[0]
            assert {p.pid for p in found} == {parent.pid, child.pid, orphan.pid}
        finally:
            for proc in (orphan, stranger):
                proc.kill()
                proc.wait()
    finally:
        for proc in psutil.Process(parent.pid).children(recursive=True):
            proc.kill()
        parent.kill()
        parent.wait()
