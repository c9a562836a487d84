"""A newer version of the hot-path job, for the upgrade test: one more operator before the sink.

The stateful operators keep their uids, so a savepoint of version 1 restores into this
graph without --allowNonRestoredState; the new operator starts with no state.
"""

from pyflink.common import Types
from pyflink.datastream import DataStream, ProcessFunction, RuntimeContext

from btcpred.flink_jobs import hot_path_job

AUDIT_NAME = "Redis write audit (v2)"


class WriteAudit(ProcessFunction):
    """Counts the write batches on their way to Redis (a metric a v1 job does not have)."""

    def open(self, runtime_context: RuntimeContext) -> None:
        self.batches = runtime_context.get_metrics_group().counter("auditedWriteBatches")

    def process_element(self, value, ctx: ProcessFunction.Context):
        self.batches.inc()
        yield value


def audit(writes: DataStream) -> DataStream:
    return writes.process(WriteAudit(), output_type=Types.PICKLED_BYTE_ARRAY()).name(AUDIT_NAME).uid("write-audit")


if __name__ == "__main__":
    hot_path_job.run(before_sink=audit, job_name="btcusdt-hot-path-v2")
