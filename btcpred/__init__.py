"""btcpred: the BTCUSDT 10-second predictor, one package in layers (checked by ``.importlinter``).

    processes   ingest | flink_jobs | inference | reliability | batch   (siblings: none imports another)
    adapters    one module per external system: Redis, Kinesis, the S3 lake, registry/db, artifacts, Binance REST
    common      the typed configuration, health/metrics server, the model artifact contract
    udfs        the pure core: events, SBE codec, envelope, book and sync rules, windows, features,
                the symbol state machine, Redis schema, lake layout; no I/O library

The test rig (``rig/``: exchange simulator, local stack, clusters, fault suite), benches and tests
live beside the package in the checkout and are never installed.
"""

from btcpred.udfs import legacy_paths

legacy_paths.install()  # before anything could unpickle state written under the pre-package module paths
