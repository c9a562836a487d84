"""The lake's keys, as written out by hand: a reader and a writer of each dataset meet on these."""

from btcpred.udfs import lake_layout as layout

HOUR = 1723158000_000_000  # 2024-08-08 23:00 UTC


def test_sbe_archive_keys_and_the_hour_read_back_from_them():
    key = layout.sbe_object_key("BTCUSDT", HOUR + 1_234_567_890, "btcusdt-md", "shardId-000000000001", "4960")
    assert key == "bronze/sbe/BTCUSDT/year=2024/month=08/day=08/hour=23/btcusdt-md.shardId-000000000001-4960.parquet"
    assert key.startswith(layout.sbe_hour_prefix("BTCUSDT", HOUR)) and key.startswith(layout.sbe_symbol_prefix("BTCUSDT"))
    assert layout.hour_of(key) == HOUR and layout.hour_of("bronze/rest/BTCUSDT/depth/x.parquet") is None
    assert layout.is_stream_object(key, "btcusdt-md") and not layout.is_stream_object(key, "btcusdt")
    assert (
        layout.sbe_checkpoint_key("btcusdt-md", "shardId-000000000001")
        == "bronze/sbe/_checkpoints/btcusdt-md/shardId-000000000001.json"
    )


def test_rest_recording_silver_and_gold_keys():
    assert (
        layout.rest_key("BTCUSDT", "depth", 1723161255123, "1723161255123-50093239188")
        == "bronze/rest/BTCUSDT/depth/year=2024/month=08/day=08/1723161255123-50093239188.parquet"
    )
    assert layout.rest_key("BTCUSDT", "agg_trades", 1723161255123, "1-2").startswith(layout.rest_prefix("BTCUSDT", "agg_trades"))
    assert (
        layout.recording_key("ws_capture", "BTCUSDT", 1723161255123, "spot.gz")
        == "bronze/ws_capture/BTCUSDT/year=2024/month=08/day=08/spot.gz"
    )
    assert (
        layout.silver_key("bars_1m", layout.day_partition("BTCUSDT", 1723161255123), "spot")
        == "silver/bars_1m/BTCUSDT/year=2024/month=08/day=08/spot.parquet"
    )
    assert (
        layout.archive_silver_key("BTCUSDT", "btcusdt-md", HOUR)
        == "silver/db_ready/BTCUSDT/archive/btcusdt-md/year=2024/month=08/day=08/hour=23.parquet"
    )
    assert layout.archive_silver_key("BTCUSDT", "s", HOUR).startswith(layout.SILVER_FEATURES)
    assert layout.artifact_prefix("mlp-1") == "gold/model_artifacts/mlp-1"
