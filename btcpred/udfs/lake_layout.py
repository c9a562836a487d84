"""Every key of the data lake, and the bronze SBE table's schema: the lake's one owner, as
``btcpred/udfs/redis_schema.py`` is Redis's. Writers and readers build keys here only, so a reader can
never look where no writer puts anything.

    bronze/sbe/{symbol}/year=/month=/day=/hour=/{stream}.{shard}-{first sequence}.parquet
        every frame of the market-data stream, by receipt hour (btcpred/reliability/sbe_archiver.py)
    bronze/sbe/_checkpoints/{stream}/{shard}.json      the archiver's position per shard
    bronze/sbe/_leases/{stream}/{shard}.json           which archiver may write the shard, until when
    bronze/rest/{symbol}/{depth|agg_trades}/year=/month=/day=/{...}.parquet   (btcpred/reliability/rest_poller.py)
    bronze/{recording kind}/{symbol}/year=/month=/day=/{file}   recordings copied unchanged (btcpred/batch/silver.py)
    silver/{db_ready|bars_1m|snapshots}/{symbol}/year=/month=/day=/{recording}.parquet
    silver/db_ready/{symbol}/archive/{stream}/year=/month=/day=/hour=.parquet   archive hours (btcpred/batch/archive.py)
    silver/predictions/{symbol}/year=/month=/day=/hour=.parquet   every published prediction (btcpred/batch/prediction_archive.py)
    gold/model_artifacts/{model_version}/{model.onnx, metadata.json}

Partitions are UTC.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pyarrow as pa

HOUR_US = 3_600_000_000
SILVER_FEATURES = "silver/db_ready/"  # what the feature store loads

# One row per archived frame; a record that is not an envelope is kept whole (template_id -1).
SBE_SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("shard_id", pa.string()),
        ("sequence_number", pa.string()),
        ("frame_index", pa.int32()),
        ("receipt_time_us", pa.int64()),
        ("source", pa.int8()),
        ("template_id", pa.int32()),
        ("frame", pa.binary()),
    ]
)

_HOUR_PATH = re.compile(r"year=(\d{4})/month=(\d{2})/day=(\d{2})/hour=(\d{2})/")


def _utc(time_us: int) -> datetime:
    return datetime.fromtimestamp(time_us / 1e6, tz=timezone.utc)


def _day_path(ts_ms: int) -> str:
    day = _utc(ts_ms * 1000)
    return f"year={day:%Y}/month={day:%m}/day={day:%d}"


def day_partition(symbol: str, ts_ms: int) -> str:
    return f"{symbol}/{_day_path(ts_ms)}"


def hour_partition(symbol: str, time_us: int) -> str:
    t = _utc(time_us)
    return f"{symbol}/year={t:%Y}/month={t:%m}/day={t:%d}/hour={t:%H}"


# ------------------------------------------------------------------------- bronze: the SBE archive
def sbe_symbol_prefix(symbol: str) -> str:
    return f"bronze/sbe/{symbol}/"


def sbe_hour_prefix(symbol: str, hour_us: int) -> str:
    return f"bronze/sbe/{hour_partition(symbol, hour_us)}/"


def sbe_object_prefix(stream: str, shard_id: str) -> str:
    """The start of the file name of every object one shard of ``stream`` writes."""
    return f"{stream}.{shard_id}-"


def sbe_object_key(symbol: str, receipt_us: int, stream: str, shard_id: str, first_sequence: str) -> str:
    return f"{sbe_hour_prefix(symbol, receipt_us)}{sbe_object_prefix(stream, shard_id)}{first_sequence}.parquet"


def sbe_checkpoint_key(stream: str, shard_id: str) -> str:
    return f"bronze/sbe/_checkpoints/{stream}/{shard_id}.json"


def sbe_lease_key(stream: str, shard_id: str) -> str:
    return f"bronze/sbe/_leases/{stream}/{shard_id}.json"


def is_stream_object(key: str, stream: str) -> bool:
    return key.rsplit("/", 1)[-1].startswith(f"{stream}.")


def hour_of(key: str) -> int | None:
    """Start (µs) of the receipt hour an SBE archive key is partitioned under; None for other keys."""
    m = _HOUR_PATH.search(key)
    if m is None:
        return None
    year, month, day, hour = (int(g) for g in m.groups())
    return int(datetime(year, month, day, hour, tzinfo=timezone.utc).timestamp()) * 1_000_000


# ------------------------------------------------------------------------- bronze: REST and recordings
def rest_prefix(symbol: str, data_type: str) -> str:
    return f"bronze/rest/{symbol}/{data_type}/"


def rest_key(symbol: str, data_type: str, ts_ms: int, name: str) -> str:
    """``name`` without suffix: ``{fetched_ms}-{lastUpdateId}`` (depth), ``{first id}-{last id}`` (trades)."""
    return f"{rest_prefix(symbol, data_type)}{_day_path(ts_ms)}/{name}.parquet"


def recording_prefix(kind: str) -> str:
    return f"bronze/{kind}/"


def recording_key(kind: str, symbol: str, first_ms: int, file_name: str) -> str:
    return f"{recording_prefix(kind)}{day_partition(symbol, first_ms)}/{file_name}"


# ------------------------------------------------------------------------- silver and gold
def silver_key(dataset: str, partition: str, stem: str) -> str:
    return f"silver/{dataset}/{partition}/{stem}.parquet"


def archive_silver_key(symbol: str, stream: str, hour_us: int) -> str:
    """Where an archive hour's feature rows go."""
    h = _utc(hour_us)
    return f"{SILVER_FEATURES}{symbol}/archive/{stream}/year={h:%Y}/month={h:%m}/day={h:%d}/hour={h:%H}.parquet"


def predictions_silver_key(symbol: str, hour_ms: int) -> str:
    """Where an hour of published predictions (by cycle boundary) goes."""
    return f"silver/predictions/{hour_partition(symbol, hour_ms * 1000)}.parquet"


def archive_loaded_key(symbol: str, stream: str, hour_us: int) -> str:
    """The marker written once an archive hour's rows are in the feature store: with its silver,
    it marks the hour as built (silver alone is not: the load may have failed after it)."""
    return archive_silver_key(symbol, stream, hour_us).removesuffix(".parquet") + ".loaded.json"


def artifact_prefix(model_version: str) -> str:
    return f"gold/model_artifacts/{model_version}"
