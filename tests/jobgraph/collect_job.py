"""The live job's graph over records from a file, every write collected to JSON lines (the job-graph tier's runner).

    python tests/jobgraph/collect_job.py RECORDS.json OUT.jsonl CHECKPOINT_DIR EMIT_INTERVAL_MS OUT_OF_ORDERNESS_MS

Run as a script, so the collecting sink below lives in ``__main__`` and PyFlink ships it
to the Python worker by value (the tests are not an installed package).
"""

from __future__ import annotations

import json
import sys

from pyflink.common import Types
from pyflink.datastream import ProcessFunction, RuntimeContext, StreamExecutionEnvironment

from btcpred.common.config import load_settings
from btcpred.flink_jobs import hot_path_job
from btcpred.udfs.redis_writes import RedisWrite


class CollectWrites(ProcessFunction):
    """Terminal operator: every write as one JSON line ``[kind, key, fields, receipt_time_us]``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def open(self, runtime_context: RuntimeContext) -> None:
        self.out = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def close(self) -> None:
        self.out.close()

    def process_element(self, value, ctx: ProcessFunction.Context):
        for w in [value] if isinstance(value, RedisWrite) else value:
            self.out.write(json.dumps([w.kind, w.key, w.fields, w.receipt_time_us]) + "\n")
        self.out.flush()
        return iter(())


def main(records_path: str, out_path: str, checkpoint_dir: str, emit_interval_ms: str, out_of_orderness_ms: str) -> None:
    settings = load_settings(environ={})
    settings = settings.model_copy(
        update={
            "flink": settings.flink.model_copy(
                update={
                    "checkpoint_dir": checkpoint_dir,
                    "savepoint_dir": None,
                    "parallelism": 1,
                    "state_backend": "hashmap",
                    "emit_interval_ms": int(emit_interval_ms),
                    "out_of_orderness_ms": int(out_of_orderness_ms),
                }
            )
        }
    )
    with open(records_path, encoding="utf-8") as f:
        records = json.load(f)
    open(out_path, "w").close()
    env = StreamExecutionEnvironment.get_execution_environment(hot_path_job.job_configuration(settings))
    hot_path_job.configure(env, settings, jars=[])  # no Kinesis: no connector jar
    source = env.from_collection(records, type_info=Types.STRING())
    hot_path_job.build(
        env,
        settings,
        source=source,
        sink=lambda writes: writes.process(CollectWrites(out_path)).name("Collected writes").uid("collect"),
    )
    env.execute("hot-path-graph-test")


if __name__ == "__main__":
    main(*sys.argv[1:])
