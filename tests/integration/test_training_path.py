"""Bronze -> silver -> feature store -> training -> registry -> report, on real data and real servers."""
import json
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from batch import registry
from batch.artifact_store import fetch
from batch.lake import Lake
from batch.train import run
from common.model_artifact import ArtifactError
from tests.conftest import BINANCE_US_BOOK, REPO

pytestmark = pytest.mark.integration


@pytest.fixture()
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / BINANCE_US_BOOK.name).symlink_to(BINANCE_US_BOOK)
    return d


@pytest.mark.timeout(240)
def test_training_run_registers_verified_models_and_promotes(isolated_settings, pg_engine, data_dir, tmp_path):
    result = run(isolated_settings, "binance.us", "BTCUSDT", tmp_path / "report", data_dir, promote=True)
    lake = Lake(isolated_settings.s3)
    assert any(k.startswith("bronze/depth20/BTCUSDT/year=2026/month=05/day=02/") for k in lake.keys("bronze/"))
    for dataset in ("db_ready", "bars_1m", "snapshots"):
        assert lake.keys(f"silver/{dataset}/BTCUSDT/year=2026/month=05/day=02/"), dataset
    bars = lake.get_table(lake.keys("silver/bars_1m/")[0])
    assert bars.num_rows == 241 and all(lo <= hi for lo, hi in zip(bars.column("low").to_pylist(), bars.column("high").to_pylist()))

    mlp, ridge = result["versions"]["mlp"], result["versions"]["ridge_ofi"]
    assert registry.production(pg_engine).model_version == mlp
    assert registry.get(pg_engine, ridge).status == "staging"
    onnx_bytes, meta = fetch(lake, registry.get(pg_engine, mlp).artifact_uri, registry.get(pg_engine, mlp).checksum_sha256)
    assert meta.feature_names == registry.get(pg_engine, mlp).feature_names and len(meta.calibration.abs_return) > 1
    assert meta.data_ranges["train"][1] < meta.data_ranges["val"][0] < meta.data_ranges["test"][0]
    with pg_engine.connect() as conn:
        kinds = dict(conn.execute(sa.text("SELECT model_kind, count(*) FROM ml_experiments GROUP BY model_kind")).all())
    assert kinds == {"ridge_ofi": 4, "mlp": 6, "persistence": 1}  # every grid point plus each final model
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| persistence |" in report and f"| {ridge} |" in report and f"| {mlp} |" in report
    assert (tmp_path / "report" / "calibration.png").stat().st_size > 1000

    # promoting the ridge archives the MLP in the same transaction; a checksum mismatch is refused
    assert registry.promote(pg_engine, ridge) == mlp
    assert registry.get(pg_engine, mlp).status == "archived" and registry.production(pg_engine).model_version == ridge
    with pytest.raises(registry.RegistryError):
        registry.promote(pg_engine, "no-such-model")
    with pytest.raises(ArtifactError, match="checksum"):
        fetch(lake, registry.get(pg_engine, mlp).artifact_uri, "0" * 64)
    with pg_engine.begin() as conn, pytest.raises(sa.exc.IntegrityError):
        conn.execute(sa.text("UPDATE model_registry SET status = 'production' WHERE model_version = :v"), {"v": mlp})

    # the evaluation command: any directory in the shared formats, a registered version, JSON as the last line
    env = {**os.environ, "BTCPRED_POSTGRES__SCHEMA_NAME": isolated_settings.postgres.schema_name,
           "BTCPRED_S3__BUCKET": isolated_settings.s3.bucket}
    proc = subprocess.run([sys.executable, "-m", "batch.report", "--data", str(data_dir), "--model", mlp,
                           "--baseline", ridge, "--out", str(tmp_path / "eval")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"r2", "rmse_ratio_vs_persistence", "direction_accuracy", "dm_pvalue", "n"} <= line.keys()
    # only rows after the model's validation data (plus the purge) are scored: the test hour, plus the
    # up-to-3 rows (5 s) the training split embargoed at its start
    assert result["n"] <= line["n"] <= result["n"] + 3 and result["n"] > 1000
