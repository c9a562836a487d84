"""The mini cluster's JVM gets a fixed, pre-touched heap, as a TaskManager's is fixed, unless JVM_ARGS is set by hand,
and jemalloc under it when the library is there (glibc held to two arenas when it is not)."""

from pathlib import Path

from btcpred.common.config import FlinkJobConfig
from btcpred.flink_jobs.state_storage import jemalloc_installed, mini_cluster_environment, state_options

JEMALLOC = Path("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")


def test_the_heap_is_bounded_by_config_and_a_hand_set_jvm_args_wins():
    env = mini_cluster_environment(FlinkJobConfig(mini_cluster_heap_mb=384), {}, None)
    assert env["JVM_ARGS"] == "-Xms384m -Xmx384m -XX:+AlwaysPreTouch" and env["FLINK_LIB_DIR"].endswith("lib")
    assert mini_cluster_environment(FlinkJobConfig(), {}, None)["JVM_ARGS"] == "-Xms512m -Xmx512m -XX:+AlwaysPreTouch"
    assert "JVM_ARGS" not in mini_cluster_environment(FlinkJobConfig(), {"JVM_ARGS": "-XX:NativeMemoryTracking=summary"}, None)


def test_jemalloc_is_preloaded_after_what_the_user_preloads_and_only_once():
    assert mini_cluster_environment(FlinkJobConfig(), {}, JEMALLOC)["LD_PRELOAD"] == str(JEMALLOC)
    env = mini_cluster_environment(FlinkJobConfig(), {"LD_PRELOAD": "/opt/prof.so"}, JEMALLOC)
    assert env["LD_PRELOAD"] == f"/opt/prof.so {JEMALLOC}" and "MALLOC_ARENA_MAX" not in env
    assert "LD_PRELOAD" not in mini_cluster_environment(FlinkJobConfig(), {"LD_PRELOAD": str(JEMALLOC)}, JEMALLOC)


def test_without_jemalloc_or_when_glibc_is_chosen_glibc_keeps_two_arenas_unless_the_user_set_them():
    assert mini_cluster_environment(FlinkJobConfig(), {}, None)["MALLOC_ARENA_MAX"] == "2"
    glibc = mini_cluster_environment(FlinkJobConfig(allocator="glibc"), {}, JEMALLOC)
    assert "LD_PRELOAD" not in glibc and glibc["MALLOC_ARENA_MAX"] == "2"
    assert mini_cluster_environment(FlinkJobConfig(), {"MALLOC_ARENA_MAX": "4"}, None)["MALLOC_ARENA_MAX"] == "4"


def test_jemalloc_is_found_only_where_the_library_file_is(tmp_path):
    assert jemalloc_installed([tmp_path]) is None
    (tmp_path / "libjemalloc.so.2").write_bytes(b"")
    assert jemalloc_installed([tmp_path / "missing", tmp_path]) == tmp_path / "libjemalloc.so.2"


def test_rocksdb_reports_its_native_memory_and_the_heap_backend_does_not():
    rocks = state_options(FlinkJobConfig(state_backend="rocksdb"))
    assert rocks["state.backend.rocksdb.metrics.block-cache-usage"] == "true"
    assert rocks["state.backend.rocksdb.metrics.size-all-mem-tables"] == "true"
    assert not any(k.startswith("state.backend.rocksdb") for k in state_options(FlinkJobConfig(state_backend="hashmap")))
