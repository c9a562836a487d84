"""Every command works on the configured market unless told otherwise."""

import argparse
from pathlib import Path

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
