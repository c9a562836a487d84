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
