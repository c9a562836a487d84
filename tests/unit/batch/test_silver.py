"""Silver's feature-store parquet is the table's row, column for column: names from
``FEATURE_STORE_COLUMNS`` in its order, and the types the COPY into PostgreSQL expects."""

import pyarrow as pa

from btcpred.adapters.db.schema import FEATURE_STORE_COLUMNS
from btcpred.batch.feature_builder import FeatureRow
from btcpred.batch.silver import feature_table
from btcpred.udfs.features import FEATURE_NAMES


def test_a_row_becomes_the_feature_store_row_with_its_types():
    row = FeatureRow(
        ts_ms=1_723_111_200_000,
        features={name: 0.5 for name in FEATURE_NAMES},
        mid=61_000.5,
        book_update_id=50_093_271_811,
        book_valid=True,
        book_age_ms=12.0,
        label_mid=61_001.0,
        label_return=None,
        label_age_ms=None,
        data_quality=0.75,
    )
    table = feature_table([row], "binance.com-spot", "BTCUSDT", "archive:test")
    assert tuple(table.column_names) == FEATURE_STORE_COLUMNS
    assert table.schema.field("book_update_id").type == pa.int64()
    assert table.schema.field("book_valid").type == pa.bool_()
    assert table.schema.field("label_return").type == pa.float64()
    assert table.to_pylist()[0]["book_update_id"] == 50_093_271_811
    assert table.to_pylist()[0]["label_return"] is None and table.to_pylist()[0]["data_quality"] == 0.75
