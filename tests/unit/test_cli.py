"""The operator's command: its surface, and a clear error where a cluster does not answer."""

from click.testing import CliRunner

from btcpred.cli import main


def test_every_operator_step_is_a_subcommand():
    out = CliRunner().invoke(main, ["--help"]).output
    for name in ("demo", "stack", "job", "state", "train", "report", "backtest", "backfill", "registry", "experiments", "draw"):
        assert f"  {name} " in out, name
    job = CliRunner().invoke(main, ["job", "--help"]).output
    for name in ("list", "savepoints", "savepoint", "stop", "cancel", "submit", "resume"):
        assert f"  {name} " in job, name


def test_a_jobmanager_that_does_not_answer_is_one_clear_line_and_a_failing_exit():
    result = CliRunner().invoke(main, ["job", "--jobmanager", "127.0.0.1:1", "list"])
    assert result.exit_code == 1
    assert "GET http://127.0.0.1:1/jobs/overview: the JobManager does not answer" in result.output
    assert "Traceback" not in result.output


def test_the_console_script_finds_the_rig_of_its_checkout_from_any_folder(tmp_path):
    """A console script has its own folder on sys.path, not the checkout's: rig commands must still work."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("btcpred")
    out = subprocess.run([str(script), "stack", "status"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "from a checkout" not in out.stdout + out.stderr and "redis " in out.stdout, out.stdout + out.stderr


def test_a_start_position_reaches_the_jobs_typed_config_and_a_wrong_pairing_is_refused(monkeypatch):
    from btcpred import cli
    from btcpred.common.config import load_settings

    submitted = []
    monkeypatch.setattr(cli, "run_rig", lambda module, args: submitted.append((module, args)))
    for name in ("BTCPRED_FLINK__START_POSITION", "BTCPRED_FLINK__START_AT"):  # restored after the test, as they were
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    args = ["job", "submit", "--start-position", "AT_TIMESTAMP", "--start-at", "2026-12-07T10:00:00Z"]
    assert CliRunner().invoke(main, args).exit_code == 0 and submitted[0][0] == "flink_cluster"
    flink = load_settings("local").flink  # what the job the rig submits reads, from the same environment
    assert flink.start_position == "AT_TIMESTAMP" and flink.start_at.timestamp() == 1796637600.0
    for wrong in (
        ["job", "submit", "--start-position", "AT_TIMESTAMP"],
        ["job", "submit", "--start-at", "2026-12-07T10:00:00Z"],
        ["job", "submit", "--start-position", "LATEST", "--from-savepoint", "latest"],
    ):
        result = CliRunner().invoke(main, wrong)
        assert result.exit_code != 0 and "Error:" in result.output, wrong
    assert len(submitted) == 1
