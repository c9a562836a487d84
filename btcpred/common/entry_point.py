"""What every command's ``main()`` shares: ``--config``, the market it works on, where reports go, and
the log format.

The venue and symbol default to the configured exchange's (``exchange.market``, ``exchange.symbol``),
the market the system serves, so the archive's rows, the models trained on them and the service
that judges "proven on this market" name it the same way; a command that works on another market
(the Binance.US hours on hand) says so with ``--venue``.
"""

from __future__ import annotations

import argparse
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

from btcpred.common.config import Settings

CONFIG_HELP = "config file or environment name (default: $BTCPRED_ENV)"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help=CONFIG_HELP)


def reports_dir(given: Path | None, settings: Settings, kind: str) -> Path:
    """``--out``/``--report-dir`` when given, else ``<reports_dir>/<kind>``: never the tracked tree."""
    return given if given is not None else Path(settings.reports_dir) / kind


def iso_time_us(text: str) -> int:
    """An ISO 8601 time on the command line as epoch microseconds; without an offset it is UTC (the
    exchange's clock and the archive's partitions are UTC). For argparse's ``type=``."""
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (e.g. 2026-12-06T22:00 or 2026-12-06T22:00:00Z)"
        ) from None
    t = t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    return (t - EPOCH) // timedelta(microseconds=1)


def add_market(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--venue", default=None, help="the market's name (default: exchange.market)")
    parser.add_argument("--symbol", default=None, help="default: exchange.symbol")


def market_of(args: argparse.Namespace, settings: Settings) -> tuple[str, str]:
    """(venue, symbol): the arguments given, else the configured exchange's."""
    return args.venue or settings.exchange.market, args.symbol or settings.exchange.symbol


def setup_logging(level: str = "INFO") -> None:
    """The process's log format; a no-op under the ``btcpred`` command, whose own set-up
    (``--log-level``, ``--json-logs``) came first."""
    logging.basicConfig(level=level, format=LOG_FORMAT)
