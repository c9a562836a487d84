"""The mini cluster's JVM gets a bounded heap, as a TaskManager has, unless JVM_ARGS is set by hand."""

from btcpred.common.config import FlinkJobConfig
from btcpred.flink_jobs.state_storage import mini_cluster_environment


def test_the_heap_is_bounded_by_config_and_a_hand_set_jvm_args_wins():
    env = mini_cluster_environment(FlinkJobConfig(mini_cluster_heap_mb=512), environ={})
    assert env["JVM_ARGS"] == "-Xmx512m" and env["FLINK_LIB_DIR"].endswith("lib")
    assert mini_cluster_environment(FlinkJobConfig(), environ={})["JVM_ARGS"] == "-Xmx768m"
    assert "JVM_ARGS" not in mini_cluster_environment(FlinkJobConfig(), environ={"JVM_ARGS": "-XX:NativeMemoryTracking=summary"})
