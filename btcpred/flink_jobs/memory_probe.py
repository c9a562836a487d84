"""A memory probe for soaks: where the Python worker's heap grows, by allocating line.

Off unless ``PYFLINK_MEMORY_PROBE_DIR`` is set in the worker's environment (not ``BTCPRED_``: those
are settings, and unknown ones are refused): then the first operator to open starts ``tracemalloc``
and a daemon thread writes, every
``PYFLINK_MEMORY_PROBE_EVERY_S`` (300), the 25 allocation sites that grew most since the first
report, to ``probe-<pid>.txt``. A resident size that grows while these stay flat is native memory
(gRPC, protobuf, the allocator), which tracemalloc cannot see.
"""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from pathlib import Path

_started = False


def start_if_asked() -> None:
    global _started
    directory = os.environ.get("PYFLINK_MEMORY_PROBE_DIR")
    if not directory or _started:
        return
    _started = True
    every_s = float(os.environ.get("PYFLINK_MEMORY_PROBE_EVERY_S", "300"))
    tracemalloc.start(8)
    out = Path(directory) / f"probe-{os.getpid()}.txt"

    def report() -> None:
        baseline = None
        while True:
            time.sleep(every_s)
            snapshot = tracemalloc.take_snapshot()
            if baseline is None:
                baseline = snapshot
                continue
            traced, _ = tracemalloc.get_traced_memory()
            lines = [f"--- {time.strftime('%H:%M:%S')} traced {traced / 2**20:.1f} MB"]
            for stat in snapshot.compare_to(baseline, "traceback")[:25]:
                lines.append(f"{stat.size_diff / 1024:+.0f} KiB in {stat.count_diff:+d} blocks")
                lines.extend(f"    {frame.filename}:{frame.lineno}" for frame in stat.traceback[:6])
            with out.open("a") as fh:
                fh.write("\n".join(lines) + "\n")

    threading.Thread(target=report, name="memory-probe", daemon=True).start()
