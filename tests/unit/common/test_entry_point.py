"""Every command works on the configured market unless told otherwise."""

import argparse
from pathlib import Path

import pytest

from btcpred.common import entry_point
from btcpred.common.config import load_settings


def test_venue_and_symbol_default_to_the_configured_exchange_and_arguments_win():
    parser = argparse.ArgumentParser()
    entry_point.add_market(parser)
    entry_point.add_config(parser)
    settings = load_settings("local", environ={})
    assert entry_point.market_of(parser.parse_args([]), settings) == ("binance.com-spot", "BTCUSDT")
    given = parser.parse_args(["--venue", "binance.us", "--symbol", "ETHUSDT"])
    assert entry_point.market_of(given, settings) == ("binance.us", "ETHUSDT")
    # the archive, the retraining loop and training all take the same default
    from btcpred.batch import archive, retrain, train

    for module in (archive, retrain, train):
        assert "entry_point.add_market(parser)" in Path(module.__file__).read_text(), module.__name__


def test_reports_go_under_the_ignored_runtime_folder_unless_told_otherwise():
    """A run of train, retrain, report or backtest without --out/--report-dir never writes into the
    tracked tree (``git status`` stays clean); ``reports_dir`` (BTCPRED_REPORTS_DIR) moves them all."""
    settings = load_settings("local", environ={})
    assert entry_point.reports_dir(None, settings, "training") == Path(".local/reports/training")
    assert entry_point.reports_dir(Path("/tmp/mine"), settings, "training") == Path("/tmp/mine")
    moved = load_settings("local", environ={"BTCPRED_REPORTS_DIR": "/var/lib/btcpred/reports"})
    assert entry_point.reports_dir(None, moved, "backtest") == Path("/var/lib/btcpred/reports/backtest")
    ignored = (Path(__file__).parents[3] / ".gitignore").read_text().splitlines()
    assert Path(settings.reports_dir).parts[0] + "/" in ignored


def test_times_on_the_command_line_are_iso_and_utc_without_an_offset():
    assert entry_point.iso_time_us("2024-08-08T23:54:18") == 1_723_161_258_000_000
    assert entry_point.iso_time_us("2024-08-08T23:54:18Z") == 1_723_161_258_000_000
    assert entry_point.iso_time_us("2024-08-09T01:54:18.000123+02:00") == 1_723_161_258_000_123
    for bad in ("1723161258000000", "yesterday", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="not an ISO 8601 time"):
            entry_point.iso_time_us(bad)


def test_backfill_takes_its_period_as_iso_times(capsys):
    from btcpred.flink_jobs import backfill_job

    with pytest.raises(SystemExit) as exit_:  # the epoch-microsecond flags are gone
        backfill_job.main(["--start-us", "1", "--end-us", "2", "--out", "x"])
    assert exit_.value.code == 2 and "the following arguments are required: --from, --to" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        backfill_job.main(["--from", "1723161258000000", "--to", "2024-08-09", "--out", "x"])
    assert exit_.value.code == 2 and "is not an ISO 8601 time" in capsys.readouterr().err
