"""The module paths state was written under before the one package resolve to today's modules, and only those."""

import importlib
import sys

import pytest

import btcpred  # noqa: F401 - installs the hook, as every process of the package has
from btcpred.udfs import order_book, symbol_state


def test_old_paths_state_names_are_todays_modules_not_copies():
    assert importlib.import_module("udfs.symbol_state") is symbol_state
    assert importlib.import_module("udfs.order_book").OrderBook is order_book.OrderBook
    assert importlib.import_module("flink_jobs.hot_path_state").SymbolState is symbol_state.SymbolState
    assert symbol_state.__spec__.name == "btcpred.udfs.symbol_state"  # the alias did not stamp its name on it
    assert sys.modules["udfs.symbol_state"] is sys.modules["btcpred.udfs.symbol_state"]


@pytest.mark.parametrize("name", ["flink_jobs.hot_path_job", "common.config", "batch.train"])
def test_other_old_paths_stay_import_errors(name):
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(name)
