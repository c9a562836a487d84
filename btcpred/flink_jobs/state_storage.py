"""Where the job keeps its state off-heap and on S3, for runs we manage ourselves.

Managed Flink owns state backend, checkpoint storage and snapshots itself and rejects
code that sets ``state.*``, ``s3.*`` or ``metrics.*``; so these options are applied only
on the local mini cluster and on a standalone cluster (whose config file gets the
filesystem keys, since a cluster reads them at start, not per job).

Locally checkpoints and savepoints go to the S3 API emulator through Flink's presto S3
plugin (the one Flink recommends for checkpoints), fetched by ``scripts/setup.sh``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

from btcpred.common.config import FlinkJobConfig, S3Config, Settings

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
FETCHED = REPO / "deploy" / "flink" / "target"  # what scripts/setup.sh builds and fetches from Maven Central
FETCHED_PLUGINS = FETCHED / "plugins"  # s3-fs-presto
CONNECTOR_JAR = FETCHED / "btcpred-flink-connectors.jar"  # the Kinesis connector uber-jar
LIBRARY_DIRS = (Path("/usr/lib/x86_64-linux-gnu"), Path("/usr/lib/aarch64-linux-gnu"), Path("/usr/lib"))
LOCAL_PLUGINS = REPO / ".local" / "flink" / "plugins"
MINI_CLUSTER_LIB = REPO / ".local" / "flink" / "mini-cluster-lib"


def storage_uri(location: str) -> str:
    """A URI for Flink: ``s3://...`` as is, a repo-relative or absolute path as ``file://``."""
    if "://" in location:
        return location
    path = Path(location)
    return (path if path.is_absolute() else REPO / path).resolve().as_uri()


ROCKSDB_MEMORY_METRICS = ("block-cache-usage", "block-cache-pinned-usage", "size-all-mem-tables", "estimate-table-readers-mem")


def state_options(cfg: FlinkJobConfig) -> dict[str, str]:
    """State backend and checkpoint/savepoint locations (RocksDB, incremental, retained)."""
    opts = {
        "state.backend.type": cfg.state_backend,
        "execution.checkpointing.incremental": str(cfg.incremental_checkpoints).lower(),
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
    }
    if cfg.state_backend == "rocksdb":
        # RocksDB's native memory as gauges (off the heap, so no JVM metric shows it): what the soak
        # reads beside the process's resident size to tell state from allocator growth
        opts.update({f"state.backend.rocksdb.metrics.{m}": "true" for m in ROCKSDB_MEMORY_METRICS})
    if cfg.checkpoint_dir:
        opts["execution.checkpointing.dir"] = storage_uri(cfg.checkpoint_dir)
    if cfg.savepoint_dir:
        opts["execution.checkpointing.savepoint-dir"] = storage_uri(cfg.savepoint_dir)
    return opts


def metrics_options(cfg: FlinkJobConfig) -> dict[str, str]:
    """Flink's Prometheus reporter (pyflink ships it in plugins/): the local mini cluster's; a cluster sets its own."""
    return {
        "metrics.reporter.prom.factory.class": "org.apache.flink.metrics.prometheus.PrometheusReporterFactory",
        "metrics.reporter.prom.port": cfg.metrics_reporter_ports,
    }


def s3_filesystem_options(s3: S3Config) -> dict[str, str]:
    """Flink's ``s3.*`` keys for the emulator; none for real S3 (the instance role serves)."""
    if not s3.endpoint:
        return {}
    return {
        "s3.endpoint": s3.endpoint,
        "s3.path.style.access": "true",
        "s3.access-key": s3.access_key_id.get_secret_value(),
        "s3.secret-key": s3.secret_access_key.get_secret_value(),
    }


def flink_home() -> Path:
    """The Flink distribution PyFlink ships (bin/, lib/, plugins/) inside the pip package."""
    import pyflink

    return Path(pyflink.__file__).parent


def linked(directory: Path, sources: list[Path]) -> Path:
    """``directory`` holding a link to each existing one of ``sources`` by name: a classpath or
    plugins folder assembled from the pip package and what setup fetched, without touching either."""
    directory.mkdir(parents=True, exist_ok=True)
    for src in sources:
        link = directory / src.name
        if src.exists() and not link.exists():
            link.symlink_to(src, target_is_directory=src.is_dir())
    return directory


def plugins_dir() -> Path:
    """pyflink's bundled plugins (Prometheus reporter, ...) plus the fetched S3 plugin, as links."""
    sources = [p for p in (flink_home() / "plugins").iterdir() if p.is_dir()]
    if FETCHED_PLUGINS.is_dir():
        sources += [p for p in FETCHED_PLUGINS.iterdir() if p.is_dir()]
    return linked(LOCAL_PLUGINS, sources)


def mini_cluster_lib_dir() -> Path:
    """pyflink's lib jars plus the Prometheus reporter, as links: the mini cluster's classpath.

    The mini cluster looks up metric reporters on its classpath only, not in plugins/
    ("reporter factory ... could not be found. Available factories: []"), and PyFlink
    builds that classpath from ``FLINK_LIB_DIR``.
    """
    home = flink_home()
    return linked(MINI_CLUSTER_LIB, [*home.glob("lib/*.jar"), *home.glob("plugins/metrics-prometheus/*.jar")])


class MissingSetup(RuntimeError):
    """A file scripts/setup.sh fetches or builds (the connector jar, the S3 plugin) is not there."""


JEMALLOC = "libjemalloc.so.2"  # Debian's libjemalloc2 (scripts/setup.sh installs it)
GLIBC_ARENA_MAX = "2"  # the fallback Flink documents for glibc: fewer arenas, less fragmentation


def jemalloc_installed(library_dirs: Iterable[Path] = LIBRARY_DIRS) -> Path | None:
    return next((d / JEMALLOC for d in library_dirs if (d / JEMALLOC).is_file()), None)


def mini_cluster_environment(cfg: FlinkJobConfig, environ: Mapping[str, str], jemalloc: Path | None) -> dict[str, str]:
    """Environment for PyFlink's gateway JVM (the mini cluster). Without FLINK_HOME, pyflink
    overwrites FLINK_LIB_DIR with its own lib folder, so both are set.

    The heap is fixed (``flink.mini_cluster_heap_mb``) as a TaskManager's is (Flink starts one with
    -Xms equal to -Xmx) and pre-touched, so the process's resident size holds it all from the start:
    the JVM's default (a quarter of the machine) let G1 grow it under load, and the 2-hour soak of
    session 31 saw G1 commit 178 -> 317 MB of heap in its last 40 minutes, steps its RSS slope could
    not tell from a leak. ``JVM_ARGS`` already set (by hand, for a profiler) is left as it is."""
    env = {"FLINK_HOME": str(flink_home()), "FLINK_LIB_DIR": str(mini_cluster_lib_dir())}
    if "JVM_ARGS" not in environ:
        heap = cfg.mini_cluster_heap_mb
        env["JVM_ARGS"] = f"-Xms{heap}m -Xmx{heap}m -XX:+AlwaysPreTouch"
    return {**env, **allocator_environment(cfg, environ, jemalloc)}


def allocator_environment(cfg: FlinkJobConfig, environ: Mapping[str, str], jemalloc: Path | None) -> dict[str, str]:
    """The native allocator of the JVMs we start (the mini cluster, the standalone cluster's scripts).

    RocksDB allocates outside the heap through malloc; under glibc its churn fragments the arenas
    and the JVM's resident size grows by tens of MB an hour with flat state (the 2-hour soak of
    session 30). jemalloc is preloaded (into the JVM, and so into its Python workers) as Flink's
    own images do; without the library (``jemalloc`` None: ``jemalloc_installed()`` found none),
    glibc is held to two arenas. A managed cluster brings its own."""
    env: dict[str, str] = {}
    if cfg.allocator == "jemalloc" and jemalloc is not None:
        preload = environ.get("LD_PRELOAD", "")
        if str(jemalloc) not in preload.split():
            env["LD_PRELOAD"] = " ".join(filter(None, [preload, str(jemalloc)]))
    else:
        if cfg.allocator == "jemalloc":
            log.warning("%s not found (apt-get install libjemalloc2): Flink's JVMs run on glibc malloc", JEMALLOC)
        env["MALLOC_ARENA_MAX"] = environ.get("MALLOC_ARENA_MAX", GLIBC_ARENA_MAX)
    return env


def uses_s3(cfg: FlinkJobConfig) -> bool:
    return any((d or "").startswith(("s3://", "s3p://", "s3a://")) for d in (cfg.checkpoint_dir, cfg.savepoint_dir))


def initialize_mini_cluster_filesystems(settings: Settings) -> None:
    """Load the S3 plugin into this process's JVM: the mini cluster does not load plugins by itself.

    Must run before the environment executes; without it a ``s3://`` checkpoint
    directory fails with UnsupportedFileSystemSchemeException.
    """
    if not uses_s3(settings.flink):
        return
    if not (FETCHED_PLUGINS / "s3-fs-presto").is_dir():
        raise MissingSetup(f"{FETCHED_PLUGINS}/s3-fs-presto missing: run scripts/setup.sh (mvn package in deploy/flink)")
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    conf = jvm.org.apache.flink.configuration.Configuration()
    for key, value in s3_filesystem_options(settings.s3).items():
        conf.setString(key, value)
    # pyflink's gateway points FLINK_PLUGINS_DIR at its own plugins folder, so find ours explicitly
    finder = jvm.org.apache.flink.core.plugin.DirectoryBasedPluginFinder(jvm.java.io.File(str(plugins_dir())).toPath())
    patterns = jvm.org.apache.flink.configuration.CoreOptions.getPluginParentFirstLoaderPatterns(conf)
    manager = jvm.org.apache.flink.core.plugin.DefaultPluginManager(finder.findPlugins(), patterns)
    jvm.org.apache.flink.core.fs.FileSystem.initialize(conf, manager)
