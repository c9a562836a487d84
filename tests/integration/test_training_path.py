"""Bronze -> silver -> feature store -> training -> registry -> report, on real data and real servers."""

import json
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from btcpred.adapters import registry
from btcpred.adapters.artifact_store import fetch
from btcpred.adapters.lake import Lake
from btcpred.batch.train import run
from btcpred.common.model_artifact import ArtifactError
from tests.conftest import BINANCE_US_BOOK, REPO, SPOT_CAPTURE

SPOT_2024 = SPOT_CAPTURE  # minutes of binance.com spot

pytestmark = pytest.mark.integration


@pytest.fixture()
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / BINANCE_US_BOOK.name).symlink_to(BINANCE_US_BOOK)
    return d


@pytest.mark.timeout(240)
def test_training_run_registers_models_and_the_gate_decides_what_serves(isolated_settings, pg_engine, data_dir, tmp_path):
    result = run(isolated_settings, "binance.us", "BTCUSDT", tmp_path / "report", data_dir, promote=True)
    lake = Lake(isolated_settings.s3)
    assert any(k.startswith("bronze/depth20/BTCUSDT/year=2026/month=05/day=02/") for k in lake.keys("bronze/"))
    for dataset in ("db_ready", "bars_1m", "snapshots"):
        assert lake.keys(f"silver/{dataset}/BTCUSDT/year=2026/month=05/day=02/"), dataset
    bars = lake.get_table(lake.keys("silver/bars_1m/")[0])
    assert bars.num_rows == 241 and all(
        lo <= hi for lo, hi in zip(bars.column("low").to_pylist(), bars.column("high").to_pylist())
    )

    mlp, ridge = result["versions"]["mlp"], result["versions"]["ridge_ofi"]
    onnx_bytes, meta = fetch(lake, registry.get(pg_engine, mlp).artifact_uri, registry.get(pg_engine, mlp).checksum_sha256)
    assert meta.feature_names == registry.get(pg_engine, mlp).feature_names and len(meta.calibration.abs_return) > 1
    assert meta.data_ranges["train"][1] < meta.data_ranges["val"][0] < meta.data_ranges["test"][0]
    with pg_engine.connect() as conn:
        kinds = dict(conn.execute(sa.text("SELECT model_kind, count(*) FROM ml_experiments GROUP BY model_kind")).all())
        gate_rows = conn.execute(
            sa.text("SELECT model_version, metrics FROM ml_experiments WHERE model_kind = 'gate' ORDER BY experiment_id")
        ).all()
    assert {k: v for k, v in kinds.items() if k not in ("gate", "refit")} == {
        "ridge_imbalance": 4,
        "ridge_ofi": 4,
        "mlp": 6,
        "ridge_depth_ofi": 4,  # the multi-level OFI: absent only in the recording's first 5 s
        "persistence": 1,
    }  # no ridge_context: 5 minutes of the 4 hours lack it, 2 % of rows, more than its 1 %

    # the gate: a decision is recorded with its figures, promoted or not, and carried out
    assert 1 <= len(gate_rows) <= 2 and [r.metrics for r in gate_rows] == result["gate"]
    production = registry.production(pg_engine)
    assert production is not None and production.model_version == result["production"]  # none before: something serves
    promoted = [(version, m) for version, m in gate_rows if m["promote"]]
    assert len(promoted) == 1
    version, decision = promoted[0]
    if version.startswith("persistence-"):  # nothing beat persistence on the test window: the baseline serves
        assert decision["comparisons"] == [] and production.model_version == version
    else:  # a fitted model beat persistence (p < 0.05) on the window it was never fitted or chosen on ...
        [vs_persistence] = decision["comparisons"]
        assert vs_persistence["rival"] == "persistence" and vs_persistence["dm_pvalue"] < 0.05
        assert vs_persistence["dm_stat"] < 0 and vs_persistence["diff_ci"][1] < 0  # the interval agrees
        # ... and what serves is its specification refitted on every row, with the gate's market as evidence
        kind = version.split("-")[0]
        assert production.model_version.startswith(f"{kind}-") and "-refit-" in production.model_version
        _, served_meta = fetch(lake, production.artifact_uri, production.checksum_sha256)
        assert served_meta.proven_markets == ["binance.us"] and served_meta.data_ranges["refit"][1] == meta.data_ranges["test"][1]
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| persistence" in report and f"| {ridge} |" in report and f"| {mlp} |" in report and "gate: " in report
    # the report's subject is what the gate judged last: a model's has a calibration plot, persistence states none
    assert f"subject {version}" in report.splitlines()[0]
    assert (tmp_path / "report" / "calibration.png").is_file() == (not version.startswith("persistence-"))

    # a second run with the same data meets a production model: the pick must beat it too, or production stays
    again = run(isolated_settings, "binance.us", "BTCUSDT", tmp_path / "report2", None, promote=True)
    assert len(again["gate"]) == 1 and again["gate"][0]["comparisons"][-1]["rival"] == production.model_version
    if not any(g["promote"] for g in again["gate"]):  # production's specification stays, refitted on the newest rows
        now = registry.production(pg_engine).model_version
        assert (
            now == production.model_version
            if production.model_version.startswith("persistence-")
            else now.split("-")[0] == production.model_version.split("-")[0] and "-refit-" in now
        )

    # promoting by hand archives the previous production model in the same transaction; a checksum mismatch is refused
    current = registry.production(pg_engine).model_version
    target = ridge if current != ridge else mlp
    assert registry.promote(pg_engine, target) == current
    assert registry.get(pg_engine, current).status == "archived" and registry.production(pg_engine).model_version == target
    with pytest.raises(registry.RegistryError):
        registry.promote(pg_engine, "no-such-model")
    with pytest.raises(ArtifactError, match="checksum"):
        fetch(lake, registry.get(pg_engine, mlp).artifact_uri, "0" * 64)
    with pg_engine.begin() as conn, pytest.raises(sa.exc.IntegrityError):
        conn.execute(sa.text("UPDATE model_registry SET status = 'production' WHERE model_version = :v"), {"v": current})

    # the evaluation command: any directory in the shared formats, a registered version, JSON as the last line
    env = {
        **os.environ,
        "BTCPRED_POSTGRES__SCHEMA_NAME": isolated_settings.postgres.schema_name,
        "BTCPRED_S3__BUCKET": isolated_settings.s3.bucket,
    }
    # every Binance.US row was fitted, tuned or gated on: on that data alone nothing is unseen
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "btcpred.batch.report",
            "--data",
            str(data_dir),
            "--model",
            mlp,
            "--out",
            str(tmp_path / "eval-seen"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 1 and json.loads(proc.stdout.strip().splitlines()[-1])["n"] == 0
    # beside a binance.com capture, those rows are what gets scored, in the per-market table
    (data_dir / SPOT_2024.name).symlink_to(SPOT_2024)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "btcpred.batch.report",
            "--data",
            str(data_dir),
            "--model",
            mlp,
            "--baseline",
            ridge,
            "--out",
            str(tmp_path / "eval"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"r2", "r2_ci95", "rmse_ratio_vs_persistence", "direction_accuracy", "dm_pvalue", "n"} <= line.keys()
    per_market = (tmp_path / "eval" / "report.md").read_text().split("## Per market")[1].split("##")[0]
    assert line["n"] > 100 and "| binance.com-spot |" in per_market and "| binance.us |" not in per_market
