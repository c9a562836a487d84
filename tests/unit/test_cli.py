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
